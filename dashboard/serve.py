"""The dashboard's server process: Streamlit's own ``streamlit run``, plus a warm-up.

``python -m dashboard.serve run dashboard/app.py [streamlit options]`` is ``streamlit run`` with
one addition: as the process starts, before Streamlit's server is up, a background thread asks
the landing page's answers for the store's current version with the sidebar's defaults
(``dashboard.asks``: the sidebar's filter-options first, which also reads the derived model into
memory, then the Overview's, side by side on the page's ask threads, ``dashboard.data.prefetch``),
through the same cache the pages use. A visitor who opens the dashboard meanwhile waits for the
answer being computed instead of computing it a second time (the cache computes each key once),
and finds the rest done. The warm-up logs when each answer was ready, in seconds since it began
(``provlens warm-up``).

Then, one answer at a time and at a lower CPU priority than the pages (the thread's nice value),
the same thread asks the landing page's answers for the time ranges of the data's last days
(``dashboard.asks.RECENT_DAYS``, :func:`warm_up_ranges`), each when no page has run for
``QUIET_S`` seconds (a visitor's page does not share the cores with it): the filters the sidebar
gives when those days are picked, so the first change to one of them finds its answers
cached. They are the page's own asks through the same cache (same report, same filters, same
store version); another range is computed when picked, as before.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import as_completed
from pathlib import Path

log = logging.getLogger("provlens.warmup")
RANGES_NICE = 10  # the warm-up thread's nice value while it computes the recent time ranges
# Each recent range waits until a page was served and none has run for QUIET_S seconds (a page's
# browser is still drawing after its script run ends), at most QUIET_LIMIT_S (then it goes on).
QUIET_S = 2.0
QUIET_LIMIT_S = 30.0


def _store_version(path: Path | None) -> tuple[Path, int]:
    """Return the store the server shows (``path`` when given) and its current version."""
    from dashboard import data

    store = path or data.default_store_path()
    return store, data.store_version(store)


def warm_up(path: Path | None = None) -> dict[str, float]:
    """Compute the landing page's answers for the store's current version; return when each
    was ready, in seconds since the warm-up began (and ``total``)."""
    from dashboard import data
    from dashboard.asks import LANDING_ASKS, SIDEBAR_ASKS

    store, version = _store_version(path)
    took: dict[str, float] = {}
    if version == 0:
        return took
    start = time.perf_counter()
    defaults = data.FilterState()
    # The sidebar's answer alone first: it reads the derived model that every other one needs.
    for name, params in SIDEBAR_ASKS:
        data.answer(name, store, version, defaults, **params)
        took[name] = round(time.perf_counter() - start, 2)
    futures = data.prefetch(store, version, defaults, LANDING_ASKS)
    names = {future: name for (name, _), future in zip(LANDING_ASKS, futures, strict=True)}
    for future in as_completed(futures):
        future.result()  # raises the first error
        took[names[future]] = round(time.perf_counter() - start, 2)
    # All ready when the last one was (not a moment later, when this loop noticed).
    took["total"] = max(took.values())
    return {name: took[name] for name, _ in SIDEBAR_ASKS + LANDING_ASKS} | {"total": took["total"]}


def warm_up_ranges(
    path: Path | None = None, before_each: Callable[[], object] | None = None
) -> dict[str, float]:
    """Compute the landing page's answers for the time ranges of the data's last
    ``RECENT_DAYS`` (after :func:`warm_up`: the sidebar's choices are its first answer), calling
    ``before_each`` before each range; return when each range was ready, in seconds since this
    began (``total`` too)."""
    from dashboard import data, sidebar
    from dashboard.asks import LANDING_ASKS, RECENT_DAYS, SIDEBAR_ASKS

    store, version = _store_version(path)
    if version == 0:
        return {}
    start = time.perf_counter()
    (name, params), *_ = SIDEBAR_ASKS
    got = data.answer(name, store, version, data.FilterState(), **params).data
    options = sidebar.options_of(got or {})
    took: dict[str, float] = {}
    for days in RECENT_DAYS:
        bounds = sidebar.last_days(options, days)
        if bounds is None or bounds == (None, None):  # no data, or all of it (the defaults)
            continue
        since, until = bounds
        if before_each is not None:
            before_each()
        picked = data.FilterState(since=since, until=until)
        for name, params in LANDING_ASKS:
            data.answer(name, store, version, picked, **params)
        took[f"last {days} days"] = round(time.perf_counter() - start, 2)
    took["total"] = round(time.perf_counter() - start, 2)
    return took


_OUTSIDE_A_PAGE = ("No runtime found", "missing ScriptRunContext")


def _not_outside_a_page(record: logging.LogRecord) -> bool:
    """Drop Streamlit's warnings about running outside a page (and nothing else)."""
    return not any(text in record.getMessage() for text in _OUTSIDE_A_PAGE)


def _warm() -> None:
    try:
        took = warm_up()
    except Exception as exc:  # a page asking the same shows the error; the server keeps running
        log.warning("provlens warm-up stopped: %s", exc)
        return
    if took:
        log.warning("provlens warm-up of the landing page (answers ready after, s): %s", took)
    # The pages come first: this thread yields the CPU to them from here on (Linux: a nice
    # value is per thread).
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), RANGES_NICE)
    try:
        from dashboard import data

        ranges = warm_up_ranges(before_each=lambda: data.wait_quiet(QUIET_S, QUIET_LIMIT_S))
    except Exception as exc:
        log.warning("provlens warm-up of recent time ranges stopped: %s", exc)
        return
    if ranges:
        log.warning("provlens warm-up of recent time ranges (answers ready after, s): %s", ranges)


def main() -> None:
    """Start the warm-up thread, then run Streamlit's command line with our arguments.

    The warm-up does not wait for the server: it has the second or so Streamlit takes to start
    as a head start. What both threads import is imported here first, once (two threads
    importing the same modules at once can deadlock on the import locks).
    """
    from streamlit.web import cli

    # Imported and asked outside a page, the warm-up's cache is created before the server is up:
    # Streamlit's "No runtime found" and "missing ScriptRunContext" say nothing here (that cache
    # is kept per function, in memory, as the runtime's would be). A filter, not a level:
    # Streamlit sets its loggers' levels again while it starts.
    for name in (
        "streamlit.runtime.scriptrunner_utils.script_run_context",
        "streamlit.runtime.caching.cache_data_api",
    ):
        logging.getLogger(name).addFilter(_not_outside_a_page)
    from dashboard import asks, data, sidebar  # noqa: F401

    threading.Thread(target=_warm, name="provlens-warm-up", daemon=True).start()
    sys.argv = ["streamlit", *sys.argv[1:]]
    cli.main()


if __name__ == "__main__":
    main()
