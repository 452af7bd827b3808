"""job-status: each job's latest snapshot beside its last observed run, for "is it still running?".

One row per job known from job snapshots or events. ``last_run_at`` is the later of the snapshot's
``last_execution_ended`` (what Graph says) and the job's last event (what the logs show), so a job
whose logs lag behind its status is not taken for a stopped one. ``next_run_due_at`` is
``last_run_at`` + the schedule interval, null when the job has no interval (it never runs by
itself) or no run was ever seen.
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
    out["last_run_at"] = out[["last_execution_ended", "last_cycle_ended_at"]].max(axis=1)
    out["last_run_at"] = out["last_run_at"].astype(UTC)
    interval = pd.to_timedelta(out["schedule_interval_s"].astype("float64"), unit="s")
    out["next_run_due_at"] = (out["last_run_at"] + interval).astype(UTC)
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
