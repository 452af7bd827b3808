"""Presentation helpers for the pages: escaping, labels, chart bands.

Nothing here counts, groups or decides: figures come from ``reports`` (through
``dashboard.data``). These only shape what is drawn.
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

# How a time reads where a table shows it as text (the tables' time columns use the same).
TIME_TEXT = "%Y-%m-%d %H:%M:%S"


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


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:&\"'=^%@])")
# Where GitHub-flavoured Markdown would link plain text (an e-mail address, `scheme://`, `www.`):
# backslash escapes do not stop those autolinks, a word joiner (U+2060, invisible, no width) does.
_AUTOLINK = re.compile(r"(@|:(?=//)|(?i:\bwww)(?=\.))")
WORD_JOINER = "\u2060"


def md_escape(text: object) -> str:
    """Return ``text`` with every Markdown/HTML/Streamlit-directive character backslash-escaped.

    CommonMark lets any ASCII punctuation be escaped, so the result renders as the literal text:
    a display name like ``**bold**`` or ``<img …>`` stays exactly that. Newlines become hard
    breaks. An e-mail address or URL is not turned into a link either: a word joiner (U+2060,
    invisible) follows each ``@``, the ``:`` of ``://`` and a ``www`` before a dot, which breaks
    GitHub-flavoured Markdown's autolinks (backslash escapes do not). The text reads the same; a
    copy of it holds the joiners, so pages also show a UPN as plain text (``st.text``) to copy.
    """
    text = _AUTOLINK.sub(lambda m: m.group(0) + WORD_JOINER, str(text))
    return _MD_SPECIAL.sub(r"\\\1", text).replace("\n", "  \n")


def relative(ts: Any, now: pd.Timestamp) -> str:
    """Return ``ts`` relative to ``now``: `in 12 min`, `13 min ago`, `in 2 h 05 min`, `now`."""
    if ts is None or pd.isna(ts):
        return "—"
    seconds = (pd.Timestamp(ts) - now).total_seconds()
    minutes = round(abs(seconds) / 60)
    if minutes == 0:
        return "now"
    span = minutes_words(minutes)
    return f"in {span}" if seconds > 0 else f"{span} ago"


def minutes_words(minutes: int) -> str:
    """Return a number of minutes as `12 min`, `2 h 05 min` or `3.5 days`."""
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h {minutes % 60:02d} min"
    return f"{minutes / 1440:.1f} days"


def local_and_utc(ts: Any, now: pd.Timestamp, tz: str | None) -> str:
    """Return `2026-11-21 09:00 UTC · 10:00 Europe/Paris · 13 min ago` (local part when known)."""
    if ts is None or pd.isna(ts):
        return "—"
    t = pd.Timestamp(ts).tz_convert("UTC")
    parts = [t.strftime("%Y-%m-%d %H:%M UTC")]
    if tz and tz.upper() not in ("UTC", "ETC/UTC"):
        try:
            local = t.tz_convert(tz)
        except (KeyError, ValueError, TypeError):
            local = None
        if local is not None:
            same_day = local.date() == t.date()
            parts.append(local.strftime("%H:%M" if same_day else "%a %H:%M") + f" {tz}")
    parts.append(relative(t, now))
    return " · ".join(parts)


ID_COLUMNS_LAST = ("id", "_id")
WIDE_COLUMNS = frozenset(
    {
        "error_reason",
        "recommended_action",
        "recommended_fix",
        "error_additional_details",
        "description",
        "detail",
        "reason",
        "skip_reason",
        "steps",
        "modified_properties",
        "path",
        "old_value",
        "new_value",
    }
)


def column_label(name: str) -> str:
    """Return a header for a snake_case column: `error_code` -> `Error code`, `upn` -> `UPN`."""
    words = str(name).split("_")
    fixed = {"id": "id", "upn": "UPN", "scim": "SCIM", "ms": "ms", "utc": "UTC", "sp": "SP"}
    out = [fixed.get(w.lower(), w) for w in words]
    text = " ".join(out)
    return text[:1].upper() + text[1:]


def names_first(columns: list[str]) -> list[str]:
    """Return ``columns`` with ids (``id``, ``*_id``) moved after everything else."""
    ids = [c for c in columns if c == "id" or c.endswith("_id") or c.endswith("_ids")]
    return [c for c in columns if c not in ids] + ids


def for_display(frame: pd.DataFrame) -> pd.DataFrame:
    """Return a copy whose empty text cells read `—` (numbers and times keep their type).

    A UTC time column with a missing time (an NaT: a wiki request no Entra event explains has no
    event time) becomes text, `YYYY-MM-DD HH:MM:SS` and `—`, which sorts like the times; the
    table would otherwise show the missing cell as `None`.
    """
    out = frame.copy()
    for name in out.columns:
        s = out[name]
        if pd.api.types.is_float_dtype(s.dtype):
            out[name] = s.round(3)  # 52.9812345 reads 52.981
            continue
        if isinstance(s.dtype, pd.DatetimeTZDtype):
            if s.isna().any():
                text = s.dt.tz_convert("UTC").dt.strftime(TIME_TEXT)
                out[name] = text.astype("object").where(s.notna(), "—")
            continue
        if pd.api.types.is_string_dtype(s.dtype) or s.dtype == object:
            try:
                out[name] = s.astype("object").where(s.notna() & (s.astype("str") != ""), "—")
            except (TypeError, ValueError):
                continue
    return out


def link(page: str, **params: str) -> str:
    """Return a relative deep link to a dashboard page, e.g. `users?user=ada%40contoso.com`."""
    from urllib.parse import urlencode

    clean = {k: str(v) for k, v in params.items() if v is not None and str(v) != ""}
    return f"{page}?{urlencode(clean)}" if clean else page


def time_window(first: Any, last: Any) -> tuple[pd.Timestamp, pd.Timestamp]:
    """Return an x-axis range around [first, last] at least two hours wide.

    One event (or a burst within seconds) would otherwise get sub-millisecond ticks.
    """
    lo, hi = pd.Timestamp(first), pd.Timestamp(last)
    pad = max(pd.Timedelta(hours=1), (hi - lo) * 0.05)
    return lo - pad, hi + pad


def app_labels(frame: pd.DataFrame, apps: dict[str, str], with_job: bool = False) -> pd.Series:
    """Return each row's app name (from the sidebar's choices); ``with_job`` adds `· <job>`."""
    sp = frame["service_principal_id"].astype("object")
    name = sp.map(lambda v: apps.get(str(v), str(v)) if pd.notna(v) else None)
    job = (
        frame["job_id"]
        .astype("object")
        .map(lambda j: short_id(str(j), 12) if pd.notna(j) else "(no job id)")
    )
    name = name.where(name.notna(), job)
    return (name + " · " + job) if with_job else name


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


def result_type_matrix(by_result_type: dict[str, dict[str, int]]) -> pd.DataFrame:
    """Return ``summary``'s ``by_envelope_result_type`` as a table: a row per result type, a
    column per record status, and the row's total."""
    frame = pd.DataFrame.from_dict(by_result_type, orient="index").fillna(0).astype("int64")
    frame = frame.reindex(columns=sorted(frame.columns))
    frame.insert(0, "result_type", frame.index.astype("str"))
    return frame.assign(total=frame.drop(columns="result_type").sum(axis=1)).reset_index(drop=True)


