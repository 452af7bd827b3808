"""What the sidebar and the landing page (Overview) ask, with the sidebar's defaults (all data,
noise hidden), in their order: (report, parameters).

The server computes these when it starts (dashboard.serve), so the first visitor finds them done
or under way, and `python -m benchmarks.dashboard --reports-only` times the same list.
tests/test_dashboard_asks.py runs the real pages and checks they ask exactly this.
"""

from __future__ import annotations

SIDEBAR_ASKS: tuple[tuple[str, dict[str, str]], ...] = (("filter-options", {}),)
LANDING_ASKS: tuple[tuple[str, dict[str, str]], ...] = (
    ("events-over-time", {"by": "status"}),
    ("job-header", {}),
    ("quarantine-risk", {}),
    ("overview", {}),
    ("recent-failures", {}),
)
# Time ranges the server's warm-up also computes the landing page's answers for, after those with
# the defaults (dashboard.serve.warm_up_ranges): the data's last day, two days and week, as the
# sidebar's date input gives them when picked (dashboard.sidebar.last_days).
RECENT_DAYS: tuple[int, ...] = (1, 2, 7)
