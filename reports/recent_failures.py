"""recent-failures: the latest failures grouped by user and error code (not one row per retry).

Entra retries a failed object every cycle, so the newest 20 failed events are often the same few
users day after day. One row per (object, error code): how many times it failed, first and last
time, the latest reason, the app, and whether a later success cleared it. Newest first.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from reports import Filters, Inputs, ReportResult
from reports.inputs import object_key

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


def recent_failures(events: pd.DataFrame, limit: int = 20) -> pd.DataFrame:
    """Return one row per (object, error code) of the failed ``events``, newest first."""
    failed = events.loc[(events["status"] == "failure").fillna(False).astype(bool)]
    if failed.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in COLUMNS})
    failed = failed.assign(
        _key=object_key(failed).to_numpy(), _code=failed["error_code"].fillna("—").to_numpy()
    ).sort_values("activity_at", kind="stable")
    g = failed.groupby(["_key", "_code"], sort=False)
    last = g.tail(1).set_index(["_key", "_code"])
    out = pd.DataFrame(
        {
            "failures": g.size(),
            "first_failed_at": g["activity_at"].min(),
            "last_failed_at": g["activity_at"].max(),
        }
    )
    for column, source in (
        ("source_name", "source_name"),
        ("source_upn", "source_upn"),
        ("error_reason", "error_reason"),
        ("service_principal_name", "service_principal_name"),
        ("source_id", "source_id"),
        ("last_change_id", "change_id"),
        ("last_cycle_id", "cycle_id"),
    ):
        out[column] = last[source]
    out["error_code"] = last["error_code"]
    ok = events.loc[(events["status"] == "success").fillna(False).astype(bool)]
    last_ok = ok.assign(_key=object_key(ok).to_numpy()).groupby("_key")["activity_at"].max()
    keys = out.index.get_level_values(0)
    cleared = last_ok.reindex(keys).to_numpy() > out["last_failed_at"].to_numpy()
    out["cleared_by_success"] = pd.array(cleared, dtype="boolean")
    out["failures"] = out["failures"].astype("Int64")
    out = out.sort_values("last_failed_at", ascending=False, kind="stable").head(limit)
    return out.reset_index(drop=True)[COLUMNS]


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
    return ReportResult(frame=recent_failures(filters.apply_events(inputs.events), int(limit)))
