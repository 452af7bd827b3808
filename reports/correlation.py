"""correlation: each Entra provisioning event beside the wiki's SCIM requests for the same object.

One row per Entra event plus one per wiki request no event explains (DESIGN "correlation").

Matching: a request belongs to an event when it concerns the same object — the request's path id
equals the event's ``target_id``, its ``externalId`` equals the event's ``source_id``, or its
``userName`` equals the event's ``source_upn`` case-insensitively — and it was received within
±120 s of ``activity_at``. When several events qualify, the request goes to the nearest in time
(ties: path id, then externalId, then userName), so each request belongs to at most one event.
Matching is done with ``merge_asof`` per key: it runs on millions of rows in seconds.

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
from reports.inputs import casefold, isin
from reports.noise import noise_mask
from reports.users import match_user, rows_of_events

WINDOW: Final = pd.Timedelta(seconds=120)

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

# (event column, request column, case-insensitive, priority) — lower priority wins ties.
_KEYS: Final = (
    ("target_id", "resource_id", False, 0),
    ("source_id", "external_id", False, 1),
    ("source_upn", "user_name", True, 2),
)


def _naive(times: pd.Series) -> npt.NDArray[np.datetime64]:
    """Return UTC times as a naive datetime64[us] array (fast; tz-aware to_numpy makes objects)."""
    return times.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[us]")


def _positions(
    events: pd.DataFrame, requests: pd.DataFrame, window: pd.Timedelta
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Return (request position, event position) pairs: each request's event, if any."""
    if events.empty or requests.empty:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    req_t = pd.Series(_naive(requests["received_at"]), index=requests.index)
    ev_t = pd.Series(_naive(events["activity_at"]), index=events.index)
    found_req, found_ev, found_gap, found_p = [], [], [], []
    for ev_col, req_col, fold, priority in _KEYS:
        lmask = (requests[req_col].notna() & req_t.notna()).to_numpy(bool)
        rmask = (events[ev_col].notna() & ev_t.notna()).to_numpy(bool)
        if not lmask.any() or not rmask.any():
            continue
        lkey = requests[req_col].loc[lmask]
        rkey = events[ev_col].loc[rmask]
        if fold:
            lkey, rkey = lkey.str.lower(), rkey.str.lower()
        # Integer codes for the join key: merge_asof's `by` is much faster on ints.
        codes, _ = pd.factorize(pd.concat([lkey, rkey], ignore_index=True))
        nl = int(lmask.sum())
        left = pd.DataFrame(
            {
                "_t": req_t.loc[lmask].to_numpy(),
                "_k": codes[:nl],
                "_req": np.flatnonzero(lmask),
            }
        )
        right = pd.DataFrame(
            {
                "_t": ev_t.loc[rmask].to_numpy(),
                "_k": codes[nl:],
                "_ev": np.flatnonzero(rmask),
            }
        )
        right["_ev_t"] = right["_t"]
        m = pd.merge_asof(
            left.sort_values("_t", kind="stable"),
            right.sort_values("_t", kind="stable"),
            on="_t",
            by="_k",
            direction="nearest",
            tolerance=window,
        )
        hit = m["_ev"].notna().to_numpy(bool)
        found_req.append(m["_req"].to_numpy(np.int64)[hit])
        found_ev.append(m["_ev"].to_numpy()[hit].astype(np.int64))
        gap = (m["_t"] - m["_ev_t"]).abs().to_numpy()[hit]
        found_gap.append(gap.astype("timedelta64[us]").astype(np.int64))
        found_p.append(np.full(int(hit.sum()), priority, dtype=np.int64))
    if not found_req:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    req = np.concatenate(found_req)
    ev = np.concatenate(found_ev)
    gap = np.concatenate(found_gap)
    prio = np.concatenate(found_p)
    order = np.lexsort((prio, gap, req))
    req, ev = req[order], ev[order]
    if len(req) == 0:
        return req, ev
    first = np.r_[True, req[1:] != req[:-1]]
    return req[first], ev[first]


def match_requests(
    events: pd.DataFrame, scim_requests: pd.DataFrame, window: pd.Timedelta = WINDOW
) -> pd.DataFrame:
    """Return ``request_id`` and ``event_id`` for each request an event explains.

    Each request is matched to at most one event: the nearest in time among the events about
    the same object within ``window`` (see the module docstring).
    """
    req_pos, ev_pos = _positions(events, scim_requests, window)
    return pd.DataFrame(
        {
            "request_id": scim_requests["request_id"].to_numpy()[req_pos],
            "event_id": events["id"].to_numpy()[ev_pos],
        }
    )


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
    events: pd.DataFrame, requests: pd.DataFrame, user: str
) -> tuple[pd.DataFrame, pd.DataFrame, npt.NDArray[np.bool_]]:
    """Return the events and requests that decide ``user``'s rows, and which events are theirs.

    Requests: those whose ``external_id``, ``user_name`` (any case) or ``resource_id`` is one of
    the user's source ids, UPNs or target ids. Events: the user's, plus any other event sharing
    a key with one of those requests — the full report lets such events compete for a request
    (nearest in time wins), so keeping them makes every row exactly the full report's.
    """
    own = match_user(events, user)
    ev = events.iloc[np.flatnonzero(own.to_numpy(bool))]
    upns = casefold(ev["source_upn"]).dropna()
    req_keep = (
        isin(requests["external_id"], ev["source_id"])
        | isin(casefold(requests["user_name"]), upns)
        | isin(requests["resource_id"], ev["target_id"])
    )
    req = requests.iloc[np.flatnonzero(req_keep.to_numpy(bool))]
    rivals = (
        isin(events["target_id"], req["resource_id"])
        | isin(events["source_id"], req["external_id"])
        | isin(casefold(events["source_upn"]), casefold(req["user_name"]).dropna())
    )
    keep = np.flatnonzero((own | rivals).to_numpy(bool))
    return events.iloc[keep], req, own.to_numpy(bool)[keep]


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
    requests = requests.drop_duplicates("request_id", keep="last")
    mine = np.ones(len(events), dtype=bool)
    if user:
        events, requests, mine = _for_user(events, requests, user)
    events = events.reset_index(drop=True)
    requests = requests.reset_index(drop=True)
    narrowed = bool(filters.actions or filters.statuses)
    selected = (
        mine & events["id"].isin(filters.apply_events(events)["id"]).to_numpy(bool)
        if narrowed
        else mine
    )
    n_ev, n_req = len(events), len(requests)

    req_pos, ev_pos = _positions(events, requests, window)
    # Matched requests ordered by event, then time, then input order.
    rq_t = _naive(requests["received_at"]) if n_req else np.empty(0, "M8[us]")
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
        mods = inputs.modified_properties
        if user:  # noise is per event: only the user's events' properties matter
            mods = rows_of_events(mods, events["id"])
        noise = noise_mask(events, mods).to_numpy(bool)
        hidden = int((noise & selected).sum())
        keep = selected & ~noise
    rows = rows.loc[keep]

    # Requests no event explains (within the selected time range).
    explained = np.zeros(n_req, dtype=bool)
    explained[req_pos] = True
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
    out = out.iloc[np.argsort(_naive(when), kind="stable")]
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
