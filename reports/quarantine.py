"""quarantine-risk: per job, failures against Entra's documented escrow thresholds.

Thresholds (reference/graph/sync-job.md → how-long.md §6, "roughly", "subject to change"):
failures are only evaluated from 5,000; then quarantine when more than 40 % of provisioning events
fail or more than 40,000 fail (reference failures, e.g. manager or group-member updates, excluded
from both), or when reference and non-reference failures together exceed 60,000.

The counts are of *outstanding* failures: objects whose latest outcome in the job is a failure
(what Entra holds in escrow and retries); ``failure_events`` counts every failed event.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from reports import Filters, Inputs, ReportResult
from reports.inputs import isin, latest_jobs

BASE_THRESHOLD = 5_000
PROPORTION_THRESHOLD = 0.40
NON_REFERENCE_THRESHOLD = 40_000
TOTAL_THRESHOLD = 60_000
APPROACHING = 0.8  # "approaching" = within 80 % of a threshold
# Generic retry schedule after a failure: 6 h, 12 h, 24 h, then every 24 h, for 28 days.
RETRY_OFFSETS_H = (6, 12, 24)
RETRY_GIVE_UP = pd.Timedelta(days=28)

COLUMNS = [
    "job_id",
    "service_principal_id",
    "events",
    "failure_events",
    "failures",
    "reference_failures",
    "non_reference_failures",
    "successes",
    "failure_rate",
    "over_base",
    "over_proportion",
    "over_non_reference",
    "over_total",
    "risk",
    "status_code",
    "quarantine_reason",
    "quarantine_began",
    "quarantine_series_count",
    "quarantine_next_attempt",
    "count_escrowed",
]


def reference_failures(events: pd.DataFrame, steps: pd.DataFrame) -> pd.Series:
    """Return True for failed events that failed on a reference (manager, group members)."""
    failed_ref_steps = steps.loc[
        (steps["step_type"] == "reference_resolution") & (steps["status"] == "failure"), "event_id"
    ]
    by_step = isin(events["id"], failed_ref_steps)
    by_name = events["failed_step"].astype("str").str.contains("reference", case=False)
    group_update = (events["source_type"] == "group") & (events["action"] == "update")
    failed = events["status"] == "failure"
    return (failed & (by_step | by_name.fillna(False) | group_update)).fillna(False).astype(bool)


def next_retry(began: pd.Series, now: pd.Timestamp) -> pd.Series:
    """Return the next retry after ``now`` on the documented 6/12/24 h-then-daily schedule."""
    hours = (now - began).dt.total_seconds() / 3600
    after_24 = 24 * (np.floor(hours / 24) + 1)
    offset_h = np.select(
        [hours < RETRY_OFFSETS_H[0], hours < RETRY_OFFSETS_H[1], hours < RETRY_OFFSETS_H[2]],
        list(RETRY_OFFSETS_H),
        default=after_24,
    )
    out = began + pd.to_timedelta(pd.Series(offset_h, index=began.index), unit="h")
    return out.where(out - began <= RETRY_GIVE_UP)


# Per job (null as ""): its first app, events, failed events, and of its objects' latest success
# or failure (time order, ties in read order, no time last: ``{latest}``), the failures, the
# reference ones and the successes (``last``: 1 success, 2 failure, 3 reference failure). Over
# ``{events}``: the events with their object (``_key``, reports.inputs.object_key) and reference
# flag (``_ref``) beside them (reports.model.timeline_of).
_JOBS_SQL = """
WITH ev AS (
    SELECT *, coalesce(job_id, '') AS _job FROM ({events}) WHERE {where}
), latest AS (
    SELECT _job,
        arg_max(CASE WHEN status = 'success' THEN 1 WHEN _ref THEN 3 ELSE 2 END, {latest})
            AS last
    FROM ev
    WHERE status IN ('success', 'failure')
    GROUP BY _job, _key
), per_job AS (
    SELECT _job,
        arg_min(service_principal_id, _row) FILTER (WHERE service_principal_id IS NOT NULL)
            AS service_principal_id,
        count(*) AS events,
        count(*) FILTER (WHERE status = 'failure') AS failure_events
    FROM ev GROUP BY _job
), outcomes AS (
    SELECT _job,
        count(*) FILTER (WHERE last >= 2) AS failures,
        count(*) FILTER (WHERE last = 3) AS reference_failures,
        count(*) FILTER (WHERE last = 1) AS successes
    FROM latest GROUP BY _job
)
SELECT p._job AS job_id, p.service_principal_id, p.events, p.failure_events,
    o.failures, o.reference_failures, o.successes
