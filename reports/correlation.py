"""correlation: each Entra provisioning event beside the wiki's SCIM requests for the same object.

One row per Entra event plus one per wiki request no event explains (DESIGN "correlation").

Matching: a request belongs to an event when it concerns the same object — the request's path id
equals the event's ``target_id``, its ``externalId`` equals the event's ``source_id``, or its
``userName`` equals the event's ``source_upn`` case-insensitively — and it was received within
±120 s of ``activity_at``. When several events qualify, the request goes to the nearest in time
(ties: path id, then externalId, then userName), so each request belongs to at most one event.
Matching is the derived model's (reports.model_sql.matches_sql, DuckDB SQL): its ``matches`` part.

Verdict, first rule that applies:
- ``rejected_by_wiki``: Entra status failure and a request answered >= 400;
- ``both_ok``: Entra status success and every request answered 2xx;
- ``not_sent_to_wiki``: Entra status failure or skipped and no request;
- ``unmatched``: any other event — success with no request (the documented case), and
  combinations the definitions do not name (success while the wiki answered an error, failure
  while every request succeeded, skipped with requests); ``verdict_note`` says which;
- ``wiki_only``: a request no event explains (its own row; ``event_id`` is null).

Columns: the DESIGN keys ``event_id``, ``activity_at``, ``source_name``, ``target_id``,
``status``, ``error_code``, ``wiki_request_ids`` (list), ``wiki_status_codes`` (list, request
order), ``verdict``; then ``verdict_note``, ``action``, ``source_id``, ``source_upn``,
``error_reason`` and the wiki's side of the story beside Entra's error code: ``wiki_status``,
``wiki_scim_type``, ``wiki_detail`` (of the first request answered >= 400, else of the last
request), ``wiki_operation``, ``wiki_user_name``, ``wiki_first_at``, ``wiki_last_at``,
``wiki_requests`` (count). For ``wiki_only`` rows ``target_id`` is the request's path id.
Noise events are hidden unless ``include_noise`` (their requests stay theirs, never wiki_only).
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from reports import Filters, Inputs, ReportResult
from reports.inputs import casefold, isin, positions, unique_text
from reports.model import WINDOW, Model, match_positions, match_requests, model_of, naive
from reports.users import match_user

__all__ = ["COLUMNS", "build", "latest_verdict", "match_requests"]

COLUMNS: Final = [
    "event_id",
    "activity_at",
    "source_name",
    "target_id",
    "status",
    "error_code",
    "wiki_request_ids",
    "wiki_status_codes",
    "verdict",
    "verdict_note",
    "action",
    "source_id",
    "source_upn",
    "error_reason",
    "wiki_status",
    "wiki_scim_type",
    "wiki_detail",
    "wiki_operation",
    "wiki_user_name",
    "wiki_first_at",
    "wiki_last_at",
    "wiki_requests",
]


def latest_verdict(correlation: pd.DataFrame | None) -> str | None:
    """Return the verdict of the newest row about an Entra event (wiki-only rows aside), or None."""
    if correlation is None or correlation.empty:
        return None
    rows = correlation.loc[correlation["event_id"].notna()]
    if rows.empty:
        return None
    value = rows.sort_values("activity_at", kind="stable")["verdict"].iloc[-1]
    return None if pd.isna(value) else str(value)


def _time_window(filters: Filters, frame: pd.DataFrame, column: str) -> npt.NDArray[np.bool_]:
    keep = np.ones(len(frame), dtype=bool)
    if filters.since is not None:
        keep &= (frame[column] >= filters.since).fillna(False).to_numpy(bool)
    if filters.until is not None:
        keep &= (frame[column] < filters.until).fillna(False).to_numpy(bool)
    return keep


def _lists(values: npt.NDArray[Any], offsets: npt.NDArray[np.int64]) -> list[list[Any]]:
    """Return ``values`` cut into lists at ``offsets`` (len = number of lists + 1)."""
    vals = values.tolist()
    bounds = offsets.tolist()
    return [vals[a:b] for a, b in pairwise(bounds)]


def _nullable(values: pd.Series) -> npt.NDArray[Any]:
    """Return an object array with None for missing values."""
    return values.astype("object").where(values.notna(), None).to_numpy()


def _for_user(
    events: pd.DataFrame, requests: pd.DataFrame, user: str, model: Model
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return ``user``'s events and the requests that decide their rows or are the user's own.

    Requests: those the model matched to the user's events, plus any carrying the user's source
    id, UPN (any case) or wiki id (the user's wiki-only rows when no event explains them).
    """
    own = match_user(events, user)
    ev = events.iloc[np.flatnonzero(own.to_numpy(bool))]
    matches = model.columns("matches", ["request_id", "event_id"])
    matched = matches.loc[isin(matches["event_id"], ev["id"]), "request_id"]
    upns = casefold(ev["source_upn"]).dropna()
    req_keep = (
        isin(requests["request_id"], matched)
        | isin(requests["external_id"], ev["source_id"])
        | isin(casefold(requests["user_name"]), upns)
        | isin(requests["resource_id"], ev["target_id"])
    )
    return ev, requests.iloc[np.flatnonzero(req_keep.to_numpy(bool))]


