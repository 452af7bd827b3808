"""Run a report in the workspace: the KQL from ``reports.kql``, only the aggregates travel."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from ingest.errors import UsageError
from ingest.log_analytics.client import LaHTTPError, LaSession, QueryResult

if TYPE_CHECKING:
    from reports import Filters, ReportResult


@dataclass
class EngineRun:
    """A pushed-down report's result and what it cost."""

    result: ReportResult
    queries: int
    rows: int


def _frame(answer: QueryResult) -> pd.DataFrame:
    return pd.DataFrame(answer.rows, columns=answer.columns)


def run_report(
    session: LaSession,
    name: str,
    filters: Filters,
    *,
    include_noise: bool,
    sync_jobs: pd.DataFrame | None = None,
) -> EngineRun:
    """Probe the table, run the report's KQL queries and assemble the report locally."""
    from reports import kql

    if name not in kql.ENGINE_REPORTS:
        raise UsageError(
            f"report {name} does not run in Log Analytics; --engine log-analytics serves "
            f"{', '.join(kql.ENGINE_REPORTS)} (use the local store for the others)"
        )
    probe = session.query(kql.PROBE)
    schema = kql.Schema(frozenset(probe.columns))
    queries = kql.plan(name, schema, filters)
    results: dict[str, pd.DataFrame] = {}
    rows = 0
    for role, text in queries.items():
        answer = session.query(text)
        if answer.partial_code is not None:
            raise LaHTTPError(
                f"Log Analytics answered a partial error for report {name} ({role}) at POST "
                f"{session.url}: {(answer.partial_message or answer.partial_code)[:300]}",
                200,
            )
        results[role] = _frame(answer)
        rows += len(answer.rows)
    result = kql.assemble(
        name,
        results,
        filters,
        include_noise=include_noise,
        sync_jobs=sync_jobs,
    )
    return EngineRun(result, len(queries) + 1, rows)