# --- Vega-Lite charts (Streamlit's native charts) ---------------------------------------------
# The Overview and Users pages draw with Vega-Lite rather than Plotly: a new browser tab spends
# about 1 s evaluating Plotly's 4.7 MB script, and Streamlit shows nothing of the page's content
# until it has (benchmarks/RESULTS.md, "Dashboard at 1M, third pass"). Vega-Lite draws text on a
# canvas and its tooltips escape HTML, so names from the logs need no escaping here.


# For categories that are neither statuses nor actions (error codes, apps): no red or green,
# which mean failure and success everywhere.
CATEGORY_COLORS = ["#2563eb", "#7c3aed", "#0891b2", "#a16207", "#db2777", "#64748b", "#0f766e"]


def epoch_ms(values: pd.Series) -> pd.Series:
    """Return UTC timestamps as milliseconds since 1970 (what Vega-Lite reads as UTC, with no
    time-zone conversion on the way)."""
    ts = pd.to_datetime(values, utc=True)
    return (ts - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)


def iso_utc(ts: Any) -> str:
    """Return a timestamp as ISO 8601 in UTC with milliseconds and a Z (`…T08:05:00.000Z`)."""
    return pd.Timestamp(ts).tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def bucket_width(freq: str | None) -> pd.Timedelta:
    """Return the width of one ``freq`` time bucket (a pandas frequency; weeks are 7 days)."""
    if not freq:
        return pd.Timedelta(hours=1)
    if str(freq).upper().startswith("W"):
        return pd.Timedelta(days=7)
    return pd.Timedelta(pd.tseries.frequencies.to_offset(freq))


