"""Real Chromium against `streamlit run`: the Alerts and Time to access pages render, without
exceptions or script dialogs, with figures equal to their reports and hostile text kept literal."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from ingest.store import Store
from reports import Inputs, run_report
from tests.e2e import fixture_data as fx
from tests.e2e.conftest import streamlit_server
from tests.e2e.test_dashboard_browser import _check_page, _open
from tests.test_dashboard_alerts import _extras

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def alerts_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("e2e-alerts") / "store"
    store = fx.build_store(path)
    with store.batch(source="file", detail="alerts e2e extras") as b:
        b.add(_extras())
        b.replace_groups("assignments", [fx.SP])
    return path


@pytest.fixture(scope="module")
def alerts_server(alerts_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with streamlit_server(alerts_store, tmp_path_factory) as url:
        yield url


@pytest.fixture(scope="module")
def page(browser: Any) -> Any:
    context = browser.new_context(viewport={"width": 1440, "height": 1100})
    pg = context.new_page()
    dialogs: list[str] = []
    pg.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    pg.dialogs = dialogs
    yield pg
    context.close()


def test_alerts_and_time_to_access_pages_in_a_real_browser(
    page: Any, alerts_server: str, alerts_store: Path, screenshots: Path
) -> None:
    store = Store(alerts_store)
    inputs = Inputs(**{t: store.read(t) for t in Inputs.__dataclass_fields__})
    now = pd.Timestamp(fx.NOW)

    _open(page, alerts_server, "alerts", "Alerts")
    _check_page(page, screenshots, "alerts")
    counts = run_report("alerts", inputs, now=now).data["counts"]
    metrics = page.get_by_test_id("stMetricValue").all_inner_texts()
    assert metrics[:2] == [str(counts["firing"]), str(counts["resolved"])] == ["2", "1"]
    assert page.locator("img[src='x']").count() == 0  # the planted <img> name stays text
    assert page.dialogs == []

    _open(page, alerts_server, "access_time", "Time to access")
    figs = _check_page(page, screenshots, "access_time")
    weekly = run_report("access-time-summary", inputs, now=now).frame
    bars = {t["name"]: t["y"] for t in figs[0] if t["type"] == "bar"}
    assert bars["p50"] == pytest.approx(weekly["p50_minutes"].astype(float).tolist())
    assert bars["p90"] == pytest.approx(weekly["p90_minutes"].astype(float).tolist())
    assert page.locator("img[src='x']").count() == 0
    assert page.dialogs == []
