"""Presentation helpers for the pages: escaping, labels, bucket sizes, chart bands.

Nothing here counts, groups or decides: figures come from ``reports`` (through
``dashboard.data``). These only shape what is drawn.
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

from reports.users import user_key


def min_bar(first: pd.Timestamp, last: pd.Timestamp) -> pd.Timedelta:
    """Return the shortest bar worth drawing on a timeline from ``first`` to ``last``.

    A cycle of a few seconds on a week-long axis is thinner than a pixel; bars are widened to
    1/300 of the span (at least 30 s) so every cycle shows. Hover texts keep the real times.
    """
    return max(pd.Timedelta(seconds=30), (last - first) / 300)


def short_id(text: str, keep: int = 18) -> str:
    """Return a long id cut to ``keep`` characters plus `…` (for axis labels)."""
    return text if len(text) <= keep + 1 else text[:keep] + "…"


def plot_escape(text: object) -> str:
    """Return ``text`` safe for Plotly labels (which render a subset of HTML tags)."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def bucket_for(span: pd.Timedelta) -> str:
    """Return a pandas frequency giving a readable number of bars for a time ``span``."""
    if span <= pd.Timedelta(hours=6):
        return "5min"
    if span <= pd.Timedelta(days=2):
        return "h"
    if span <= pd.Timedelta(days=60):
        return "D"
    return "W"


TIMELINE_EVENT_COLUMNS = (
    "activity_at",
    "action",
    "status",
    "error_code",
    "error_reason",
    "recommended_action",
    "skip_reason",
    "failed_step",
    "cycle_id",
    "job_id",
    "id",
)


def user_choices(users: pd.DataFrame) -> dict[str, str]:
    """Return {user key: `name · UPN · id`} for a selectbox (shown as plain text)."""
    keys = user_key(users)
    out: dict[str, str] = {}
    for key, name, upn in zip(keys, users["source_name"], users["source_upn"], strict=True):
        if not key or key in out:
            continue
        parts = [str(p) for p in (name, upn) if pd.notna(p) and str(p)]
        out[key] = " · ".join([*parts, key] if key not in parts else parts)
    return out


def safe_file_part(text: str) -> str:
    """Return ``text`` reduced to characters safe in a download file name."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")
    return cleaned[:60] or "user"


def cycle_bands(starts: pd.Series, ends: pd.Series, color: str = "#2563eb") -> list[dict[str, Any]]:
    """Return Plotly layout shapes shading each [start, end] span over the full plot height."""
    return [
        {
            "type": "rect",
            "xref": "x",
            "yref": "paper",
            "x0": start,
            "x1": end,
            "y0": 0,
            "y1": 1,
            "fillcolor": color,
            "opacity": 0.08,
            "line": {"width": 0},
            "layer": "below",
        }
        for start, end in zip(starts, ends, strict=True)
    ]


def deep_link(link: object) -> str | None:
    """Return an alert's stored link as a link into this dashboard: ``users?user=...``.

    Alerts store absolute links built on the configured dashboard URL (for messages read
    elsewhere); in the app the page name and query are enough, and stay right whatever host or
    port the dashboard is reached on.
    """
    if link is None or (not isinstance(link, str) and pd.isna(link)) or not str(link).strip():
        return None
    from urllib.parse import urlsplit

    parts = urlsplit(str(link).strip())
    page = parts.path.rstrip("/").rsplit("/", 1)[-1]
    if not re.fullmatch(r"[A-Za-z0-9_\-]+", page or ""):
        return None
    return f"{page}?{parts.query}" if parts.query else page


def user_link(principal_id: object) -> str | None:
    """Return the Users page deep link of one user (DESIGN: ``users?user=<object id>``)."""
    if principal_id is None or (not isinstance(principal_id, str) and pd.isna(principal_id)):
        return None
    from urllib.parse import urlencode

    return "users?" + urlencode({"user": str(principal_id)})