FROM per_job p LEFT JOIN outcomes o USING (_job)
ORDER BY p._job
"""


_COUNTS_SCHEMA = pa.schema(
    [
        ("job_id", pa.string()),
        ("service_principal_id", pa.string()),
        ("events", pa.int64()),
        ("failure_events", pa.int64()),
        ("failures", pa.int64()),
        ("reference_failures", pa.int64()),
        ("successes", pa.int64()),
    ]
)


def _kept_counts(inputs: Inputs, filters: Filters) -> pd.DataFrame | None:
    """Return _JOBS_SQL's answer from the model's groups (the same counts, kept per job and
    app), or None when they do not answer it: a filter that cuts inside a job (time, action,
    status; an app filter that keeps only some of a job's apps)."""
    from reports.model import model_of, selected_groups, whole_jobs
    from reports.sql import frame_of

    got = selected_groups(inputs, filters)
    if got is None or not whole_jobs(got, model_of(inputs).groups):
        return None
    got = got.assign(_job=got["job_id"].fillna("").astype("str"))
    got = got.sort_values("first_pos", kind="stable")
    rows = []
    for job, mine in got.groupby("_job", sort=True):
        apps = mine.loc[mine["service_principal_id"].notna(), "service_principal_id"]
        first = mine.iloc[0]
        rows.append(
            {
                "job_id": str(job),
                "service_principal_id": str(apps.iloc[0]) if len(apps) else None,
                "events": int(mine["events"].sum()),
                "failure_events": int(mine["failure_events"].sum()),
                "failures": int(first["q_failures"]),
                "reference_failures": int(first["q_reference_failures"]),
                "successes": int(first["q_successes"]),
            }
        )
    return frame_of(pa.Table.from_pylist(rows, schema=_COUNTS_SCHEMA))


def job_counts(inputs: Inputs, filters: Filters) -> pd.DataFrame:
    """Return per job ("" for none, sorted) the counts the risk is measured on (see _JOBS_SQL).

    Read from the model's groups when the filters keep whole jobs (reports.model.
    selected_groups), else counted by DuckDB over the selected events where they lie: the
    model's timeline (a time range reads only its row groups), else a store's parts or the
    frames given (reports.model.timeline_of).
    """
    from reports import sql
    from reports.model import timeline_of
    from reports.model_sql import last_key_sql

    counts = _kept_counts(inputs, filters)
    if counts is None:
        events, tables, frames = timeline_of(inputs, reference=True)
        query = _JOBS_SQL.format(
            events=events, where=sql.filter_sql(filters), latest=last_key_sql(pos="_row")
        )
        counts = sql.over(inputs, query, tables, **frames)
    per_job = counts.set_index("job_id").rename_axis(None)
    for c in ("failure_events", "failures", "reference_failures", "successes"):
        # What pandas' aligned group sizes give: a job without any is missing, not 0.
        per_job[c] = per_job[c].where(per_job[c] > 0).astype("float64")
    per_job["events"] = per_job["events"].astype("int64")
    return per_job


def risk_table(
    inputs: Inputs, filters: Filters, sync_jobs: pd.DataFrame, now: pd.Timestamp | None
) -> pd.DataFrame:
    """Return one row per job with outstanding failures, rates, threshold flags and state."""
    per_job = job_counts(inputs, filters)

    jobs = latest_jobs(sync_jobs)
    if not jobs.empty:
        jobs = jobs.set_index("job_id")
        per_job = per_job.reindex(per_job.index.union(jobs.index))
        per_job["service_principal_id"] = per_job["service_principal_id"].fillna(
            jobs["service_principal_id"]
        )
        for c in (
            "status_code",
            "quarantine_reason",
            "quarantine_began",
            "quarantine_series_count",
            "quarantine_next_attempt",
            "count_escrowed",
        ):
            per_job[c] = jobs[c]
    else:
        for c in ("status_code", "quarantine_reason"):
            per_job[c] = pd.Series(dtype="str")
        for c in ("quarantine_began", "quarantine_next_attempt"):
            per_job[c] = pd.Series(dtype="datetime64[us, UTC]")
        for c in ("quarantine_series_count", "count_escrowed"):
            per_job[c] = pd.Series(dtype="Int64")
    for c in ("events", "failure_events", "failures", "reference_failures", "successes"):
        per_job[c] = per_job[c].fillna(0).astype("Int64")

    failures = per_job["failures"]
    non_ref = failures - per_job["reference_failures"]
    per_job["non_reference_failures"] = non_ref
    denominator = non_ref + per_job["successes"]
    per_job["failure_rate"] = (non_ref / denominator.where(denominator > 0)).astype("Float64")
    rate = per_job["failure_rate"].fillna(0)
    per_job["over_base"] = failures >= BASE_THRESHOLD
    per_job["over_proportion"] = per_job["over_base"] & (rate > PROPORTION_THRESHOLD)
    per_job["over_non_reference"] = per_job["over_base"] & (non_ref > NON_REFERENCE_THRESHOLD)
    per_job["over_total"] = failures > TOTAL_THRESHOLD
    over = per_job["over_proportion"] | per_job["over_non_reference"] | per_job["over_total"]
    near = (
        ((failures >= APPROACHING * BASE_THRESHOLD) & (rate > APPROACHING * PROPORTION_THRESHOLD))
        | (non_ref > APPROACHING * NON_REFERENCE_THRESHOLD)
        | (failures > APPROACHING * TOTAL_THRESHOLD)
    )
    quarantined = per_job["status_code"].astype("str").str.lower() == "quarantine"
    per_job["risk"] = np.select(
        [quarantined.fillna(False).astype(bool), over.astype(bool), near.astype(bool)],
        ["quarantined", "over_threshold", "approaching"],
        default="low",
    )
    if now is not None:
        # When Graph gives no next attempt, the documented schedule says when it will be.
        began = per_job["quarantine_began"].astype("datetime64[us, UTC]")
        scheduled = next_retry(began, now).where(quarantined.fillna(False).astype(bool))
        per_job["quarantine_next_attempt"] = (
            per_job["quarantine_next_attempt"].astype("datetime64[us, UTC]").fillna(scheduled)
        )
    for c in ("over_base", "over_proportion", "over_non_reference", "over_total"):
        per_job[c] = per_job[c].fillna(False).astype(bool)
    out = per_job.reset_index(names="job_id")
    out["job_id"] = out["job_id"].replace("", pd.NA).astype("str")
    out = out.sort_values(["failures", "job_id"], ascending=[False, True], kind="stable")
    return out.reset_index(drop=True)[COLUMNS]


def build(
    inputs: Inputs,
    filters: Filters,
    *,
    include_noise: bool = True,
    now: pd.Timestamp | None = None,
    **params: Any,
) -> ReportResult:
    """Return per-job escrow risk and the thresholds it was measured against."""
    jobs = filters.apply_table("sync_jobs", inputs.sync_jobs)
    table = risk_table(inputs, filters, jobs, now)
    thresholds = {
        "base_failures": BASE_THRESHOLD,
        "failure_proportion": PROPORTION_THRESHOLD,
        "non_reference_failures": NON_REFERENCE_THRESHOLD,
        "total_failures": TOTAL_THRESHOLD,
    }
    return ReportResult(frame=table, data={"thresholds": thresholds})
