"""The dashboard benchmark's harness measures real pages (benchmarks/dashboard.py), untimed.

It must find each page's complete state, read the figures the pages show, see a filter change
re-render with another figure, and fail loudly when a page never completes, so the benchmark
can never report a time for a page it did not see.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from benchmarks import dashboard as bench
from reports import Filters, service
from tests.e2e import fixture_data as fx
from tests.support.browser import CHROMIUM

pytestmark = pytest.mark.e2e

NOW = pd.Timestamp(fx.NOW)
USER = "katherine@contoso.com"


@pytest.fixture(scope="module")
def measured(e2e_store: Path) -> dict[str, Any]:
    pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed")
    return bench.measure(e2e_store, user=USER, now=fx.NOW, runs=2, timeout_s=120)


def test_every_measure_is_taken_on_a_complete_page(measured: dict[str, Any]) -> None:
    times = measured["times_s"]
    assert "errors" not in times, times.get("errors")
    for key in (
        "overview_cold",
        "overview_warm",
        "users_cold",
        "users_warm",
        "users_switch_cold",
        "users_switch_warm",
        "filter_time_cold",
        "filter_time_warm",
        "filter_time_reset_cold",
        "filter_app_cold",
        "filter_app_warm",
        "filter_app_reset_cold",
    ):
        assert key in times and all(t > 0 for t in times[key]), key
    assert len(times["overview_cold"]) == 1 and len(times["overview_warm"]) == 1
    # In-app: two users never shown before, then twice back to one shown before.
    assert len(times["users_switch_cold"]) == 2 and len(times["users_switch_warm"]) == 2
    # The page's own marks: its script run ended before the harness called the page complete.
    for key in ("overview_cold", "users_cold"):
        mark = measured["phases"][key][0]
        assert mark["first_run_started_s"] is not None
        assert mark["first_run_started_s"] <= mark["last_run_ended_s"] <= times[key][0] + 0.5
    assert measured["python_exceptions"] == 0
    assert measured["js_errors"] == []
    assert measured["server"]["peak_rss_mb"] > 50
    # The server's start to its health check, and when each warm-up answer was ready (its log).
    assert measured["server_ready_s"] > 0
    warm = measured["warm_up"]
    assert set(warm) == {n for n, _ in bench.SIDEBAR_ASKS + bench.OVERVIEW_ASKS} | {"total"}
    assert max(v for k, v in warm.items() if k != "total") == warm["total"]


def test_figures_are_read_from_the_pages(measured: dict[str, Any], e2e_store: Path) -> None:
    figures = measured["figures"]
    everything = service.run(e2e_store, "overview", Filters(), now=NOW).data or {}
    assert figures["overview_events"] == f"{everything['events']:,}"
    timeline = service.run(e2e_store, "timeline", Filters(), user=USER).frame
    assert timeline is not None
    assert figures["users_events"] == f"{len(timeline):,}"
    # The user picked in-app: another user, whose page shows its own events.
    first, second = figures["users_switched_to"]
    assert USER not in (first, second) and first != second
    assert bench.other_users(e2e_store, USER, 2) == [first, second]
    picked = service.run(e2e_store, "timeline", Filters(), user=first).frame
    assert picked is not None
    assert figures["users_switch_events"] == f"{len(picked):,}"


def test_time_filter_change_rerenders_with_another_figure(
    measured: dict[str, Any], e2e_store: Path
) -> None:
    figures = measured["figures"]
    first, last = figures["time_range_picked"].split(" – ")
    assert figures["time_range_all"] != figures["time_range_picked"]
    assert figures["time_range_all"].endswith(last)  # the last days: no end bound
    since = pd.Timestamp(first, tz="UTC")
    picked = service.run(e2e_store, "overview", Filters(since=since), now=NOW).data or {}
    assert figures["overview_events_time_filtered"] == f"{picked['events']:,}"
    assert figures["overview_events_time_filtered"] != figures["overview_events"]
    # One app only: the fixture has one, so the figure stays (the answers are new all the same).
    assert figures["overview_events_app_filtered"] == figures["overview_events"]


def test_a_page_that_never_completes_is_an_error_not_a_time(e2e_store: Path) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    with (
        tempfile.TemporaryDirectory() as tmp,
        bench.dashboard(e2e_store, fx.NOW, Path(tmp)) as server,
        sync_playwright() as pw,
    ):
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=bench.CHROMIUM_ARGS)
        try:
            probe = bench.Probe.open(bench.Probe.profile(browser), timeout_s=8)
            # Users without a user stops before its last element: never complete.
            with pytest.raises(PlaywrightTimeout):
                probe.goto(f"{server.url}/users", "Users", bench.USERS_MARKER)
            # The Overview is complete, but not as the Users page.
            with pytest.raises(PlaywrightTimeout):
                probe.goto(server.url, "Users", bench.OVERVIEW_MARKER)
            assert probe.goto(server.url, "Overview", bench.OVERVIEW_MARKER) > 0
        finally:
            browser.close()


def test_a_server_past_its_memory_cap_is_stopped_and_gives_no_figure(e2e_store: Path) -> None:
    result = bench.measure(
        e2e_store, user=USER, now=fx.NOW, runs=1, timeout_s=60, filters=False, max_rss_mb=50
    )
    times = result["times_s"]
    assert "overview_cold" not in times and "users_cold" not in times
    assert any("passed the cap 50 MB" in e for e in times["errors"]), times["errors"]
    assert "passed the cap 50 MB" in result["server"]["stopped"]
    assert result["server"]["polled_peak_rss_mb"] > 50