def color_scale(values: list[str], palette: dict[str, str]) -> dict[str, list[str]]:
    """Return a Vega-Lite colour scale: ``palette``'s colour for each of ``values``, the
    category colours (neither red nor green) for the others."""
    domain = [v for v in palette if v in values] + sorted(v for v in values if v not in palette)
    spare = iter(CATEGORY_COLORS * (len(domain) // len(CATEGORY_COLORS) + 1))
    return {"domain": domain, "range": [palette.get(v) or next(spare) for v in domain]}


def time_bars(
    series: pd.DataFrame, by: str, freq: str | None, palette: dict[str, str], log_y: bool
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Return (data, Vega-Lite spec) drawing ``series`` (``bucket``, ``by``, ``count``) as bars
    over time: stacked, or side by side within each bucket on a log axis (stacked segments on a
    log axis would lie about their sizes). Counts are labelled on the side-by-side bars when
    there are at most 60."""
    width = bucket_width(freq)
    values = series[by].astype("str")
    order = color_scale(sorted(values.unique()), palette)["domain"]
    rank = values.map({v: i for i, v in enumerate(order)}).astype("int64")  # legend order
    start = pd.to_datetime(series["bucket"], utc=True)
    if log_y:
        slot = rank
        part = width / max(len(order), 1)
        x0 = start + part * slot + part * 0.05
        x1 = start + part * (slot + 1) - part * 0.05
    else:
        x0, x1 = start + width * 0.03, start + width * 0.97
    data = pd.DataFrame(
        {
            "x0": epoch_ms(x0),
            "x1": epoch_ms(x1),
            "xm": epoch_ms(x0 + (x1 - x0) / 2),
            "when": start.dt.strftime("%Y-%m-%d %H:%M UTC"),
            by: values,
            "count": series["count"].astype("int64"),
            # The stack's order within a bucket: the legend's.
            "order": rank,
        }
    )
    title = by.replace("_", " ").capitalize()
    y: dict[str, Any] = {"field": "count", "type": "quantitative"}
    if log_y:
        # From 0.7: a bucket of one event still shows a bar (log 1 = 0 is the axis's bottom).
        y |= {
            "title": "Events (log scale)",
            "stack": None,
            "scale": {"type": "log", "domainMin": 0.7},
        }
    else:
        # Stacked by Vega-Lite's stack transform (a bar with x and x2 is not stacked on its own):
        # each segment from y0 to y1 within its bucket, in the legend's order.
        y = {"field": "y1", "type": "quantitative", "title": "Events"}
    # Day or week buckets: a tick per day at midnight UTC, labelled with the date only.
    axis: dict[str, Any] = (
        {"format": "%b %d", "tickCount": {"interval": "day", "step": 1}, "labelOverlap": True}
        if width >= pd.Timedelta(days=1)
        else {"format": "%b %d %H:%M", "labelOverlap": True}
    )
    # A log axis has no zero: its bars rise from the bottom of the plot.
    base: dict[str, Any] = {"y2": {"value": "height"}} if log_y else {"y2": {"field": "y0"}}
    bars: dict[str, Any] = {
        "mark": {"type": "bar"},
        "encoding": {
            "x": {
                "field": "x0",
                "type": "temporal",
                "title": "Time (UTC)",
                "scale": {"type": "utc"},
                "axis": axis,
            },
            "x2": {"field": "x1"},
            "y": y,
            **base,
            "color": {
                "field": by,
                "type": "nominal",
                "title": title,
                "scale": color_scale(list(values.unique()), palette),
                "legend": {"orient": "top"},
            },
            "tooltip": [
                {"field": "when", "type": "nominal", "title": "From"},
                {"field": by, "type": "nominal", "title": title},
                {"field": "count", "type": "quantitative", "title": "Events", "format": ","},
            ],
        },
    }
    spec: dict[str, Any] = {"height": 360, "layer": [bars]}
    if not log_y:
        spec["transform"] = [
            {
                "stack": "count",
                "groupby": ["x0"],
                "sort": [{"field": "order", "order": "ascending"}],
                "as": ["y0", "y1"],
            },
        ]
    if log_y and len(data) <= 60:
        spec["layer"].append(
            {
                "mark": {"type": "text", "baseline": "bottom", "dy": -2, "fontSize": 10},
                "encoding": {
                    "x": {"field": "xm", "type": "temporal", "scale": {"type": "utc"}},
                    "y": y,
                    "text": {"field": "count", "type": "quantitative", "format": ","},
                    # In the bar's colour: readable on the light and the dark theme alike.
                    "color": bars["encoding"]["color"] | {"legend": None},
                },
            }
        )
    return data, spec


def time_points(
    events: pd.DataFrame, palette: dict[str, str], window: tuple[pd.Timestamp, pd.Timestamp]
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Return (data, Vega-Lite spec) drawing one user's ``events`` as points: time across,
    action down, coloured and shaped by status, over the x range ``window``."""
    when = pd.to_datetime(events["activity_at"], utc=True)
    text = {
        c: events[c].astype("object").where(events[c].notna(), "—").astype("str")
        for c in ("action", "status", "error_code", "cycle_id")
        if c in events.columns
    }
    data = pd.DataFrame({"at": epoch_ms(when), "when": when.dt.strftime("%Y-%m-%d %H:%M:%S UTC")})
    data = data.assign(**text)
    status = color_scale(sorted(data["status"].unique()), palette)
    spec: dict[str, Any] = {
        "height": 260,
        "mark": {"type": "point", "filled": True, "size": 140, "opacity": 0.9},
        "encoding": {
            "x": {
                "field": "at",
                "type": "temporal",
                "title": "Time (UTC)",
                "scale": {
                    "type": "utc",
                    # ISO with Z: what Vega-Lite reads as a UTC instant in a domain.
                    "domain": [iso_utc(t) for t in window],
                },
                "axis": {"format": "%b %d %H:%M", "labelOverlap": True},
            },
            "y": {"field": "action", "type": "nominal", "title": "Action"},
            "color": {
                "field": "status",
                "type": "nominal",
                "title": "Status",
                "scale": status,
                "legend": {"orient": "top"},
            },
            "shape": {"field": "status", "type": "nominal", "title": "Status"},
            "tooltip": [
                {"field": c, "type": "nominal", "title": column_label(c)}
                for c in ("when", "action", "status", "error_code", "cycle_id")
                if c in data.columns
            ],
        },
    }
    return data, spec
