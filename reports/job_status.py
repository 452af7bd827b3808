"""job-header: per job, what Entra's provisioning page says, at the reference time ``now``.

One row per job (latest job snapshot, else the job as seen in events): the app's name, state,
the current or last cycle with its progress, objects in scope to date, last run, next run and
whether it is overdue, quarantine, and links into the Microsoft Entra admin center.

Admin-center links (docs/INTERNALS.md "Entra admin center links"): the enterprise app's
provisioning blade is ``#view/Microsoft_AAD_IAM/ManagedAppMenuBlade/~/ProvisioningActivity/
objectId/<service principal id>`` (the shape public admin scripts use as a job's portal
link). "Provisioning logs" and "Provision on demand" are entries of the same app menu; their
links use the menu's blade names ``~/ProvisioningLogs`` and ``~/ProvisionOnDemand``, which are
NOT confirmed by a public source: the portal shows the app's Overview for a blade name it does
not know, so such a link still lands on the right app, one click from the entry.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from reports import Filters, Inputs, ReportResult
from reports import jobs as jobs_report
from reports.estimate import cycle_progress, estimate
from reports.inputs import latest_jobs, reference_now

ADMIN_CENTER = "https://entra.microsoft.com/#view/Microsoft_AAD_IAM/ManagedAppMenuBlade/~/"
BLADES = {
    "provisioning_url": "ProvisioningActivity",
    "logs_url": "ProvisioningLogs",
    "on_demand_url": "ProvisionOnDemand",
}
OVERDUE_GRACE_MIN = 5  # a run this late is still "due", not "overdue"

COLUMNS = [
    "app",
    "job_id",
    "state",
    "schedule",
    "cycle_id",
    "cycle_kind",
    "cycle_running",
    "cycle_started_at",
    "cycle_ended_at",
    "processed",
    "total",
    "progress",
    "objects_in_scope",
    "count_entitled",
    "last_run_at",
    "next_run_at",
    "overdue_min",
    "quarantine_reason",
    "quarantine_began",
    "quarantine_next_attempt",
    "service_principal_id",
    *BLADES,
]


def admin_links(service_principal_id: str | None) -> dict[str, str | None]:
    """Return the Entra admin center links of one enterprise app (None without an id)."""
    return {
        key: f"{ADMIN_CENTER}{blade}/objectId/{service_principal_id}"
        if service_principal_id
        else None
        for key, blade in BLADES.items()
    }


def _ts(value: Any) -> pd.Timestamp | None:
    return None if value is None or pd.isna(value) else pd.Timestamp(value)


def _job_row(
    inputs: Inputs, job_id: str, snapshot: pd.Series | None, now: pd.Timestamp | None
) -> dict[str, Any]:
    from reports.cycles import cycle_table

    sel = Filters(job_ids=(job_id,)).apply_inputs(inputs)
    ev = sel.events
    sp = None
    if snapshot is not None and pd.notna(snapshot.get("service_principal_id")):
        sp = str(snapshot["service_principal_id"])
    elif len(ev):
        sp = (
            str(ev["service_principal_id"].dropna().iloc[0])
            if ev["service_principal_id"].notna().any()
            else None
        )
    if sp is not None:
        # Scope belongs to the job's app: its assignments, not every app's.
        sel = Filters(job_ids=(job_id,), service_principal_ids=(sp,)).apply_inputs(inputs)
        ev = sel.events
    names = ev["service_principal_name"].dropna() if len(ev) else pd.Series(dtype="str")
    app = str(names.iloc[-1]) if len(names) else (sp or job_id)
    est = estimate(sel, now)
    cur = est.get("current_cycle")
    cycles = cycle_table(ev, sel.sync_jobs)
    last_cycle = cycles.sort_values("started_at", kind="stable").iloc[-1] if len(cycles) else None
    row: dict[str, Any] = {"app": app, "job_id": job_id, "service_principal_id": sp}
    state = snapshot.get("status_code") if snapshot is not None else None
    row["state"] = None if state is None or pd.isna(state) else str(state)
    schedule = snapshot.get("schedule_state") if snapshot is not None else None
    row["schedule"] = None if schedule is None or pd.isna(schedule) else str(schedule)
    progress = cycle_progress(cur)
    if cur is not None:
        row.update(
            cycle_id=cur["cycle_id"],
            cycle_kind=cur["kind"],
            cycle_running=True,
            cycle_started_at=_ts(cur["started_at"]),
            cycle_ended_at=None,
            processed=progress["processed"] if progress else None,
            total=progress["total"] if progress else None,
            progress=progress["fraction"] if progress else None,
        )
    elif last_cycle is not None:
        row.update(
            cycle_id=last_cycle["cycle_id"],
            cycle_kind=last_cycle["kind"],
            cycle_running=False,
            cycle_started_at=_ts(last_cycle["started_at"]),
            cycle_ended_at=_ts(last_cycle["ended_at"]),
            processed=int(last_cycle["objects"]),
            total=int(last_cycle["objects"]),
            progress=1.0,
        )
    else:
        row.update(
            cycle_id=None,
            cycle_kind=None,
            cycle_running=False,
            cycle_started_at=None,
            cycle_ended_at=None,
            processed=None,
            total=None,
            progress=None,
        )
    row["objects_in_scope"] = int(est["objects_in_scope"])
    entitled = snapshot.get("count_entitled") if snapshot is not None else None
    row["count_entitled"] = None if entitled is None or pd.isna(entitled) else int(entitled)
    # One rule for the last run and the next one due (reports.jobs), as job-status and the
    # stalled alert read it: last run + the job's schedule interval.
    last_run = jobs_report.last_run(
        snapshot.get("last_execution_ended") if snapshot is not None else None,
        last_cycle["ended_at"] if last_cycle is not None else None,
    )
    row["last_run_at"] = _ts(last_run)
    paused = row["schedule"] in ("Disabled", "Paused") or row["state"] in ("Paused",)
    interval = snapshot.get("schedule_interval_s") if snapshot is not None else None
    nxt = None if paused else _ts(jobs_report.next_run_due(last_run, interval))
    if snapshot is not None and pd.notna(snapshot.get("quarantine_next_attempt")):
        nxt = _ts(snapshot["quarantine_next_attempt"])
    row["next_run_at"] = nxt
    at = reference_now(now, inputs.events)
    late = (at - nxt).total_seconds() / 60 if nxt is not None and at is not None else None
    row["overdue_min"] = (
        int(late) if late is not None and late > OVERDUE_GRACE_MIN and cur is None else None
    )
    for key in ("quarantine_reason", "quarantine_began", "quarantine_next_attempt"):
        value = snapshot.get(key) if snapshot is not None else None
        row[key] = None if value is None or pd.isna(value) else value
    row.update(admin_links(sp))
    return row


def job_status(inputs: Inputs, now: pd.Timestamp | None) -> pd.DataFrame:
    """Return one status row per job (jobs with a snapshot first, then jobs seen in events)."""
    snaps = latest_jobs(inputs.sync_jobs)
    snaps = snaps.set_index("job_id") if not snaps.empty else snaps
    job_ids = [str(j) for j in snaps.index] if not snaps.empty else []
    seen = inputs.events["job_id"].dropna().unique() if len(inputs.events) else []
    job_ids += sorted(str(j) for j in seen if str(j) not in set(job_ids))
    rows = [_job_row(inputs, j, snaps.loc[j] if j in snaps.index else None, now) for j in job_ids]
    frame = pd.DataFrame(rows, columns=COLUMNS)
    for column in (
        "cycle_started_at",
        "cycle_ended_at",
        "last_run_at",
        "next_run_at",
        "quarantine_began",
        "quarantine_next_attempt",
    ):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    for column in ("processed", "total", "objects_in_scope", "count_entitled", "overdue_min"):
        frame[column] = frame[column].astype("Int64")
    frame["progress"] = frame["progress"].astype("Float64")
    frame["cycle_running"] = frame["cycle_running"].astype("boolean")
    return frame.sort_values(["app", "job_id"], kind="stable").reset_index(drop=True)


def build(
    inputs: Inputs,
    filters: Filters,
    *,
    include_noise: bool = True,
    now: pd.Timestamp | None = None,
    **params: Any,
) -> ReportResult:
    """Return one status row per selected job at ``now`` (the latest event when None)."""
    sel = Filters(
        service_principal_ids=filters.service_principal_ids, job_ids=filters.job_ids
    ).apply_inputs(inputs)
    return ReportResult(frame=job_status(sel, now))
