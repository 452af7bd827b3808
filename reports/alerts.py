"""alerts: the alert history provlens stored, newest first (the dashboard's Alerts page).

One row per firing (the ``alerts`` table's columns). ``state`` selects ``firing`` or
``resolved`` (parameter); filters by time keep firings raised before ``until`` and still firing
at, or resolved after, ``since``.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from ingest.schema import TABLES
from reports import Filters, Inputs, ReportResult


def build(
    inputs: Inputs,
    filters: Filters,
    *,
    include_noise: bool = True,
    now: pd.Timestamp | None = None,
    state: str | None = None,
    **params: Any,
) -> ReportResult:
    """Return stored alerts, firing first, then newest first; counts per state in ``data``."""
    rows = inputs.alerts
    if filters.until is not None:
        rows = rows.loc[(rows["raised_at"] < filters.until).fillna(False).astype(bool)]
    if filters.since is not None:
        open_then = rows["resolved_at"].isna() | (rows["resolved_at"] >= filters.since)
        rows = rows.loc[open_then.fillna(False).astype(bool)]
    if state:
        rows = rows.loc[(rows["state"] == state).fillna(False).astype(bool)]
    order = rows.assign(_firing=(rows["state"] != "firing").astype(int))
    order = order.sort_values(["_firing", "raised_at"], ascending=[True, False], kind="stable")
    frame = order[TABLES["alerts"].names].reset_index(drop=True)
    counts = {s: int((frame["state"] == s).sum()) for s in ("firing", "resolved")}
    return ReportResult(frame=frame, data={"counts": counts})
