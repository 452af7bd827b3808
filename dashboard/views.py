"""Small pure helpers the pages need and no report provides (frames in, frames out).

Kept here, apart from the pages, so they are testable and so the lead can move any of them into
`reports/` later; nothing here draws or reads the store.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pandas as pd


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


@dataclass(frozen=True)
class FilterOptions:
    """Choices offered by the sidebar, taken from the stored events."""

    apps: dict[str, str]  # service principal id -> display name
    jobs: tuple[str, ...]
    first_at: pd.Timestamp | None
    last_at: pd.Timestamp | None
    is_demo: bool


def filter_options(events: pd.DataFrame) -> FilterOptions:
    """Return the apps, jobs and time span present in ``events``, and whether it is demo data."""
    if events.empty:
        return FilterOptions({}, (), None, None, False)
    apps_frame = (
        events[["service_principal_id", "service_principal_name"]]
        .dropna(subset=["service_principal_id"])
        .drop_duplicates("service_principal_id")
    )
    apps = {
        str(i): str(n) if pd.notna(n) else str(i)
        for i, n in zip(
            apps_frame["service_principal_id"], apps_frame["service_principal_name"], strict=True
        )
    }
    jobs = tuple(sorted(str(j) for j in events["job_id"].dropna().unique()))
    origins = set(events["origin"].dropna().unique())
    return FilterOptions(
        apps=dict(sorted(apps.items(), key=lambda kv: kv[1].lower())),
        jobs=jobs,
        first_at=events["activity_at"].min(),
        last_at=events["activity_at"].max(),
        is_demo=bool(origins) and origins == {"demo"},
    )


RISK_ORDER = ("quarantined", "over_threshold", "approaching", "low")


def worst_risk(risk: pd.DataFrame | None) -> str:
    """Return the most serious `risk` value of the quarantine-risk rows, or `—` without jobs."""
    if risk is None or risk.empty:
        return "—"
    present = set(risk["risk"].dropna())
    return next((r for r in RISK_ORDER if r in present), "unknown")


def bucket_for(span: pd.Timedelta) -> str:
    """Return a pandas frequency giving a readable number of bars for a time ``span``."""
    if span <= pd.Timedelta(hours=6):
        return "5min"
    if span <= pd.Timedelta(days=2):
        return "h"
    if span <= pd.Timedelta(days=60):
        return "D"
    return "W"


def counts_over_time(frame: pd.DataFrame, time_col: str, by: str, freq: str) -> pd.DataFrame:
    """Return rows per time bucket and ``by`` value: columns ``bucket``, ``by``, ``count``."""
    if frame.empty:
        return pd.DataFrame({"bucket": pd.Series(dtype="datetime64[us, UTC]"), by: [], "count": []})
    buckets = frame[time_col].dt.floor(freq)
    out = (
        frame.assign(bucket=buckets)
        .groupby(["bucket", by], dropna=False, observed=True)
        .size()
        .rename("count")
        .reset_index()
    )
    out[by] = out[by].fillna("(none)").astype(str)
    return out


LATEST_FAILURE_COLUMNS = (
    "activity_at",
    "source_name",
    "source_upn",
    "action",
    "error_code",
    "error_reason",
    "service_principal_name",
    "cycle_id",
)


def latest_failures(events: pd.DataFrame, limit: int = 20) -> pd.DataFrame:
    """Return the ``limit`` newest failed events, newest first, with the columns people read."""
    failed = events[events["status"] == "failure"]
    cols = [c for c in LATEST_FAILURE_COLUMNS if c in failed.columns]
    return failed.nlargest(limit, "activity_at")[cols].reset_index(drop=True)


def scim_traffic_summary(requests: pd.DataFrame) -> dict[str, Any]:
    """Return request count, error/429 counts and overall latency percentiles of SCIM traffic."""
    codes = requests["status_code"].astype("Float64")
    latency = requests["latency_ms"].astype("Float64").dropna()
    return {
        "requests": len(requests),
        "errors": int((codes >= 400).sum()),
        "throttled": int((codes == 429).sum()),
        "p50_ms": float(latency.quantile(0.5)) if len(latency) else None,
        "p95_ms": float(latency.quantile(0.95)) if len(latency) else None,
        "p99_ms": float(latency.quantile(0.99)) if len(latency) else None,
    }


def status_class(codes: pd.Series) -> pd.Series:
    """Return `2xx`/`4xx`/... labels for HTTP status codes (`429` kept apart)."""
    num = codes.astype("Float64")
    label = (num // 100).astype("Int64").astype(str) + "xx"
    label = label.where(num != 429, "429")
    return label.where(num.notna(), "unknown")


def search_users(users: pd.DataFrame, query: str, limit: int = 200) -> pd.DataFrame:
    """Return rows of the `users` report whose name, UPN or ids contain ``query`` (any case)."""
    q = query.strip().lower()
    if not q:
        return users.head(limit)
    mask = pd.Series(False, index=users.index)
    for col in ("source_name", "source_upn", "source_id", "target_id"):
        if col in users.columns:
            mask |= users[col].fillna("").str.lower().str.contains(q, regex=False)
    return users[mask].head(limit)


def rows_for_events(frame: pd.DataFrame, event_ids: pd.Series) -> pd.DataFrame:
    """Return rows of a child table (steps, modified_properties) belonging to ``event_ids``."""
    return frame[frame["event_id"].isin(set(event_ids))]


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


def user_key(users: pd.DataFrame) -> pd.Series:
    """Return the identifier the timeline report takes for each `users` row (id, else UPN, name)."""
    key = users["source_id"].astype("object")
    for col in ("source_upn", "source_name", "target_id"):
        key = key.where(key.notna(), users[col].astype("object"))
    return key.fillna("").astype(str)


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


def correlation_for_events(correlation: pd.DataFrame | None, event_ids: pd.Series) -> pd.DataFrame:
    """Return the correlation rows of ``event_ids``, oldest first."""
    if correlation is None or correlation.empty:
        return pd.DataFrame()
    rows = correlation[correlation["event_id"].isin(set(event_ids))]
    return rows.sort_values("activity_at").reset_index(drop=True)


def latest_verdict(correlation: pd.DataFrame) -> str | None:
    """Return the verdict of the newest correlation row, or None."""
    if correlation.empty or "verdict" not in correlation.columns:
        return None
    value = correlation["verdict"].iloc[-1]
    return None if pd.isna(value) else str(value)


def safe_file_part(text: str) -> str:
    """Return ``text`` reduced to characters safe in a download file name."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")
    return cleaned[:60] or "user"


