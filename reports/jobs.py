"""job-status: each job's latest snapshot beside its last observed run, for "is it still running?".

One row per job known from job snapshots or events. ``last_run_at`` is the later of the snapshot's
``last_execution_ended`` (what Graph says) and the job's last event (what the logs show), so a job
whose logs lag behind its status is not taken for a stopped one. ``next_run_due_at`` is
``last_run_at`` + the schedule interval, null when the job has no interval (it never runs by
itself) or no run was ever seen. :func:`last_run` and :func:`next_run_due` are that rule, coded
once: the Overview's job-header (reports.job_status) and the ``stalled`` alert read them too.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from reports import Filters, Inputs, ReportResult
from reports.cycles import cycle_table
from reports.inputs import latest_jobs, slim

UTC = "datetime64[us, UTC]"
COLUMNS = [
    "job_id",
    "service_principal_id",
    "status_code",
    "schedule_state",
    "schedule_interval_s",
    "captured_at",
    "last_execution_ended",
    "last_cycle_id",
    "last_cycle_started_at",
    "last_cycle_ended_at",
    "last_run_at",
    "next_run_due_at",
]


def last_run(last_execution_ended: Any, last_cycle_ended_at: Any) -> Any:
    """Return when a job last ran: the later of Graph's last execution end and its last event.

    Works on scalars (None/NaT when neither is known) and on aligned Series alike.
    """
    if isinstance(last_execution_ended, pd.Series) or isinstance(last_cycle_ended_at, pd.Series):
        both = pd.concat(
            [pd.Series(last_execution_ended), pd.Series(last_cycle_ended_at)], axis=1
        ).astype(UTC)
        return both.max(axis=1).astype(UTC)
    known = [pd.Timestamp(v) for v in (last_execution_ended, last_cycle_ended_at) if pd.notna(v)]
    return max(known) if known else None


def next_run_due(last_run_at: Any, interval_s: Any) -> Any:
    """Return when a job's next run is due: its last run + its schedule interval.

    None/NaT without a last run or without a (positive) interval: such a job never runs by
    itself. Works on scalars and on aligned Series alike.
    """
    if isinstance(last_run_at, pd.Series) or isinstance(interval_s, pd.Series):
        seconds = pd.Series(interval_s, dtype="Float64").astype("float64")
        seconds = seconds.where(seconds > 0)
        return (pd.Series(last_run_at).astype(UTC) + pd.to_timedelta(seconds, unit="s")).astype(UTC)
    if last_run_at is None or pd.isna(last_run_at) or interval_s is None or pd.isna(interval_s):
        return None
    if float(interval_s) <= 0:
        return None
    return pd.Timestamp(last_run_at) + pd.Timedelta(seconds=float(interval_s))


def job_status(events: pd.DataFrame, sync_jobs: pd.DataFrame) -> pd.DataFrame:
    """Return one row per job: latest snapshot state, last cycle and when the next run is due."""
    cycles = cycle_table(events, sync_jobs)
    last = cycles.dropna(subset=["job_id"]).sort_values("ended_at", kind="stable")
    last = last.drop_duplicates("job_id", keep="last").set_index("job_id")
    jobs = latest_jobs(sync_jobs)
    jobs = jobs.set_index("job_id") if not jobs.empty else jobs
    ids = last.index.union(jobs.index if not jobs.empty else pd.Index([], dtype="str"))
    out = pd.DataFrame(index=pd.Index(ids, name="job_id"))
    for c in ("service_principal_id", "status_code", "schedule_state"):
        out[c] = jobs[c] if not jobs.empty else pd.Series(dtype="str")
    out["service_principal_id"] = out["service_principal_id"].fillna(
        last["service_principal_id"] if not last.empty else pd.Series(dtype="str")
    )
    out["schedule_interval_s"] = (
        jobs["schedule_interval_s"] if not jobs.empty else pd.Series(dtype="Int64")
    ).astype("Int64")
    for c in ("captured_at", "last_execution_ended"):
        out[c] = (jobs[c] if not jobs.empty else pd.Series(dtype=UTC)).astype(UTC)
    out["last_cycle_id"] = last["cycle_id"].astype("str") if not last.empty else None
    out["last_cycle_started_at"] = last["started_at"] if not last.empty else None
    out["last_cycle_ended_at"] = last["ended_at"] if not last.empty else None
    for c in ("last_cycle_started_at", "last_cycle_ended_at"):
        out[c] = out[c].astype(UTC)
    out["last_cycle_id"] = out["last_cycle_id"].astype("str")
    out["last_run_at"] = last_run(out["last_execution_ended"], out["last_cycle_ended_at"])
    out["next_run_due_at"] = next_run_due(out["last_run_at"], out["schedule_interval_s"])
    return out.reset_index()[COLUMNS].sort_values("job_id", kind="stable").reset_index(drop=True)


def build(
    inputs: Inputs,
    filters: Filters,
    *,
    include_noise: bool = True,
    now: pd.Timestamp | None = None,
    **params: Any,
) -> ReportResult:
    """Return each selected job's state, last cycle and next due run."""
    events = filters.apply_events(slim(inputs.events, "cycle_id", "change_id"))
    jobs = filters.apply_table("sync_jobs", inputs.sync_jobs)
    return ReportResult(frame=job_status(events, jobs))
