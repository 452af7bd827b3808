"""summary: counts of everything stored (the ingest check); noise is counted, never hidden."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from reports import Filters, Inputs, ReportResult
from reports.inputs import object_key
from reports.model import cycle_pairs


def success_rate(events: pd.DataFrame) -> float | None:
    """Return the fraction (0-1) of ``events`` with status success; None without events."""
    n = len(events)
    return float((events["status"] == "success").sum() / n) if n else None


def summarize(events: pd.DataFrame) -> dict[str, Any]:
    """Return the DESIGN summary object for ``events``."""
    n = len(events)
    by_action_status: dict[str, dict[str, int]] = {}
    if n:
        counts = events.groupby(["action", "status"], observed=True).size()
        for (action, status), count in counts.items():
            by_action_status.setdefault(str(action), {})[str(status)] = int(count)
    # Microsoft's view: the Azure Monitor / Log Analytics envelope's resultType, which the
    # workbooks count by and which can disagree with the record's own status (README).
    by_result_type: dict[str, dict[str, int]] = {}
    if n and "envelope_result_type" in events.columns:
        enveloped = events.loc[events["envelope_result_type"].notna()]
        pairs = enveloped.groupby(["envelope_result_type", "status"], observed=True).size()
        for (result_type, status), count in pairs.items():
            by_result_type.setdefault(str(result_type), {})[str(status)] = int(count)
    failures = events.loc[events["status"] == "failure", "error_code"].fillna("(none)")
    by_code = failures.value_counts(sort=False).sort_index()
    first = events["activity_at"].min() if n else None
    last = events["activity_at"].max() if n else None
    return {
        "events": n,
        "distinct_ids": int(events["id"].nunique()),
        "cycles": cycle_pairs(events),
        "changes": int(events["change_id"].nunique()),
        "source_objects": int(object_key(events).nunique()) if n else 0,
        "first_at": None if first is None or pd.isna(first) else pd.Timestamp(first),
        "last_at": None if last is None or pd.isna(last) else pd.Timestamp(last),
        "success_rate": success_rate(events),
        "by_action_status": by_action_status,
        "failures_by_error_code": {str(k): int(v) for k, v in by_code.items()},
        "by_envelope_result_type": by_result_type,
    }


# summarize() in SQL, over the selected events of ``{events}`` (``{key}``: each one's object):
# one row of counts, the failures per error code, then (``{breakdowns}``) the two breakdowns
# (``part`` says which); a null group key is left out, as pandas' groupby does.
_SUMMARY_SQL = """
WITH ev AS (SELECT * FROM ({events}) WHERE {where})
SELECT 'total' AS part, NULL AS k1, NULL AS k2, count(*) AS n,
    {distinct_ids} AS distinct_ids,
    (SELECT count(*) FROM (SELECT DISTINCT job_id, cycle_id FROM ev WHERE cycle_id IS NOT NULL))
        AS cycles,
    {changes} AS changes,
    count(DISTINCT {key}) AS source_objects,
    min(activity_at) AS first_at, max(activity_at) AS last_at,
    count(*) FILTER (WHERE status = 'success') AS successes
FROM ev
UNION ALL
SELECT 'error_code', coalesce(error_code, '(none)'), NULL, count(*), NULL, NULL, NULL, NULL, NULL,
    NULL, NULL
FROM ev WHERE status = 'failure' GROUP BY coalesce(error_code, '(none)')
{breakdowns}
"""
_BREAKDOWNS_SQL = """
UNION ALL
SELECT 'action_status', action, status, count(*), NULL, NULL, NULL, NULL, NULL, NULL, NULL
FROM ev WHERE action IS NOT NULL AND status IS NOT NULL GROUP BY action, status
UNION ALL
SELECT 'result_type', envelope_result_type, status, count(*), NULL, NULL, NULL, NULL, NULL, NULL,
    NULL
FROM ev WHERE envelope_result_type IS NOT NULL AND status IS NOT NULL
GROUP BY envelope_result_type, status
"""


def summary_of(inputs: Inputs, filters: Filters, full: bool = True) -> dict[str, Any]:
    """Return :func:`summarize` of the selected events, counted by DuckDB where they lie.

    ``full=False``: without what the Overview does not show (``distinct_ids`` and ``changes``
    are None, the action/status and result type breakdowns empty), the costly distinct counts
    over a million events left out, and counted over the model's timeline where it is kept
    (reports.model.timeline_of: a time range reads only its row groups).
    """
    from reports import sql
    from reports.model import timeline_of
    from reports.query import OBJECT_KEY

    frames: dict[str, pd.DataFrame] = {}
    if full:
        events, key, tables = "SELECT * FROM events", OBJECT_KEY, ["events"]
    else:
        events, tables, frames = timeline_of(inputs)
        key = "_key"
    query = _SUMMARY_SQL.format(
        events=events,
        where=sql.filter_sql(filters),
        key=key,
        distinct_ids="count(DISTINCT id)" if full else "NULL",
        changes="count(DISTINCT change_id)" if full else "NULL",
        breakdowns=_BREAKDOWNS_SQL if full else "",
    )
    rows = sql.over(inputs, query, tables, **frames)
    total = rows.loc[rows["part"] == "total"].iloc[0]
    n = int(total["n"])

    def pairs(part: str) -> dict[str, dict[str, int]]:
        got = rows.loc[rows["part"] == part].sort_values(["k1", "k2"], kind="stable")
        out: dict[str, dict[str, int]] = {}
        for k1, k2, count in zip(got["k1"], got["k2"], got["n"], strict=True):
            out.setdefault(str(k1), {})[str(k2)] = int(count)
        return out

    codes = rows.loc[rows["part"] == "error_code"].sort_values("k1", kind="stable")
    first, last = total["first_at"], total["last_at"]
    return {
        "events": n,
        "distinct_ids": int(total["distinct_ids"]) if full else None,
        "cycles": int(total["cycles"]),
        "changes": int(total["changes"]) if full else None,
        "source_objects": int(total["source_objects"]) if n else 0,
        "first_at": None if not n or pd.isna(first) else pd.Timestamp(first),
        "last_at": None if not n or pd.isna(last) else pd.Timestamp(last),
        "success_rate": float(np.int64(total["successes"]) / n) if n else None,
        "by_action_status": pairs("action_status") if n else {},
        "failures_by_error_code": {
            str(k): int(v) for k, v in zip(codes["k1"], codes["n"], strict=True)
        },
        "by_envelope_result_type": pairs("result_type") if n else {},
    }


def build(
    inputs: Inputs,
    filters: Filters,
    *,
    include_noise: bool = True,
    now: pd.Timestamp | None = None,
    **params: Any,
) -> ReportResult:
    """Return the summary object of the selected events (noise always counted)."""
    return ReportResult(frame=None, data=summary_of(inputs, filters))
