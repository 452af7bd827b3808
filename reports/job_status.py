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

from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa

from ingest.schema import empty_frame
from reports import Filters, Inputs, ReportResult
from reports import jobs as jobs_report
from reports.estimate import (
    EventFacts,
    cycle_progress,
    estimate,
    event_facts_of,
    objects_in_scope_of,
)
from reports.inputs import latest_jobs
from reports.model import model_of, selected_cycles, selected_groups, whole_jobs

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


# What the estimate reads as frames here: only the job snapshots (the events and the scope data
# are counted where they lie).
_UNREAD = {
    t: empty_frame(t)
    for t in ("events", "assignments", "group_members", "scim_resources", "scim_requests")
}


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


# Per (job, app) of the selected events with a job id: the app's last name (stored order) and the
# position of the job's first event naming it; then one row of the latest event time of all.
_APPS_SQL = """
SELECT 'app' AS part, job_id, service_principal_id,
    arg_max(service_principal_name, _row) FILTER (WHERE service_principal_name IS NOT NULL)
        AS app,
    min(_row) AS first_row, NULL AS latest_at
FROM events WHERE {where} AND job_id IS NOT NULL
GROUP BY job_id, service_principal_id
UNION ALL
SELECT 'all', NULL, NULL, NULL, NULL, max(activity_at) FROM events WHERE {where}
"""


@dataclass(frozen=True)
class _Seen:
    """What the selected events say of the jobs: per job its apps, and the latest event time."""

    apps: pd.DataFrame  # job_id, service_principal_id, app, first_row
    latest_at: pd.Timestamp | None

    def first_app(self, job_id: str) -> str | None:
        """Return the app id of the job's first event that names one (stored order)."""
        mine = self.apps.loc[
            (self.apps["job_id"] == job_id) & self.apps["service_principal_id"].notna()
        ]
        if mine.empty:
            return None
        return str(mine.sort_values("first_row", kind="stable")["service_principal_id"].iloc[0])

    def name(self, job_id: str, sp: str | None) -> str | None:
        """Return the app's last name in the job's events (of app ``sp`` when known)."""
        mine = self.apps.loc[self.apps["job_id"] == job_id]
        if sp is not None:
            mine = mine.loc[mine["service_principal_id"] == sp]
        names = mine.loc[mine["app"].notna()]
        return None if names.empty else str(names["app"].iloc[0])


_APPS_SCHEMA = pa.schema(
    [
        ("part", pa.string()),
        ("job_id", pa.string()),
        ("service_principal_id", pa.string()),
        ("app", pa.string()),
        ("first_row", pa.int64()),
        ("latest_at", pa.timestamp("us", tz="UTC")),
    ]
)


def _kept_apps(inputs: Inputs, filters: Filters) -> pd.DataFrame | None:
    """Return _APPS_SQL's rows from the model's groups (kept per job and app), or None when
    they do not answer for ``filters`` (reports.model.selected_groups)."""
    from reports.sql import frame_of

    got = selected_groups(inputs, filters)
    if got is None:
        return None
    rows: list[dict[str, Any]] = [
        {
            "part": "app",
            "job_id": job,
            "service_principal_id": None if pd.isna(sp) else sp,
            "app": None if pd.isna(name) else name,
            "first_row": int(pos),
            "latest_at": None,
        }
        for job, sp, name, pos in zip(
            got["job_id"],
            got["service_principal_id"],
            got["last_name"],
            got["first_pos"],
            strict=True,
        )
        if pd.notna(job)
    ]
    latest = pd.to_datetime(got["last_at"], utc=True).max()
    rows.append(
        {
            "part": "all",
            "job_id": None,
            "service_principal_id": None,
            "app": None,
            "first_row": None,
            "latest_at": None if pd.isna(latest) else latest.to_pydatetime(),
        }
    )
    return frame_of(pa.Table.from_pylist(rows, schema=_APPS_SCHEMA))


