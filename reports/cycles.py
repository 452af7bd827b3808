"""cycles: one row per provisioning cycle (events sharing a cycle id), per DESIGN "Definitions"."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from reports import Filters, Inputs, ReportResult
from reports.inputs import isin, latest_jobs, lookup, object_key

COLUMNS = [
    "cycle_id",
    "job_id",
    "started_at",
    "ended_at",
    "duration_s",
    "kind",
    "events",
    "changes",
    "objects",
    "success",
    "failure",
    "skipped",
    "warning",
    "objects_per_min",
    "gap_before_s",
    "service_principal_id",
]
_STATUSES = ("success", "failure", "skipped", "warning")


def _empty() -> pd.DataFrame:
    dtypes = {
        "cycle_id": "str",
        "job_id": "str",
        "service_principal_id": "str",
        "started_at": "datetime64[us, UTC]",
        "ended_at": "datetime64[us, UTC]",
        "duration_s": "Float64",
        "kind": "str",
        "objects_per_min": "Float64",
        "gap_before_s": "Float64",
    }
    return pd.DataFrame({c: pd.Series(dtype=dtypes.get(c, "Int64")) for c in COLUMNS})


def cycle_table(events: pd.DataFrame, sync_jobs: pd.DataFrame) -> pd.DataFrame:
    """Return one row per (job, cycle) of ``events`` with timing, kind, counts and throughput."""
    ev = events.loc[events["cycle_id"].notna()]
    if ev.empty:
        return _empty()
    ev = ev.assign(_object=object_key(ev), job_id=ev["job_id"].fillna(""))
    keys = ["job_id", "cycle_id"]
    grouped = ev.groupby(keys, sort=False)
    out = grouped.agg(
        service_principal_id=("service_principal_id", "first"),
        started_at=("activity_at", "min"),
        ended_at=("activity_at", "max"),
        events=("id", "size"),
        changes=("change_id", "nunique"),
        objects=("_object", "nunique"),
    )
    status_counts = ev.pivot_table(
        index=keys, columns="status", values="id", aggfunc="size", fill_value=0, observed=True
    )
    for status in _STATUSES:
        col = status_counts[status] if status in status_counts.columns else 0
        out[status] = col
    return finish_cycles(out.reset_index(), sync_jobs)


def finish_cycles(out: pd.DataFrame, sync_jobs: pd.DataFrame) -> pd.DataFrame:
    """Return cycle rows from one aggregated row per (job, cycle): timing, throughput, gap, kind.

    ``out`` holds ``job_id`` ("" for none), ``cycle_id``, ``service_principal_id``,
    ``started_at``, ``ended_at``, ``events``, ``changes``, ``objects`` and a count per status;
    both engines (local and Log Analytics push-down) finish their aggregates here.
    """
    if out.empty:
        return _empty()
    out = out.copy()
    out["duration_s"] = (out["ended_at"] - out["started_at"]).dt.total_seconds().astype("Float64")
    minutes = out["duration_s"] / 60.0
    out["objects_per_min"] = (out["objects"] / minutes.where(minutes > 0)).astype("Float64")
    out = out.sort_values(["job_id", "started_at", "cycle_id"], kind="stable")
    previous_end = out.groupby("job_id", sort=False)["ended_at"].shift(1)
    out["gap_before_s"] = (out["started_at"] - previous_end).dt.total_seconds().astype("Float64")
    out["kind"] = _kinds(out, sync_jobs)
    out["job_id"] = out["job_id"].replace("", np.nan)
    out = out.sort_values(["started_at", "job_id", "cycle_id"], kind="stable")
    for c in ("events", "changes", "objects", *_STATUSES):
        out[c] = out[c].astype("Int64")
    return out[COLUMNS].reset_index(drop=True)


def _kinds(cycles: pd.DataFrame, sync_jobs: pd.DataFrame) -> pd.Series:
    """Return each cycle's kind: the first cycle of a job is initial unless steady state came first.

    A job with no snapshot at all gives its first cycle ``unknown`` (nothing says whether it was
    a restart); every later cycle is ``incremental``.
    """
    first = cycles.groupby("job_id", sort=False).cumcount() == 0
    jobs = latest_jobs(sync_jobs)
    steady = (
        jobs.set_index("job_id")["steady_state_first_at"]
        if not jobs.empty
        else pd.Series(dtype="datetime64[us, UTC]")
    )
    known = isin(cycles["job_id"], steady.index)
    steady_at = lookup(steady, cycles["job_id"])
    initial = steady_at.isna() | (steady_at >= cycles["started_at"])
    kind = pd.Series("incremental", index=cycles.index, dtype="str")
    kind[first & known & initial.fillna(True).astype(bool)] = "initial"
    kind[first & ~known] = "unknown"
    return kind


def incremental_trend(cycles: pd.DataFrame, window: int = 5) -> pd.DataFrame:
    """Return incremental cycles in time order with a rolling median of their duration per job."""
    inc = cycles.loc[
        cycles["kind"] == "incremental", ["job_id", "cycle_id", "started_at", "duration_s"]
    ]
    inc = inc.sort_values(["job_id", "started_at"], kind="stable")
    rolling = (
        inc.groupby("job_id", sort=False, dropna=False)["duration_s"]
        .rolling(window, min_periods=1)
        .median()
        .reset_index(level=0, drop=True)
    )
    inc = inc.assign(rolling_median_s=rolling.astype("Float64"))
    return inc.sort_values(["started_at", "job_id"], kind="stable").reset_index(drop=True)


def build(
    inputs: Inputs,
    filters: Filters,
    *,
    include_noise: bool = True,
    now: pd.Timestamp | None = None,
    **params: Any,
) -> ReportResult:
    """Return the cycles with a selected event (noise counted: it is real work the job did).

    Start, end, duration, kind, counts and gaps are the model's, from all of a cycle's events:
    a filter chooses which cycles are listed, never what they are (DESIGN "filters").
    """
    from reports.model import model_of, selected_cycles

    pairs = selected_pairs(inputs, filters)
    return ReportResult(frame=selected_cycles(model_of(inputs).cycles, pairs))


def selected_pairs(inputs: Inputs, filters: Filters) -> pd.DataFrame:
    """Return the (job_id, cycle_id) pairs of the events ``filters`` select (those with a
    cycle id, once each), found by DuckDB where the events lie (the model's timeline where it
    is kept, reports.model.timeline_of): what selected_cycles reads."""
    from reports import sql
    from reports.model import timeline_of

    events, tables, frames = timeline_of(inputs)
    where = sql.filter_sql(filters)
    return sql.over(
        inputs,
        f"SELECT DISTINCT job_id, cycle_id FROM ({events}) WHERE {where} "  # noqa: S608
        "AND cycle_id IS NOT NULL",
        tables,
        **frames,
    )
