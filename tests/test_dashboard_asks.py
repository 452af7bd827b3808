"""The pages ask exactly the reports benchmarks/dashboard.py times for them, each once.

`python -m benchmarks.dashboard --reports-only` attributes a page's time to its reports from the
lists ``SIDEBAR_ASKS``, ``OVERVIEW_ASKS`` and ``USERS_ASKS``; this test runs the real pages
(AppTest) and records every report they ask, so those lists cannot drift from the pages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from benchmarks import dashboard as bench
from reports import service
from tests.e2e import fixture_data as fx

APP = str(Path(__file__).resolve().parent.parent / "dashboard" / "app.py")
USER = "katherine@contoso.com"


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("asks") / "store"
    fx.build_store(path)
    return path


@pytest.fixture
def asked(store_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    monkeypatch.setenv("PROVLENS_STORE", str(store_path))
    monkeypatch.setenv("PROVLENS_NOW", fx.NOW)
    calls: list[tuple[str, dict[str, Any]]] = []
    real = service.run

    def record(store: Any, name: str, *args: Any, **kwargs: Any) -> Any:
        params = {k: v for k, v in kwargs.items() if k not in ("include_noise", "now")}
        calls.append((name, params))
        return real(store, name, *args, **kwargs)

    monkeypatch.setattr(service, "run", record)
    st.cache_resource.clear()  # every answer computed again, so every ask is seen
    st.cache_data.clear()
    return calls


def _expected(asks: Any, key: str = "") -> list[tuple[str, tuple[tuple[str, Any], ...]]]:
    return _order_free(
        [
            (name, {k: {"<user>": USER, "<key>": key}.get(v, v) for k, v in params.items()})
            for name, params in asks
        ]
    )


def _order_free(asks: Any) -> list[tuple[str, tuple[tuple[str, Any], ...]]]:
    """Return the asks sorted: a page asks some answers side by side (dashboard.data.prefetch),
    so which one reaches the service first varies; each is still asked exactly once."""
    return sorted((name, tuple(sorted(params.items()))) for name, params in asks)


def test_overview_asks_what_the_benchmark_times(asked: list[tuple[str, dict[str, Any]]]) -> None:
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert _order_free(asked) == _expected(bench.SIDEBAR_ASKS + bench.OVERVIEW_ASKS)


def test_users_deep_link_asks_what_the_benchmark_times(
    asked: list[tuple[str, dict[str, Any]]],
) -> None:
    at = AppTest.from_file(APP, default_timeout=60)
    at.switch_page("screens/users.py")
    at.query_params["user"] = USER
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    key = next(p["user"] for n, p in asked if n == "timeline")
    assert key == "obj-u6"  # the search row's user key (the object id), not the link's UPN
    assert _order_free(asked) == _expected(bench.SIDEBAR_ASKS + bench.USERS_ASKS, key)


def test_server_warm_up_leaves_the_overview_nothing_to_compute(
    store_path: Path, asked: list[tuple[str, dict[str, Any]]]
) -> None:
    from dashboard import serve

    took = serve.warm_up(store_path)
    assert set(took) == {"filter-options", *(name for name, _ in bench.OVERVIEW_ASKS), "total"}
    assert _order_free(asked) == _expected(bench.SIDEBAR_ASKS + bench.OVERVIEW_ASKS)
    asked.clear()
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert asked == []  # every answer the page needs was computed by the warm-up


def test_pages_ask_their_slower_answers_side_by_side(
    store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    monkeypatch.setenv("PROVLENS_STORE", str(store_path))
    monkeypatch.setenv("PROVLENS_NOW", fx.NOW)
    threads: dict[str, str] = {}
    real = service.run

    def record(store: Any, name: str, *args: Any, **kwargs: Any) -> Any:
        threads[name] = threading.current_thread().name
        return real(store, name, *args, **kwargs)

    monkeypatch.setattr(service, "run", record)
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=60)
    at.switch_page("screens/users.py")
    at.query_params["user"] = USER
    at.run()
    assert not at.exception
    # The user's answers after the search are started on the ask threads (dashboard.data.
    # prefetch) while the page draws: the first of them is computed there (the page reaches a
    # later one itself when both threads are busy); the search, which they need, by the page.
    assert threads["diagnosis"].startswith("provlens-ask")
    assert not threads["user-search"].startswith("provlens-ask")
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert threads["job-header"].startswith("provlens-ask")


def test_an_answer_being_asked_on_the_ask_threads_is_not_asked_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Users page asks the diagnosis as soon as a UPN is typed, and again with the rest of
    the user's answers: the second ask gets the first's future instead of holding an ask thread
    that waits for it (the other answers would queue behind)."""
    import threading

    from dashboard import data

    release = threading.Event()
    computed: list[str] = []

    def slow(name: str, path: Path, version: int, filters: object, **params: Any) -> str:
        computed.append(name)
        release.wait(5)
        return name

    monkeypatch.setattr(data, "answer", slow)
    path, filters = Path("/nowhere"), data.FilterState()
    first = data.prefetch(path, 1, filters, [("diagnosis", {"user": "a@b.example"})])
    again = data.prefetch(
        path, 1, filters, [("diagnosis", {"user": "a@b.example"}), ("timeline", {"user": "k"})]
    )
    assert again[0] is first[0]
    release.set()
    assert [f.result(5) for f in again] == ["diagnosis", "timeline"]
    assert sorted(computed) == ["diagnosis", "timeline"]
    # Done, it is asked through the cache again (which then holds it).
    data.prefetch(path, 1, filters, [("diagnosis", {"user": "a@b.example"})])[0].result(5)
    assert sorted(computed) == ["diagnosis", "diagnosis", "timeline"]