def _pairs(
    events: pd.DataFrame, requests: pd.DataFrame, model: Model, window: pd.Timedelta
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """Return (request position, event position) of the matches, and which requests any event
    of the store explains (the model's matches; another window computes its own)."""
    n_req = len(requests)
    explained = np.zeros(n_req, dtype=bool)
    if window != WINDOW:
        req_pos, ev_pos, _ = match_positions(events, requests, window)
        explained[req_pos] = True
        return req_pos, ev_pos, explained
    m = model.columns("matches", ["request_id", "event_id"])
    r = positions(m["request_id"], requests["request_id"])
    e = positions(m["event_id"], events["id"])
    seen = ~np.isnan(r)
    explained[r[seen].astype(np.int64)] = True
    both = seen & ~np.isnan(e)
    return r[both].astype(np.int64), e[both].astype(np.int64), explained


def build(
    inputs: Inputs,
    filters: Filters,
    *,
    include_noise: bool = False,
    now: pd.Timestamp | None = None,
    window_s: float = 120,
    user: str | None = None,
    **params: Any,
) -> ReportResult:
    """Return one row per Entra event plus one per unexplained wiki request, with a verdict.

    With ``user`` (object id, UPN or name, as reports.users resolves it), only that user's rows:
    the same rows the full report has for the user's events, plus the wiki-only requests that
    carry the user's ids, UPN or wiki id.
    """
    window = pd.Timedelta(seconds=window_s)
    # Requests are matched against every event of the selected apps, jobs and time range: an
    # action or status filter narrows the rows shown, not which events explain a request.
    scope = Filters(
        since=filters.since,
        until=filters.until,
        service_principal_ids=filters.service_principal_ids,
        job_ids=filters.job_ids,
    )
    events = scope.apply_events(inputs.events)
    # Requests just outside the time range may still belong to events inside it.
    wide = Filters(
        since=None if filters.since is None else filters.since - window,
        until=None if filters.until is None else filters.until + window,
    )
    requests = wide.apply(inputs.scim_requests, "received_at")
    if not unique_text(requests["request_id"]):
        requests = requests.drop_duplicates("request_id", keep="last")
    model = model_of(inputs)
    if user:
        events, requests = _for_user(events, requests, user, model)
    events = events.reset_index(drop=True)
    requests = requests.reset_index(drop=True)
    narrowed = bool(filters.actions or filters.statuses)
    selected = (
        events["id"].isin(filters.apply_events(events)["id"]).to_numpy(bool)
        if narrowed
        else np.ones(len(events), dtype=bool)
    )
    n_ev, n_req = len(events), len(requests)

    req_pos, ev_pos, explained = _pairs(events, requests, model, window)
    # Matched requests ordered by event, then time, then input order.
    rq_t = naive(requests["received_at"]) if n_req else np.empty(0, "M8[us]")
    order = np.lexsort((req_pos, rq_t[req_pos].astype(np.int64), ev_pos))
    req_pos, ev_pos = req_pos[order], ev_pos[order]
    status = requests["status_code"].to_numpy("float64", na_value=np.nan)[req_pos]
    is_err = status >= 400
    is_2xx = (status >= 200) & (status < 300)

    counts = np.bincount(ev_pos, minlength=n_ev).astype(np.int64)
    errs = np.bincount(ev_pos, weights=is_err, minlength=n_ev).astype(np.int64)
    oks = np.bincount(ev_pos, weights=is_2xx, minlength=n_ev).astype(np.int64)
    offsets = np.r_[0, np.cumsum(counts)].astype(np.int64)
    has = counts > 0
    starts, ends = offsets[:-1], offsets[1:]
    # Decisive request per event: the first answered >= 400, else the last one.
    idx = np.arange(len(req_pos))
    err_idx = np.where(is_err, idx, len(req_pos))
    first_err = np.full(n_ev, len(req_pos), dtype=np.int64)
    if len(req_pos):
        np.minimum.at(first_err, ev_pos, err_idx)
    decisive_sorted = np.where(first_err < ends, first_err, ends - 1)
    decisive = np.where(
        has,
        req_pos[np.clip(decisive_sorted, 0, max(len(req_pos) - 1, 0))] if len(req_pos) else 0,
        -1,
    )

    def wiki(column: str) -> npt.NDArray[Any]:
        col = _nullable(requests[column]) if n_req else np.empty(0, dtype=object)
        out = np.full(n_ev, None, dtype=object)
        out[has] = col[decisive[has]]
        return out

    first_at = np.full(n_ev, np.datetime64("NaT"), dtype="M8[us]")
    last_at = first_at.copy()
    if len(req_pos):
        first_at[has] = rq_t[req_pos[starts[has]]]
        last_at[has] = rq_t[req_pos[ends[has] - 1]]

    st = events["status"].astype("object").to_numpy()
    failure, success, skipped = st == "failure", st == "success", st == "skipped"
    conditions = [
        failure & (errs > 0),
        success & has & (oks == counts),
        (failure | skipped) & ~has,
        success & ~has,
        success & (errs > 0),
        failure & has,
        skipped & has,
    ]
    verdicts = [
        "rejected_by_wiki",
        "both_ok",
        "not_sent_to_wiki",
        "unmatched",
        "unmatched",
        "unmatched",
        "unmatched",
    ]
    notes = [
        None,
        None,
        None,
        "Entra reports success but the wiki received no request for this object",
        "Entra reports success but the wiki answered an error",
        "Entra reports failure but the wiki answered no error",
        "Entra skipped the object but the wiki received requests for it",
    ]
    which = np.select(conditions, list(range(len(conditions))), default=len(conditions))
    verdict = np.array([*verdicts, "unmatched"], dtype=object)[which]
    note = np.array([*notes, None], dtype=object)[which]
    other = which == len(conditions)
    if other.any():  # warning / unknown statuses
        note[other] = [
            f"Entra status {s or 'unknown'} with {c} wiki request(s)"
            for s, c in zip(st[other], counts[other])
        ]
    rid = requests["request_id"].astype("object").to_numpy()[req_pos]
    codes = _nullable(requests["status_code"])[req_pos] if n_req else np.empty(0, dtype=object)

    rows = pd.DataFrame(
        {
            "event_id": events["id"],
            "activity_at": events["activity_at"],
            "source_name": events["source_name"],
            "target_id": events["target_id"],
            "status": events["status"],
            "error_code": events["error_code"],
            "wiki_request_ids": pd.Series(_lists(rid, offsets), dtype="object"),
            "wiki_status_codes": pd.Series(_lists(codes, offsets), dtype="object"),
            "verdict": verdict,
            "verdict_note": note,
            "action": events["action"],
            "source_id": events["source_id"],
            "source_upn": events["source_upn"],
            "error_reason": events["error_reason"],
            "wiki_status": pd.array(wiki("status_code"), dtype="Int64"),
            "wiki_scim_type": wiki("scim_type"),
            "wiki_detail": wiki("detail"),
            "wiki_operation": wiki("operation"),
            "wiki_user_name": wiki("user_name"),
            "wiki_first_at": pd.Series(first_at).dt.tz_localize("UTC"),
            "wiki_last_at": pd.Series(last_at).dt.tz_localize("UTC"),
            "wiki_requests": counts,
        }
    )

    hidden = 0
    keep = selected
    if not include_noise and n_ev:
        noise = model.noise_of(events["id"]).to_numpy(bool)
        hidden = int((noise & selected).sum())
        keep = selected & ~noise
    rows = rows.loc[keep]

    # Requests no event explains (within the selected time range).
    # With an action or status filter, only events are asked for: no wiki-only rows.
    orphans = requests.loc[
        ~explained & _time_window(filters, requests, "received_at") & (not narrowed)
    ]
    wiki_only = pd.DataFrame(
        {
            "event_id": pd.Series(None, index=orphans.index, dtype="str"),
            "activity_at": pd.Series(pd.NaT, index=orphans.index, dtype=rows["activity_at"].dtype),
            "target_id": orphans["resource_id"],
            "wiki_request_ids": pd.Series(
                [[r] for r in orphans["request_id"].tolist()], index=orphans.index, dtype="object"
            ),
            "wiki_status_codes": pd.Series(
                [[None if pd.isna(s) else int(s)] for s in orphans["status_code"].tolist()],
                index=orphans.index,
                dtype="object",
            ),
            "verdict": "wiki_only",
            "verdict_note": "no Entra event about this object within the window",
            "wiki_status": orphans["status_code"],
            "wiki_scim_type": orphans["scim_type"],
            "wiki_detail": orphans["detail"],
            "wiki_operation": orphans["operation"],
            "wiki_user_name": orphans["user_name"],
            "wiki_first_at": orphans["received_at"],
            "wiki_last_at": orphans["received_at"],
            "wiki_requests": 1,
        },
        index=orphans.index,
    )
    parts = [f.reindex(columns=COLUMNS) for f in (rows, wiki_only) if not f.empty]
    out = pd.concat(parts, ignore_index=True) if parts else rows.reindex(columns=COLUMNS)
    when = out["activity_at"].fillna(out["wiki_first_at"])
    out = out.iloc[np.argsort(naive(when), kind="stable")]
    out = out.reset_index(drop=True)
    out["wiki_status"] = out["wiki_status"].astype("Int64")
    # Text columns built from object arrays: one dtype whatever mix of rows the data gives.
    for col in (
        "verdict_note",
        "wiki_scim_type",
        "wiki_detail",
        "wiki_operation",
        "wiki_user_name",
    ):
        out[col] = out[col].astype("str")
    out["wiki_requests"] = out["wiki_requests"].astype("int64")
    return ReportResult(frame=out, hidden_noise=hidden)
