"""recent-failures: the latest failures grouped by user and error code (not one row per retry).

Entra retries a failed object every cycle, so the newest 20 failed events are often the same few
users day after day. One row per (object, error code): how many times it failed, first and last
time, the latest reason, the app, and whether a later success cleared it. Newest first.
"""

from __future__ import annotations

from typing import Any, Final

import pandas as pd
import pyarrow.parquet as pq

from reports import Filters, Inputs, ReportResult

COLUMNS = [
    "source_name",
    "source_upn",
    "error_code",
    "failures",
    "first_failed_at",
    "last_failed_at",
    "cleared_by_success",
    "error_reason",
    "service_principal_name",
    "source_id",
    "last_change_id",
    "last_cycle_id",
]


# Per (object, error code) of the selected failed events, counted by DuckDB where they lie (the
# frames given, or a store's parts): newest group first (ties: first failed first); "last" is by
# time (no time last), ties in read order; a group is "cleared" when a selected success of its
# object came after its last failure.
_SQL = """
WITH failed AS (
    SELECT *, {key} AS _key, coalesce(error_code, '—') AS _code,
        {{'untimed': activity_at IS NULL, 'at': activity_at, 'row': _row}} AS _order
    FROM events WHERE {where} AND status = 'failure'
), groups AS (
    SELECT _key, count(*) AS failures, min(activity_at) AS first_failed_at,
        max(activity_at) AS last_failed_at, min(_order) AS _first,
        arg_max({{'source_name': source_name, 'source_upn': source_upn,
            'error_reason': error_reason, 'service_principal_name': service_principal_name,
            'source_id': source_id, 'last_change_id': change_id, 'last_cycle_id': cycle_id,
            'error_code': error_code}}, _order) AS _last
    FROM failed GROUP BY _key, _code
), cleared AS (
    SELECT {key} AS _key, max(activity_at) AS last_ok FROM events
    WHERE {where} AND status = 'success' AND {key} IN (SELECT _key FROM groups)
    GROUP BY 1
)
SELECT _last.source_name, _last.source_upn, _last.error_code, failures, first_failed_at,
    last_failed_at, coalesce(c.last_ok > last_failed_at, false) AS cleared_by_success,
    _last.error_reason, _last.service_principal_name, _last.source_id, _last.last_change_id,
    _last.last_cycle_id
FROM groups LEFT JOIN cleared c USING (_key)
ORDER BY last_failed_at DESC NULLS LAST, _first
LIMIT {limit}
"""


KEPT: Final = 100  # the model keeps the newest this many groups of every event (limit <= it)


def recent_sql(filters: Filters, limit: int) -> str:
    """Return _SQL over the events ``filters`` select, ``limit`` groups."""
    from reports import sql
    from reports.query import OBJECT_KEY

    return _SQL.format(key=OBJECT_KEY, where=sql.filter_sql(filters), limit=int(limit))


def _kept(inputs: Inputs, filters: Filters, limit: int) -> pd.DataFrame | None:
    """Return the answer from the model's ``recent_failures`` part (the newest KEPT groups of
    every event), or None when it is not the selection's: a filter that leaves out an event,
    or more groups asked for than it keeps."""
    from reports.model import model_of, selected_groups
    from reports.sql import frame_of

    if limit > KEPT:
        return None
    model = model_of(inputs)
    groups = selected_groups(inputs, filters)
    if groups is None or len(groups) != len(model.groups):
        return None
    file = model.file("recent_failures")
    kept = frame_of(pq.read_table(file)) if file is not None else model.part("recent_failures")
    return kept.head(limit).reset_index(drop=True)


def recent_failures_of(inputs: Inputs, filters: Filters, limit: int = 20) -> pd.DataFrame:
    """Return one row per (object, error code) of the failed events ``filters`` select, newest
    first: how many times it failed, first and last time, the last failure's reason and app,
    and whether a later selected success cleared it."""
    from reports import sql

    out = _kept(inputs, filters, int(limit))
    if out is None:
        out = sql.over(inputs, recent_sql(filters, int(limit)), ["events"])
    if out.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in COLUMNS})
    out["failures"] = out["failures"].astype("Int64")
    out["cleared_by_success"] = out["cleared_by_success"].astype("boolean")
    return out[COLUMNS]


def build(
    inputs: Inputs,
    filters: Filters,
    *,
    include_noise: bool = True,
    now: pd.Timestamp | None = None,
    limit: int | str = 20,
    **params: Any,
) -> ReportResult:
    """Return the newest ``limit`` (object, error code) failure groups passing the filters."""
    return ReportResult(frame=recent_failures_of(inputs, filters, int(limit)))
