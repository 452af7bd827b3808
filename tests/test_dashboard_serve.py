"""The dashboard server's start keeps Streamlit's warnings about running outside a page quiet,
and nothing else (the e2e server's log is checked for them in tests/e2e/test_dashboard_links.py).
"""

from __future__ import annotations

import logging

from dashboard import serve


def _record(message: str, level: int = logging.WARNING) -> logging.LogRecord:
    return logging.LogRecord("streamlit.x", level, __file__, 1, message, None, None)


def test_only_the_warnings_about_running_outside_a_page_are_dropped() -> None:
    keep = serve._not_outside_a_page
    assert not keep(_record("No runtime found, using MemoryCacheStorageManager"))
    assert not keep(_record("Thread 'provlens-ask_0': missing ScriptRunContext!"))
    assert keep(_record("The cache's ttl is ignored with persist='disk'"))
    assert keep(_record("Uvicorn server started on localhost:8501", logging.INFO))