def _seen(inputs: Inputs, filters: Filters) -> _Seen:
    from reports import sql

    rows = _kept_apps(inputs, filters)
    if rows is None:
        rows = sql.over(inputs, _APPS_SQL.format(where=sql.filter_sql(filters)), ["events"])
    latest = rows.loc[rows["part"] == "all", "latest_at"]
    apps = rows.loc[rows["part"] == "app"].reset_index(drop=True)
    apps["app"] = apps["app"].where(apps["app"].notna() & (apps["app"] != "None"))
    at = latest.iloc[0] if len(latest) else None
    return _Seen(apps, None if at is None or pd.isna(at) else pd.Timestamp(at))


def _job_facts(inputs: Inputs, mine: Filters) -> EventFacts:
    """Return event_facts_of(``mine``, objects=False): from the model when its groups keep the
    selected jobs whole (their (job, cycle) pairs are then the model's cycles of those jobs),
    else counted where the events lie."""
    model = model_of(inputs)
    got = selected_groups(inputs, mine)
    if got is None or not whole_jobs(got, model.groups):
        return event_facts_of(inputs, mine, objects=False)
    jobs = set(got["job_id"].fillna("").astype("str"))
    pairs = model.columns("cycles", ["job_id", "cycle_id"])
    pairs = pairs.loc[pairs["job_id"].fillna("").astype("str").isin(jobs)].reset_index(drop=True)
    latest = pd.to_datetime(got["last_at"], utc=True).max()
    return EventFacts(pairs, None if pd.isna(latest) else pd.Timestamp(latest), None)


def _job_row(
    inputs: Inputs,
    filters: Filters,
    seen: _Seen,
    job_id: str,
    snapshot: pd.Series | None,
    now: pd.Timestamp | None,
) -> dict[str, Any]:
    sp = None
    if snapshot is not None and pd.notna(snapshot.get("service_principal_id")):
        sp = str(snapshot["service_principal_id"])
    else:
        sp = seen.first_app(job_id)
    # Scope belongs to the job's app: its assignments, not every app's.
    apps = (sp,) if sp is not None else filters.service_principal_ids
    mine = Filters(job_ids=(job_id,), service_principal_ids=apps)
    app = seen.name(job_id, sp) or sp or job_id
    facts = _job_facts(inputs, mine)
    sel = mine.apply_inputs(inputs.replace(**_UNREAD))
    est = estimate(sel, now, facts=facts, in_scope=objects_in_scope_of(inputs, mine, facts))
    cur = est.get("current_cycle")
    # The model's cycles (from all of their events) of the job's selected events.
    cycles = selected_cycles(model_of(inputs).cycles, facts.pairs)
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
    at = now if now is not None else seen.latest_at
    late = (at - nxt).total_seconds() / 60 if nxt is not None and at is not None else None
    row["overdue_min"] = (
        int(late) if late is not None and late > OVERDUE_GRACE_MIN and cur is None else None
    )
    for key in ("quarantine_reason", "quarantine_began", "quarantine_next_attempt"):
        value = snapshot.get(key) if snapshot is not None else None
        row[key] = None if value is None or pd.isna(value) else value
    row.update(admin_links(sp))
    return row


def job_status(inputs: Inputs, filters: Filters, now: pd.Timestamp | None) -> pd.DataFrame:
    """Return one status row per job ``filters`` select by app and job (jobs with a snapshot
    first, then jobs seen in events); the events are counted where they lie."""
    selection = Filters(
        service_principal_ids=filters.service_principal_ids, job_ids=filters.job_ids
    )
    snaps = latest_jobs(selection.apply_table("sync_jobs", inputs.sync_jobs))
    snaps = snaps.set_index("job_id") if not snaps.empty else snaps
    job_ids = [str(j) for j in snaps.index] if not snaps.empty else []
    seen = _seen(inputs, selection)
    known = set(job_ids)
    job_ids += sorted(str(j) for j in seen.apps["job_id"].dropna().unique() if str(j) not in known)
    rows = [
        _job_row(inputs, selection, seen, j, snaps.loc[j] if j in snaps.index else None, now)
        for j in job_ids
    ]
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
    """Return one status row per selected job at ``now`` (the latest event when None).

    Only the app and job filters select: the header says what each job is doing now, whatever
    time range is looked at (the spec's ``time_filtered=False``: the service reads every time).
    """
    return ReportResult(frame=job_status(inputs, filters, now))
