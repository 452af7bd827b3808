"""Small shared steps of several reports: object keys, latest rows, snapshots, the reference time."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

UTC_DTYPE = "datetime64[us, UTC]"


def object_key(events: pd.DataFrame) -> pd.Series:
    """Return one key per event naming its source object (id, else UPN, name or target id)."""
    key = events["source_id"].astype("str")
    for prefix, column in (("upn:", "source_upn"), ("name:", "source_name"), ("target:", "target_id")):
        key = key.fillna(prefix + events[column].astype("str"))
    return key


def order_events(events: pd.DataFrame) -> pd.DataFrame:
    """Return events sorted by time, then id (a stable order for "first" and "last")."""
    return events.sort_values(["activity_at", "id"], kind="stable")


def last_rows(frame: pd.DataFrame, by: str | Sequence[str]) -> pd.DataFrame:
    """Return the last row of ``frame`` (already ordered) for each value of ``by``, nulls kept."""
    return frame.drop_duplicates(subset=by, keep="last")


def reference_now(now: pd.Timestamp | None, events: pd.DataFrame) -> pd.Timestamp | None:
    """Return ``now``, else the latest event time (so results never depend on the clock)."""
    if now is not None:
        return now
    if events.empty or events["activity_at"].isna().all():
        return None
    return pd.Timestamp(events["activity_at"].max())


def latest_jobs(sync_jobs: pd.DataFrame) -> pd.DataFrame:
    """Return the latest snapshot of each job, with ``steady_state_first_at`` = its earliest value."""
    if sync_jobs.empty:
        return sync_jobs.copy()
    ordered = sync_jobs.sort_values("captured_at", kind="stable")
    latest = last_rows(ordered, "job_id").set_index("job_id")
    latest["steady_state_first_at"] = ordered.groupby("job_id")["steady_state_first_at"].min()
    return latest.reset_index()


def latest_scim_snapshot(scim_resources: pd.DataFrame, resource_type: str = "User") -> pd.DataFrame:
    """Return the rows of ``resource_type`` in the latest snapshot (the newest ``captured_at``)."""
    rows = scim_resources.loc[scim_resources["resource_type"] == resource_type]
    if rows.empty:
        return rows
    return rows.loc[rows["captured_at"] == rows["captured_at"].max()]


def latest_per_resource(scim_resources: pd.DataFrame) -> pd.DataFrame:
    """Return each SCIM resource's latest captured row (what `export scim_resources` shows)."""
    ordered = scim_resources.sort_values("captured_at", kind="stable")
    return last_rows(ordered, ["resource_type", "id"]).sort_index()


def casefold(series: pd.Series) -> pd.Series:
    """Return text lower-cased for case-insensitive matching (nulls stay null)."""
    return series.astype("str").str.casefold()
