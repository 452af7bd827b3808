"""summary: counts of everything stored (the ingest check); noise is counted, never hidden."""

from __future__ import annotations

from typing import Any

import pandas as pd

from reports import Filters, Inputs, ReportResult
from reports.inputs import object_key, slim
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


def build(
    inputs: Inputs,
    filters: Filters,
    *,
    include_noise: bool = True,
    now: pd.Timestamp | None = None,
    **params: Any,
) -> ReportResult:
    """Return the summary object of the selected events (noise always counted)."""
    events = slim(inputs.events, "cycle_id", "change_id", "error_code", "envelope_result_type")
    return ReportResult(frame=None, data=summarize(filters.apply_events(events)))
