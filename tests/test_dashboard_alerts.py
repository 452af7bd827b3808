"""AppTest: the Alerts and Time to access pages (and the Estimate page's SLO figures) show what
the alerts, access-time and access-time-summary reports compute, with empty states that say what
to do."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from streamlit import config
from streamlit.testing.v1 import AppTest

from dashboard import ui, views
from ingest.store import Store
from reports import Inputs, run_report
from tests.e2e import fixture_data as fx

config.set_option("client.showErrorDetails", "full")

APP = str(Path(__file__).resolve().parent.parent / "dashboard" / "app.py")
NOW = pd.Timestamp(fx.NOW)
BASE = "http://localhost:8501/"


def _t(value: str) -> pd.Timestamp:
    return pd.Timestamp(value)


def _extras() -> dict[str, pd.DataFrame]:
    """Assignment times, directory-audit joins and three alerts on top of the fixture tenant."""
    assignments = fx.assignments().copy()
    created = {
        "obj-u1": "2026-11-18T07:30:00Z",
        "obj-u2": "2026-11-18T06:00:00Z",
        fx.GROUP: "2026-11-01T00:00:00Z",
        "obj-u7": "2026-11-01T00:00:00Z",
    }
    assignments["created_at"] = pd.to_datetime(assignments["principal_id"].map(created), utc=True)
    joins = [("obj-u3", "2026-11-18T08:00:00Z"), ("obj-u4", "2026-11-18T07:00:00Z"),
             ("obj-u8", "2026-11-20T08:00:00Z")]  # fmt: skip
    changes = pd.DataFrame(
        [
            {"audit_id": f"a-{m}", "changed_at": _t(at), "group_id": fx.GROUP, "member_id": m,
             "member_type": "user", "change": "added", "result": "success"}
            for m, at in joins
        ]
    )  # fmt: skip
    alerts = pd.DataFrame(
        [
            {"alert_id": f"quarantine:{fx.JOB}", "rule": "quarantine", "subject": fx.JOB,
             "severity": "critical", "state": "firing", "raised_at": _t("2026-11-21T08:00:00Z"),
             "summary": f"Job {fx.JOB} is in quarantine", "detail": "{}",
             "link": f"{BASE}events?cycle=cyc-2", "delivered_to": "teams:ops",
             "delivery_pending": False},
            {"alert_id": "access_slo:obj-u2", "rule": "access_slo", "subject": "obj-u2",
             "severity": "warning", "state": "firing", "raised_at": _t("2026-11-21T08:30:00Z"),
             "summary": f"{fx.XSS_NAME} waited 125 min for wiki access", "detail": "{}",
             "link": f"{BASE}users?user=obj-u2", "delivered_to": None,
             "delivery_pending": True},
            {"alert_id": f"stalled:{fx.JOB}", "rule": "stalled", "subject": fx.JOB,
             "severity": "warning", "state": "resolved", "raised_at": _t("2026-11-19T08:00:00Z"),
             "resolved_at": _t("2026-11-19T10:00:00Z"), "summary": "No cycle for 3 intervals",
             "link": f"{BASE}cycles?job={fx.JOB}", "delivered_to": "webhook:hooks.example",
             "delivery_pending": False},
        ]
    )  # fmt: skip
    return {"assignments": assignments, "membership_changes": changes, "alerts": alerts}


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dash-alerts") / "store"
    store = fx.build_store(path)
    with store.batch(source="file", detail="alerts test extras") as b:
        b.add(_extras())
        b.replace_groups("assignments", [fx.SP])
    return path


@pytest.fixture(scope="module")
def plain_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dash-plain") / "store"
    fx.build_store(path)
    return path


@pytest.fixture(scope="module")
def inputs(store_path: Path) -> Inputs:
    store = Store(store_path)
    return Inputs(**{t: store.read(t) for t in Inputs.__dataclass_fields__})


def _app(path: Path, monkeypatch: pytest.MonkeyPatch, page: str) -> AppTest:
    monkeypatch.setenv("PROVLENS_STORE", str(path))
    monkeypatch.setenv("PROVLENS_NOW", fx.NOW)
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page(f"screens/{page}.py").run()
    assert not at.exception, [(e.value, e.stack_trace) for e in at.exception]
    return at


def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_alerts_page_shows_firing_and_history_with_deep_links(
    store_path: Path, inputs: Inputs, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = _app(store_path, monkeypatch, "alerts")
    result = run_report("alerts", inputs, now=NOW)
    m = _metrics(at)
    assert m["Firing"] == str(result.data["counts"]["firing"]) == "2"
    assert m["Resolved"] == str(result.data["counts"]["resolved"]) == "1"
    assert m["Delivery pending"] == "1"
    firing, history = (d.value for d in at.dataframe)
    expected = result.frame.loc[result.frame["state"] == "firing"]
    assert firing["rule"].tolist() == expected["rule"].tolist() == ["access_slo", "quarantine"]
    assert firing["open"].tolist() == ["users?user=obj-u2", "events?cycle=cyc-2"]
    # A hostile name in a summary is a plain cell value, never rendered as markup.
    assert firing["summary"].iloc[0] == f"{fx.XSS_NAME} waited 125 min for wiki access"
    assert not any(fx.XSS_NAME in md.value for md in at.markdown)
    assert history["rule"].tolist() == result.frame["rule"].tolist()
    assert history["open"].tolist()[-1] == f"cycles?job={fx.JOB}"
    assert history["state"].tolist() == ["firing", "firing", "resolved"]


def test_alerts_page_empty_state_says_what_to_run(
    plain_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = _app(plain_path, monkeypatch, "alerts")
    assert not at.dataframe
    assert any("provlens alert" in i.value for i in at.info)


def test_time_to_access_page_equals_the_reports(
    store_path: Path, inputs: Inputs, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = _app(store_path, monkeypatch, "access_time")
    summary = run_report("access-time-summary", inputs, now=NOW)
    rows = run_report("access-time", inputs, now=NOW).frame
    data = summary.data
    # u1 30.03 min, u2 125.03, u3 10.03, u4 75.03, u8 10.03 (wiki 201 two seconds after each
    # Entra create); u5 has no join time and is not timed.
    assert data["users"] == 5 and data["breached"] == 2
    m = _metrics(at)
    assert m["Users measured"] == "5"
    assert m["p50"] == ui.fmt_duration(60 * data["p50_minutes"]) == "30.0 min"
    assert m["p90"] == ui.fmt_duration(60 * data["p90_minutes"])
    assert m["Breached"] == "2"
    shown = [d.value for d in at.dataframe]
    weekly = next(f for f in shown if "by" in f.columns and f["by"].iloc[0] == "week")
    per_app = next(f for f in shown if "by" in f.columns and f["by"].iloc[0] == "app")
    assert per_app[["key", "name", "users"]].values.tolist() == [[fx.SP, fx.SP_NAME, 5]]
    pd.testing.assert_frame_equal(
        weekly.reset_index(drop=True),
        views.for_display(summary.frame).reset_index(drop=True),  # empty text cells read "—"
        check_dtype=False,
    )
    breaches = next(d.value for d in at.dataframe if "open" in d.value.columns)
    expected = rows.loc[rows["breached"]].sort_values("minutes_to_access", ascending=False)
    assert breaches["principal_id"].tolist() == expected["principal_id"].tolist()
    assert breaches["principal_id"].tolist() == ["obj-u2", "obj-u4"]
    assert breaches["open"].tolist() == ["users?user=obj-u2", "users?user=obj-u4"]
    # A tighter SLO, set on the page, is what the report is asked with.
    at.number_input(key="access_slo_minutes").set_value(20.0).run()
    tight = run_report("access-time-summary", inputs, now=NOW, slo_minutes=20.0).data
    assert _metrics(at)["Breached"] == str(tight["breached"]) == "3"


def test_time_to_access_page_without_times_says_what_to_ingest(
    plain_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = _app(plain_path, monkeypatch, "access_time")
    assert _metrics(at)["Users measured"] == "0"
    assert any("directory audit" in w.value for w in at.warning)


def test_estimate_page_sets_the_slo_beside_the_forecast(
    store_path: Path, inputs: Inputs, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = _app(store_path, monkeypatch, "estimate")
    data = run_report("access-time-summary", inputs, now=NOW).data
    m = _metrics(at)
    assert m["Time to access (p50)"] == ui.fmt_duration(60 * data["p50_minutes"])
    assert m["Time to access (p90)"] == ui.fmt_duration(60 * data["p90_minutes"])
    assert m["Over the SLO"] == "2 of 5"
