"""The dashboard's server process: Streamlit's own ``streamlit run``, plus a warm-up.

``python -m dashboard.serve run dashboard/app.py [streamlit options]`` is ``streamlit run`` with
one addition: once the server is up, a background thread asks the landing page's answers for the
store's current version with the sidebar's defaults (``dashboard.asks``, after the
sidebar's filter-options, which also reads the derived model into memory), through the same
cache the pages use. A visitor who opens the dashboard meanwhile waits for the answer being
computed instead of computing it a second time (the cache computes each key once), and finds
the rest done. The warm-up logs what it computed and how long it took (``provlens warm-up``).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from pathlib import Path

log = logging.getLogger("provlens.warmup")
WAIT_FOR_SERVER_S = 120.0


def _server_up() -> bool:
    from streamlit.runtime import Runtime, RuntimeState

    if not Runtime.exists():
        return False
    return Runtime.instance().state not in (RuntimeState.INITIAL, RuntimeState.STOPPED)


def warm_up(path: Path | None = None) -> dict[str, float]:
    """Compute the landing page's answers for the store's current version; return seconds per
    report (and ``total``)."""
    from dashboard import data
    from dashboard.asks import LANDING_ASKS, SIDEBAR_ASKS

    store = path or data.default_store_path()
    version = data.store_version(store)
    took: dict[str, float] = {}
    if version == 0:
        return took
    start = time.perf_counter()
    for name, params in SIDEBAR_ASKS + LANDING_ASKS:
        t0 = time.perf_counter()
        data.answer(name, store, version, data.FilterState(), **params)
        took[name] = round(time.perf_counter() - t0, 2)
    took["total"] = round(time.perf_counter() - start, 2)
    return took


def _warm_when_up() -> None:
    # Asked outside a page: Streamlit's "missing ScriptRunContext" warnings say nothing here.
    logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context").setLevel(
        logging.ERROR
    )
    deadline = time.monotonic() + WAIT_FOR_SERVER_S
    while not _server_up():
        if time.monotonic() > deadline:
            return
        time.sleep(0.05)
    try:
        took = warm_up()
    except Exception as exc:  # a page asking the same shows the error; the server keeps running
        log.warning("provlens warm-up stopped: %s", exc)
        return
    if took:
        log.warning("provlens warm-up of the landing page: %s", took)


def main() -> None:
    """Start the warm-up thread, then run Streamlit's command line with our arguments."""
    from streamlit.web import cli

    threading.Thread(target=_warm_when_up, name="provlens-warm-up", daemon=True).start()
    sys.argv = ["streamlit", *sys.argv[1:]]
    cli.main()


if __name__ == "__main__":
    main()
