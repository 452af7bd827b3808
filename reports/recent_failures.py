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
# model's timeline, the frames given, or a store's parts): newest group first (ties: first
# failed first); "last" is by time (no time last), ties in read order; a group is "cleared" when
# a selected success of its object came after its last failure. ``{events}``: the events with
# their object (``_key``, reports.model.timeline_of); ``{rows}``: their every column, by
# ``_row`` (the newest groups' last failures are read from it, a few rows).
_SQL = """
WITH failed AS (
    SELECT _key, coalesce(error_code, '—') AS _code, activity_at, _row,
        {{'untimed': activity_at IS NULL, 'at': activity_at, 'row': _row}} AS _order
    FROM ({events}) WHERE {where} AND status = 'failure'
), groups AS (
    SELECT _key, count(*) AS failures, min(activity_at) AS first_failed_at,
        max(activity_at) AS last_failed_at, min(_order) AS _first,
        arg_max(_row, _order) AS _last_row
    FROM failed GROUP BY _key, _code
), cleared AS (
    SELECT _key, max(activity_at) AS last_ok FROM ({events})
    WHERE {where} AND status = 'success' AND _key IN (SELECT _key FROM groups)
    GROUP BY 1
), newest AS (
    SELECT g.*, coalesce(c.last_ok > g.last_failed_at, false) AS cleared_by_success
    FROM groups g LEFT JOIN cleared c USING (_key)
    ORDER BY last_failed_at DESC NULLS LAST, _first
    LIMIT {limit}
)
SELECT r.source_name, r.source_upn, r.error_code, n.failures, n.first_failed_at,
    n.last_failed_at, n.cleared_by_success, r.error_reason, r.service_principal_name,
    r.source_id, r.change_id AS last_change_id, r.cycle_id AS last_cycle_id
FROM newest n JOIN ({rows}) r ON r._row = n._last_row
ORDER BY n.last_failed_at DESC NULLS LAST, n._first
"""


KEPT: Final = 100  # the model keeps the newest this many groups of every event (limit <= it)


def recent_sql(
    filters: Filters, limit: int, events: str | None = None, rows: str = "SELECT * FROM events"
) -> str:
    """Return _SQL over the events ``filters`` select, ``limit`` groups: over ``events`` and
    ``rows`` (reports.model.timeline_of and timeline_rows_of), by default the ``events`` view."""
    from reports import sql
    from reports.model_sql import event_marks_sql

    return _SQL.format(
        events=events or event_marks_sql(),
        rows=rows,
        where=sql.filter_sql(filters),
        limit=int(limit),
    )


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
    from reports.model import timeline_of, timeline_rows_of

    out = _kept(inputs, filters, int(limit))
    if out is None:
        events, tables, frames = timeline_of(inputs)
        query = recent_sql(filters, int(limit), events, timeline_rows_of(inputs))
        out = sql.over(inputs, query, tables, **frames)
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