def affected_users(users: pd.DataFrame | None) -> pd.DataFrame:
    """Return `users` rows with at least one failure, most failures first."""
    if users is None or users.empty:
        return pd.DataFrame()
    hit = users[users["failures"].fillna(0) > 0]
    return hit.sort_values(["failures", "last_at"], ascending=[False, False]).reset_index(drop=True)


VERDICTS = (
    "provisioned",
    "failed",
    "skipped",
    "pending",
    "missing_in_wiki",
    "should_be_disabled",
    "orphaned",
    "excluded",
)


def coverage_funnel(coverage: pd.DataFrame) -> pd.DataFrame:
    """Return the funnel from in scope to provisioned: columns ``stage`` and ``users``.

    Stages nest: in scope; of those, processed by Entra (any event); of those, last status
    success; of those, active in the wiki.
    """
    in_scope = coverage[coverage["in_scope"].fillna(False).astype(bool)]
    seen = in_scope[in_scope["last_status"].notna()]
    ok = seen[seen["last_status"] == "success"]
    provisioned = ok[ok["wiki_state"] == "active"]
    return pd.DataFrame(
        {
            "stage": [
                "In scope",
                "Processed by Entra",
                "Last Entra status success",
                "Active in the wiki",
            ],
            "users": [len(in_scope), len(seen), len(ok), len(provisioned)],
        }
    )


def verdict_counts(coverage: pd.DataFrame) -> dict[str, int]:
    """Return {verdict: users} in the documented order, zeros included."""
    counts = coverage["verdict"].value_counts()
    return {v: int(counts.get(v, 0)) for v in VERDICTS}


def status_code_counts(requests: pd.DataFrame) -> pd.DataFrame:
    """Return requests per HTTP status code with its class, most frequent first."""
    counts = requests["status_code"].value_counts(dropna=False).rename("requests").reset_index()
    counts["status_class"] = status_class(counts["status_code"])
    counts["status_code"] = counts["status_code"].astype("str").replace("<NA>", "unknown")
    return counts


def scale_estimate(estimate: dict[str, Any], objects: int) -> dict[str, Any]:
    """Return the estimate's durations for ``objects`` objects instead of its own scope size.

    Every duration in the estimate is linear in the object count (documented bounds are minutes
    per object; the observed ones are objects ÷ per-cycle rates), so scaling is exact when the
    estimate had objects; from zero objects the median observed rate stands in.
    """
    base = int(estimate.get("objects_in_scope") or 0)
    out = dict(estimate)
    out["objects_in_scope"] = objects
    if base == objects:
        return out
    for key in (
        "docs_min_minutes",
        "docs_max_minutes",
        "estimate_minutes_p50",
        "estimate_minutes_p90",
    ):
        value = estimate.get(key)
        if value is None:
            continue
        if base:
            out[key] = float(value) * objects / base
        elif key.startswith("docs_"):
            out[key] = (0.01 if key == "docs_min_minutes" else 0.08) * objects
    rate = estimate.get("observed_objects_per_min")
    if not base and rate:
        out["estimate_minutes_p50"] = objects / float(rate)
        out["estimate_minutes_p90"] = None
    return out


def status_classes_long(minutes: pd.DataFrame, classes: dict[str, str]) -> pd.DataFrame:
    """Return scim-traffic minute rows as (period_start, status, requests), zero counts dropped.

    ``classes`` maps a label to a count column; ``status_4xx_other`` is 4xx without the 429s.
    """
    wide = minutes.assign(status_4xx_other=minutes["status_4xx"] - minutes["throttled_429"])
    long = wide[["period_start", *classes.values()]].melt(
        id_vars=["period_start"],
        value_vars=list(classes.values()),
        var_name="column",
        value_name="requests",
    )
    long["status"] = long["column"].map({v: k for k, v in classes.items()})
    return long.loc[long["requests"] > 0, ["period_start", "status", "requests"]]


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
