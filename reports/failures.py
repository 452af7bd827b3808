"""failures (status failure, grouped by error code, with an owner) and skips (by skip reason)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from reports import Filters, Inputs, ReportResult
from reports.inputs import isin, object_key, order_events, slim
from reports.model import Model, model_of
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
    "scim_status",
    "scim_detail",
]
SKIP_COLUMNS = [
    "skip_reason",
    "events",
    "objects",
    "first_seen",
    "last_seen",
    "noise",
    "excluded_by",
]


def _mode(series: pd.Series) -> Any:
    counts = series.dropna().value_counts()
    return counts.index[0] if len(counts) else pd.NA


def failure_table(
    events: pd.DataFrame, scim_requests: pd.DataFrame, model: Model | None = None
) -> pd.DataFrame:
    """Return failures grouped by error code with counts, a sample, an action and an owner.

    ``scim_type``, ``scim_status`` and ``scim_detail`` are the wiki's SCIM error for the group's
    failures (the most frequent type; the latest status and detail): its answer to the request
    the model matched to the failure, else the error Entra quotes in its reason. The owner reads
    the scimType (a ``uniqueness`` conflict is the data owner's fix).
    """
    from reports.model import Model as _Model
    from reports.model import event_scim_errors

    failed = order_events(events.loc[events["status"] == "failure"])
    if model is None:
        model = _Model(parts={"matches": _no_matches()})
    matches = model.matches
    # Only the requests matched to these failures can answer them: a store holds millions of
    # others, which event_scim_errors would de-duplicate and index for nothing.
    mine = matches["request_id"].iloc[np.flatnonzero(isin(matches["event_id"], failed["id"]))]
    answering = scim_requests.iloc[np.flatnonzero(isin(scim_requests["request_id"], mine))]
    scim = event_scim_errors(failed, answering, model)
    failed = failed.assign(
        _object=object_key(failed),
        _code=failed["error_code"].fillna(""),
        _scim=scim["scim_type"].astype("str"),
        _scim_status=scim["scim_status"].astype("Int64"),
        _scim_detail=scim["scim_detail"].astype("str"),
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
    wiki = g[["_scim_status", "_scim_detail"]].last()
    out["scim_status"] = wiki["_scim_status"].astype("Int64")
    out["scim_detail"] = wiki["_scim_detail"].astype("str")
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


def _no_matches() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "request_id": pd.Series(dtype="str"),
            "event_id": pd.Series(dtype="str"),
            "gap_s": pd.Series(dtype="float64"),
        }
    )


def skip_table(events: pd.DataFrame, model: Model | None = None) -> pd.DataFrame:
    """Return skipped events grouped by skip reason and scoping filter, marking noise.

    ``noise`` and ``excluded_by`` are the model's (reports.model): an out-of-scope skip is noise,
    a scoping-filter skip of an assigned user is not (its own row, naming the filter).
    """
    skipped = events.loc[events["status"] == "skipped"]
    if model is None:
        from reports import Inputs as _Inputs
        from reports.model import model_of as _model_of

        model = _model_of(_Inputs(events=skipped))
    skipped = skipped.assign(
        _object=object_key(skipped),
        _reason=skipped["skip_reason"].fillna(""),
        _filter=model.column_of(skipped["id"], "excluded_by").fillna("").astype("str"),
        _noise=model.noise_of(skipped["id"]),
    )
    g = skipped.groupby(["_reason", "_filter"], sort=False)
    out = g.agg(
        events=("id", "size"),
        objects=("_object", "nunique"),
        first_seen=("activity_at", "min"),
        last_seen=("activity_at", "max"),
        noise=("_noise", "all"),
    )
    return finish_skips(out)


def finish_skips(out: pd.DataFrame) -> pd.DataFrame:
    """Return skip rows from aggregated rows indexed by skip reason ("" for none).

    The index may be (reason, scoping filter) with a ``noise`` column (the local engine, which
    has the model); with the reason alone (the workspace engine, which has no steps or scope),
    ``excluded_by`` is unknown and noise is the skip reason's noise rule.
    """
    out = out.reset_index()
    out["skip_reason"] = out["_reason"].astype("str").replace("", pd.NA)
    if "_filter" in out.columns:
        out["excluded_by"] = out["_filter"].astype("str").replace("", pd.NA)
    else:
        out["excluded_by"] = pd.Series(pd.NA, index=out.index, dtype="str")
    if "noise" not in out.columns:
        out["noise"] = is_noise_skip_reason(out["skip_reason"])
    out["noise"] = out["noise"].astype(bool)
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
            "error_additional_details",
        )
    )
    # Noise is skips and successful no-op updates: a failure is never noise, nothing to hide.
    ev = all_ev.loc[all_ev["status"] == "failure"]
    model = model_of(inputs)
    answers = _answers_in_place(inputs, ev, model)
    if answers is None:
        table = failure_table(ev, inputs.scim_requests, model)
    else:
        requests, matches = answers
        table = failure_table(ev, requests, Model(parts={"matches": matches}))
    return ReportResult(frame=table, hidden_noise=0)


def _answers_in_place(
    inputs: Inputs, failed: pd.DataFrame, model: Model
) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """Return (the wiki requests matched to ``failed``, those matches) read where they lie:
    the model's kept matches of these events and only their requests, in stored order (what
    failure_table keeps of the whole tables); None when either is not kept in a store."""
    from ingest.store import to_pandas
    from reports import sql
    from reports.model import typed_part

    kept = model.file("matches")
    if kept is None or inputs.scan("scim_requests") is None:
        return None
    ids = pd.DataFrame({"id": failed["id"].dropna().astype("str").unique()})
    mine = sql.over_arrow(
        inputs,
        f"SELECT request_id, event_id, gap_s FROM read_parquet({sql.literal(kept)}) "  # noqa: S608
        "WHERE event_id IN (SELECT id FROM failed)",
        [],
        failed=ids,
    )
    matches = typed_part("matches", mine.to_pandas())
    wanted = pd.DataFrame({"request_id": matches["request_id"].unique()})
    rows = sql.over_arrow(
        inputs,
        "SELECT * FROM scim_requests WHERE request_id IN (SELECT request_id FROM wanted) "
        "ORDER BY _row",
        ["scim_requests"],
        wanted=wanted,
    )
    return to_pandas("scim_requests", rows.drop_columns(["_row"])), matches


def build_skips(
    inputs: Inputs,
    filters: Filters,
    *,
    include_noise: bool = False,
    now: pd.Timestamp | None = None,
    **params: Any,
) -> ReportResult:
    """Return skips by reason; out-of-scope reasons are hidden unless ``include_noise``."""
    model = model_of(inputs)
    table = _skips_in_place(inputs, filters, model)
    if table is None:
        skipped = slim(inputs.events, "skip_reason")
        selected = filters.apply_events(skipped.loc[skipped["status"] == "skipped"])
        table = skip_table(selected, model)
    if include_noise:
        return ReportResult(frame=table)
    hidden = int(table.loc[table["noise"], "events"].sum())
    return ReportResult(
        frame=table.loc[~table["noise"]].reset_index(drop=True), hidden_noise=hidden
    )


# skip_table() over the stored events where they lie, the model's noise part read from its file:
# groups in order of first appearance (pandas' groupby(sort=False)), a filter per event from the
# part's last row for it, noise when any of its rows says so (Model.column_of, Model.noise_of).
_SKIPS_SQL = """
WITH nz AS (
    SELECT event_id, excluded_by, noise, file_row_number AS r
    FROM read_parquet({noise}, file_row_number = true)
), last_filter AS (
    SELECT event_id, arg_max(excluded_by, r) AS excluded_by FROM nz GROUP BY event_id
), sk AS (
    SELECT e.*, {key} AS _object, coalesce(e.skip_reason, '') AS _reason,
           coalesce(f.excluded_by, '') AS _filter,
           coalesce(e.id IN (SELECT event_id FROM nz WHERE noise), false) AS _noise
    FROM events e LEFT JOIN last_filter f ON f.event_id = e.id
    WHERE e.status = 'skipped' AND {where}
)
SELECT _reason, _filter, count(*) AS events, count(DISTINCT _object) AS objects,
       min(activity_at) AS first_seen, max(activity_at) AS last_seen, bool_and(_noise) AS noise
FROM sk GROUP BY _reason, _filter ORDER BY min(_row)
"""


def _skips_in_place(inputs: Inputs, filters: Filters, model: Model) -> pd.DataFrame | None:
    """Return :func:`skip_table` of the selected skips counted where they lie, or None when the
    events or the model's noise part are not kept in a store."""
    from reports import sql
    from reports.query import OBJECT_KEY

    kept = model.file("noise")
    if kept is None or inputs.scan("events") is None:
        return None
    query = _SKIPS_SQL.format(
        noise=sql.literal(kept), key=OBJECT_KEY, where=sql.filter_sql(filters)
    )
    out = sql.over(inputs, query, ["events"]).set_index(["_reason", "_filter"])
    out["noise"] = out["noise"].astype(bool)
    return finish_skips(out)
