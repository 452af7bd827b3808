"""failures (status failure, grouped by error code, with an owner) and skips (by skip reason)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from reports import Filters, Inputs, ReportResult
from reports.inputs import casefold, lookup, object_key, order_events, slim
from reports.noise import is_noise_skip_reason
from reports.owners import documented_action, owners

FAILURE_COLUMNS = [
    "error_code",
    "error_category",
    "events",
    "objects",
    "first_seen",
    "last_seen",
    "sample_reason",
    "recommended_action",
    "owner",
    "scim_type",
]
SKIP_COLUMNS = ["skip_reason", "events", "objects", "first_seen", "last_seen", "noise"]

# A wiki request answers an Entra event when it is about the same object within this window.
MATCH_WINDOW = pd.Timedelta(seconds=120)


def wiki_scim_types(failures: pd.DataFrame, scim_requests: pd.DataFrame) -> pd.Series:
    """Return, per failure event id, the scimType of the wiki's error answer for it, if any.

    A request matches when it concerns the same object (path id = target id, externalId = source
    id, or userName = UPN, case-insensitively) within ±120 s; the nearest one wins.
    """
    req = scim_requests.loc[
        (scim_requests["status_code"] >= 400).fillna(False).astype(bool)
        & scim_requests["scim_type"].notna(),
        ["received_at", "resource_id", "external_id", "user_name", "scim_type"],
    ]
    if req.empty or failures.empty:
        return pd.Series(dtype="str")
    ev = failures[["id", "activity_at", "target_id", "source_id", "source_upn"]]
    ev = ev.assign(_upn=casefold(ev["source_upn"]))
    req = req.assign(_user=casefold(req["user_name"]))
    pairs = []
    for ev_col, req_col in (
        ("target_id", "resource_id"),
        ("source_id", "external_id"),
        ("_upn", "_user"),
    ):
        left = ev.loc[ev[ev_col].notna(), ["id", "activity_at", ev_col]]
        right = req.loc[req[req_col].notna(), ["received_at", req_col, "scim_type"]]
        pairs.append(
            left.merge(right, left_on=ev_col, right_on=req_col)[
                ["id", "activity_at", "received_at", "scim_type"]
            ]
        )
    both = pd.concat(pairs, ignore_index=True)
    both["_gap"] = (both["received_at"] - both["activity_at"]).abs()
    both = both.loc[both["_gap"] <= MATCH_WINDOW].sort_values(["id", "_gap"], kind="stable")
    nearest = both.drop_duplicates("id", keep="first")
    return nearest.set_index("id")["scim_type"].astype("str")


def _mode(series: pd.Series) -> Any:
    counts = series.dropna().value_counts()
    return counts.index[0] if len(counts) else pd.NA


def failure_table(events: pd.DataFrame, scim_requests: pd.DataFrame) -> pd.DataFrame:
    """Return failures grouped by error code with counts, a sample, an action and an owner."""
    failed = order_events(events.loc[events["status"] == "failure"])
    scim = wiki_scim_types(failed, scim_requests)
    failed = failed.assign(
        _object=object_key(failed),
        _code=failed["error_code"].fillna(""),
        _scim=lookup(scim, failed["id"]).astype("str"),
    )
    g = failed.groupby("_code", sort=False)
    out = g.agg(
        events=("id", "size"),
        objects=("_object", "nunique"),
        first_seen=("activity_at", "min"),
        last_seen=("activity_at", "max"),
    )
    out["error_category"] = g["error_category"].agg(_mode).astype("str")
    out["scim_type"] = g["_scim"].agg(_mode).astype("str")
    # Latest non-null reason / Entra recommendation (groupby.last skips nulls).
    latest = g[["error_reason", "recommended_action"]].last()
    out["sample_reason"] = latest["error_reason"]
    out["recommended_action"] = latest["recommended_action"]
    return finish_failures(out)


def finish_failures(out: pd.DataFrame) -> pd.DataFrame:
    """Return failure rows from one aggregated row per error code ("" for none) in the index.

    ``out`` holds ``events``, ``objects``, ``first_seen``, ``last_seen``, ``error_category``,
    ``scim_type``, ``sample_reason`` and Entra's latest ``recommended_action``; the documented
    action and the owner rules are applied here, for both engines.
    """
    out = out.copy()
    codes = pd.Series(out.index, index=out.index, dtype="str").replace("", pd.NA)
    out["recommended_action"] = out["recommended_action"].fillna(documented_action(codes))
    out["owner"] = owners(codes, out["error_category"], out["scim_type"])
    out["error_code"] = codes
    out["events"] = out["events"].astype("Int64")
    out["objects"] = out["objects"].astype("Int64")
    out = out.sort_values(["events", "error_code"], ascending=[False, True], kind="stable")
    return out.reset_index(drop=True)[FAILURE_COLUMNS]


def skip_table(events: pd.DataFrame) -> pd.DataFrame:
    """Return skipped events grouped by skip reason, with whether the reason is noise."""
    skipped = events.loc[events["status"] == "skipped"]
    skipped = skipped.assign(_object=object_key(skipped), _reason=skipped["skip_reason"].fillna(""))
    out = skipped.groupby("_reason", sort=False).agg(
        events=("id", "size"),
        objects=("_object", "nunique"),
        first_seen=("activity_at", "min"),
        last_seen=("activity_at", "max"),
    )
    return finish_skips(out)


def finish_skips(out: pd.DataFrame) -> pd.DataFrame:
    """Return skip rows from one aggregated row per skip reason ("" for none) in the index."""
    out = out.copy()
    reasons = pd.Series(out.index, index=out.index, dtype="str").replace("", pd.NA)
    out["skip_reason"] = reasons
    out["noise"] = is_noise_skip_reason(reasons).astype(bool)
    out["events"] = out["events"].astype("Int64")
    out["objects"] = out["objects"].astype("Int64")
    out = out.sort_values(["events", "skip_reason"], ascending=[False, True], kind="stable")
    return out.reset_index(drop=True)[SKIP_COLUMNS]


def build(
    inputs: Inputs,
    filters: Filters,
    *,
    include_noise: bool = False,
    now: pd.Timestamp | None = None,
    **params: Any,
) -> ReportResult:
    """Return failures by error code (noise hidden unless asked; failures are rarely noise)."""
    all_ev = filters.apply_events(
        slim(
            inputs.events,
            "error_code",
            "error_category",
            "error_reason",
            "recommended_action",
            "skip_reason",
        )
    )
    # Noise is skips and successful no-op updates: a failure is never noise, nothing to hide.
    ev = all_ev.loc[all_ev["status"] == "failure"]
    table = failure_table(ev, filters.apply_table("scim_requests", inputs.scim_requests))
    return ReportResult(frame=table, hidden_noise=0)


def build_skips(
    inputs: Inputs,
    filters: Filters,
    *,
    include_noise: bool = False,
    now: pd.Timestamp | None = None,
    **params: Any,
) -> ReportResult:
    """Return skips by reason; out-of-scope reasons are hidden unless ``include_noise``."""
    skipped = slim(inputs.events, "skip_reason")
    table = skip_table(filters.apply_events(skipped.loc[skipped["status"] == "skipped"]))
    if include_noise:
        return ReportResult(frame=table)
    hidden = int(table.loc[table["noise"], "events"].sum())
    return ReportResult(
        frame=table.loc[~table["noise"]].reset_index(drop=True), hidden_noise=hidden
    )