def test_an_answer_done_before_its_callback_is_registered_does_not_hang_the_page(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A cached answer can be done before ``prefetch`` registers its done-callback (a loaded
    machine): the callback then runs at once in the page's thread, and must not wait for the
    lock ``prefetch`` holds (the page hung for good, found by the browser benchmark)."""
    import threading
    from concurrent.futures import Future

    from dashboard import data

    class AtOnce:
        """An executor whose answers are done when submitted, as a cache hit can be."""

        def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
            done: Future[Any] = Future()
            done.set_result(fn(*args, **kwargs))
            return done

    monkeypatch.setattr(data, "_asking", AtOnce())
    monkeypatch.setattr(data, "answer", lambda name, *a, **k: name)
    got: list[Any] = []
    page = threading.Thread(
        target=lambda: got.extend(
            f.result(1)
            for f in data.prefetch(
                Path("/nowhere"), 1, data.FilterState(), [("summary", {}), ("cycles", {})]
            )
        ),
        daemon=True,
    )
    page.start()
    page.join(5)
    assert not page.is_alive(), "prefetch hung on its own lock"
    assert got == ["summary", "cycles"]
    assert not data._pending  # each done answer left the pending map


def test_background_work_waits_until_no_page_has_run_for_a_while() -> None:
    """The server's warm-up of recent ranges waits for quiet: not while a page runs, and not
    until ``seconds`` after the last run ended."""
    import threading
    import time

    from dashboard import data

    started, leave = threading.Event(), threading.Event()

    def page() -> None:
        with data.page_run():
            started.set()
            leave.wait(5)

    visitor = threading.Thread(target=page, daemon=True)
    visitor.start()
    started.wait(5)
    assert not data.wait_quiet(0.0, 0.3)  # a page is running: not quiet
    t0 = time.monotonic()
    threading.Timer(0.2, leave.set).start()
    assert data.wait_quiet(0.5, 5.0)  # quiet 0.5 s after the run ended
    assert time.monotonic() - t0 >= 0.65
    visitor.join(5)
    assert data.wait_quiet(0.0, 1.0)  # served, nobody running: quiet at once


def test_the_range_warm_up_asks_for_quiet_before_each_range(store_path: Path) -> None:
    from dashboard import serve

    serve.warm_up(store_path)
    calls: list[float] = []
    took = serve.warm_up_ranges(store_path, before_each=lambda: calls.append(1.0))
    assert len(calls) == len([k for k in took if k.startswith("last ")]) >= 1


def _pick_last_days(at: AppTest, days: int) -> None:
    """Pick the data's last ``days`` days in the sidebar's date input, as a person would."""
    import datetime as dt

    box = at.sidebar.date_input[0]
    first, last = box.value
    box.set_value((max(last - dt.timedelta(days=days - 1), first), last)).run()


@pytest.mark.parametrize("days", [1, 2])
def test_server_warm_up_of_recent_ranges_leaves_their_first_pick_nothing_to_compute(
    store_path: Path, asked: list[tuple[str, dict[str, Any]]], days: int
) -> None:
    from dashboard import serve
    from dashboard.asks import RECENT_DAYS

    assert days in RECENT_DAYS
    serve.warm_up(store_path)
    took = serve.warm_up_ranges(store_path)
    assert f"last {days} days" in took
    # The page's own asks: the time-filtered landing answers, for each range (job-header is one
    # answer for every range).
    time_filtered = [(n, p) for n, p in bench.OVERVIEW_ASKS if n != "job-header"]
    ranges = len([k for k in took if k.startswith("last ")])
    assert _order_free(asked) == _expected(
        [*bench.SIDEBAR_ASKS, *bench.OVERVIEW_ASKS, *time_filtered * ranges]
    )
    at = AppTest.from_file(APP, default_timeout=60).run()
    asked.clear()
    _pick_last_days(at, days)
    assert not at.exception
    assert at.metric[0].label == "Events" and at.metric[0].value != "0"
    assert asked == []  # the warm-up computed exactly what the page asks for that range


def test_a_range_the_warm_up_did_not_compute_is_computed_when_picked(
    store_path: Path, asked: list[tuple[str, dict[str, Any]]]
) -> None:
    from dashboard import serve

    serve.warm_up(store_path)
    at = AppTest.from_file(APP, default_timeout=60).run()
    asked.clear()
    _pick_last_days(at, 2)
    assert not at.exception
    time_filtered = [(n, p) for n, p in bench.OVERVIEW_ASKS if n != "job-header"]
    assert _order_free(asked) == _expected(time_filtered)
