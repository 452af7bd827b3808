"""provlens dashboard entry point: `streamlit run dashboard/app.py` (or `provlens dashboard`).

Order of a rerun: page config, sign-in gate, sidebar (filters + store freshness), then either
the empty-store guidance or the selected page (``dashboard/screens/*.py``). Pages only load
(``dashboard.data``), call ``reports`` and draw.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `streamlit run dashboard/app.py` puts dashboard/ on sys.path, not the project root.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import streamlit as st  # noqa: E402

from dashboard import auth, data, sidebar, ui  # noqa: E402

# Not "pages/": Streamlit treats a pages/ folder beside the entry script as the old multipage
# mode and would run those files directly for their URLs, skipping the sign-in gate here.
PAGES_DIR = Path(__file__).resolve().parent / "screens"

st.set_page_config(page_title="provlens", page_icon="🔭", layout="wide")


def _pages() -> list[st.Page]:
    """Return the navigation pages, in menu order."""

    def page(file: str, title: str, icon: str, default: bool = False) -> st.Page:
        return st.Page(
            PAGES_DIR / file, title=title, icon=icon, url_path=file[:-3], default=default
        )

    return [
        page("overview.py", "Overview", ":material/dashboard:", default=True),
        page("cycles.py", "Cycles", ":material/timeline:"),
        page("users.py", "Users", ":material/person_search:"),
        page("events.py", "Events", ":material/list_alt:"),
        page("failures.py", "Failures", ":material/error:"),
        page("coverage.py", "Coverage", ":material/filter_alt:"),
        page("estimate.py", "Estimate", ":material/schedule:"),
        page("access_time.py", "Time to access", ":material/timer:"),
        page("scim_traffic.py", "Wiki SCIM traffic", ":material/swap_horiz:"),
        page("alerts.py", "Alerts", ":material/notifications:"),
        page("export.py", "Export", ":material/download:"),
    ]


def main() -> None:
    """Run one rerun of the app (marked as a page run: background work waits for quiet)."""
    with data.page_run():
        _rerun()


def _rerun() -> None:
    if not auth.gate():
        return
    nav = st.navigation(_pages())
    ctx = sidebar.draw()
    if ctx.empty:
        ui.empty_state(ctx)
        return
    nav.run()


main()
