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

The rows are one DuckDB query (:func:`rows_sql`) over the events, the requests and the model's
``matches`` and ``noise`` parts, run over the frames the report is given. ``wiki_request_ids``
and ``wiki_status_codes`` are Arrow-backed (``pd.ArrowDtype`` lists): a million rows hold no
Python list each; a cell read from the column is list-like (``list(cell)`` gives the values).
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import pandas as pd
import pyarrow as pa

from reports import Filters, Inputs, ReportResult
from reports.inputs import unique_text
from reports.model import WINDOW, Model, match_requests, model_of
from reports.sql import connect, literal

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


# --- the rows, in DuckDB SQL ------------------------------------------------------------------
#
# One query over views named ``events``, ``scim_requests``, ``matches`` and ``noise`` (each with
# ``_row``: the row's place in the frame the report was given), run over the inputs' frames
# (DuckDB reads their Arrow buffers without copying). Lists are built by list() in request order;
# pandas sees only the result, its list columns Arrow-backed (no Python list per row).

_EVENT_VIEW: Final = (
    "id",
    "activity_at",
    "service_principal_id",
    "job_id",
    "action",
    "status",
    "error_code",
    "error_reason",
    "source_id",
    "source_upn",
    "source_name",
    "target_id",
    "target_name",
)
_REQUEST_VIEW: Final = (
    "request_id",
    "received_at",
    "status_code",
    "scim_type",
    "detail",
    "operation",
    "resource_id",
    "external_id",
    "user_name",
)
LAZY: Final = "NOT MATERIALIZED"
_NOTES: Final = {
    "success_none": "Entra reports success but the wiki received no request for this object",
    "success_error": "Entra reports success but the wiki answered an error",
    "failure_ok": "Entra reports failure but the wiki answered no error",
    "skipped_sent": "Entra skipped the object but the wiki received requests for it",
    "wiki_only": "no Entra event about this object within the window",
}


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(literal(v) for v in values)})"


def _between(column: str, since: pd.Timestamp | None, until: pd.Timestamp | None) -> str:
    conds = []
    if since is not None:
        conds.append(f"{column} >= {literal(since)}")
    if until is not None:
        conds.append(f"{column} < {literal(until)}")
    return " AND ".join(conds) or "TRUE"


def rows_sql(
    filters: Filters,
    *,
    include_noise: bool,
    user: str | None,
    window: pd.Timedelta,
    unique_requests: bool = False,
    unique_events: bool = False,
    model_files: dict[str, str] | None = None,
    noise_flag: bool = False,
) -> tuple[str, str, str]:
    """Return (the selection's CTEs, rows query, hidden-noise count query) over the views.

    Requests are matched against every event of the selected apps, jobs and time range (an
    action or status filter narrows the rows shown, never which events explain a request);
    requests are read ``window`` wider than the range (they may belong to events inside it).
    ``unique_requests``/``unique_events``: the ids are known distinct (no last copy to pick).
    ``model_files``: the model's ``matches`` and ``noise`` parts read in place from these Parquet
    files (else views of those names are expected). ``noise_flag``: each row with ``_noise``
    (its event is noise) after ``COLUMNS``; the rows of noise events are kept then.
    """
    from reports.model_sql import object_key_sql, user_hit_sql

    scope = [_between("activity_at", filters.since, filters.until)]
    if filters.service_principal_ids:
        scope.append(_in("service_principal_id", filters.service_principal_ids))
    if filters.job_ids:
        scope.append(_in("job_id", filters.job_ids))
    wide = _between(
        "received_at",
        None if filters.since is None else filters.since - window,
        None if filters.until is None else filters.until + window,
    )
    if user:
        # reports.users.match_user: an id, UPN or name equal to ``user`` (any case) finds an
        # object; every event of that object is the user's. Requests: those matched to the
        # user's events, and any carrying the user's source id, UPN (any case) or wiki id.
        wanted = literal(user.strip().lower())
        hit = user_hit_sql(wanted)
        key = object_key_sql()
        ev = f"SELECT * FROM ev0 WHERE {key} IN (SELECT {key} FROM ev0 WHERE {hit})"  # noqa: S608
        rq = """
        SELECT * FROM rq0
        WHERE request_id IN (SELECT m.request_id FROM model_matches m JOIN ev ON ev.id = m.event_id)
           OR external_id IN (SELECT source_id FROM ev)
           OR lower(user_name) IN (SELECT lower(source_upn) FROM ev)
           OR resource_id IN (SELECT target_id FROM ev)
        """
    else:
        ev, rq = "SELECT * FROM ev0", "SELECT * FROM rq0"
    narrowed = bool(filters.actions or filters.statuses)
    chosen = []
    if filters.actions:
        chosen.append(_in("action", filters.actions))
    if filters.statuses:
        chosen.append(_in("status", filters.statuses))
    where = " AND ".join(chosen)
    selected = f"e.id IN (SELECT id FROM ev WHERE {where})" if narrowed else "TRUE"  # noqa: S608
    noisy = "e.id IN (SELECT event_id FROM noise WHERE noise)"
    keep = (
        selected if include_noise or noise_flag else f"{selected} AND NOT coalesce({noisy}, false)"
    )
    flag = f", coalesce({noisy}, false) AS _noise" if noise_flag else ""
    wiki_only = "FALSE" if narrowed else _between("r.received_at", filters.since, filters.until)
    n = "coalesce(a.n, 0)"
    # The last copy of each request id; an event id's first row (when ids repeat: frames).
    rq0 = f"SELECT * FROM scim_requests WHERE {wide}"  # noqa: S608 (literals quoted)
    if not unique_requests:
        rq0 += " QUALIFY row_number() OVER (PARTITION BY request_id ORDER BY _row DESC) = 1"
    first_ev = (
        "SELECT id, _row AS ep FROM ev"
        if unique_events
        else "SELECT id, min(_row) AS ep FROM ev GROUP BY id"
    )
    st = "e.status"
    kept = ""
    if model_files:
        # Only quoted file paths are spliced in.
        match_file, noise_file = literal(model_files["matches"]), literal(model_files["noise"])
        matches = f"SELECT request_id, event_id FROM read_parquet({match_file})"  # noqa: S608
        noise = f"SELECT event_id, noise FROM read_parquet({noise_file})"  # noqa: S608
        kept = (
            f"model_matches AS {LAZY} ({matches}), matches AS {LAZY} ({matches}), "
            f"noise AS {LAZY} ({noise}),"
        )
    # The selections are read again where used (a scan of Parquet or Arrow is cheap), never
    # held whole: a million events and requests materialised cost a gigabyte. Not the
    # requests when their last copies must be picked (a window over all of them).
    lazy_rq = LAZY if unique_requests else ""
    base = f"""
    WITH {kept} ev0 AS {LAZY} (SELECT * FROM events WHERE {" AND ".join(scope)}),
    ev AS {LAZY} ({ev}),
    rq0 AS {lazy_rq} ({rq0}),
    rq AS {lazy_rq} ({rq}),
    first_ev AS {LAZY} ({first_ev})
    """  # noqa: S608 (literals quoted)
    rows = f"""{base},
    pairs AS (
        SELECT f.ep, r.received_at,
               {{'k': (epoch_us(r.received_at)::HUGEINT << 64) + r._row, 'id': r.request_id,
                 'status': r.status_code, 'pos': r._row}} AS x
        FROM matches m JOIN rq r ON r.request_id = m.request_id
        JOIN first_ev f ON f.id = m.event_id
    ),
    -- Each event's requests in order (time, then read order): one unordered list() sorted
    -- per event (sorting a few items per list beats an ordered aggregate's per-group sort).
    lists AS (
        SELECT ep, list_sort(list(x)) AS l, min(received_at) AS first_at,
               max(received_at) AS last_at
        FROM pairs GROUP BY ep
    ),
    agg0 AS (
        SELECT ep, first_at, last_at, len(l) AS n,
               list_transform(l, lambda x: x.id) AS ids,
               list_transform(l, lambda x: x.status) AS codes,
               len(list_filter(l, lambda x: x.status >= 400)) AS errs,
               len(list_filter(l, lambda x: x.status >= 200 AND x.status < 300)) AS oks,
               -- The decisive request: the first answered >= 400, else the last one.
               coalesce(list_filter(l, lambda x: x.status >= 400)[1], l[-1]).pos AS dpos
        FROM lists
    ),
    agg AS (
        SELECT a.*, {{'status': r.status_code, 'type': r.scim_type, 'detail': r.detail,
                     'op': r.operation, 'user': r.user_name}} AS d
        FROM agg0 a JOIN rq r ON r._row = a.dpos
    ),
    out AS (
        SELECT 0 AS part, e._row AS o, e.id AS event_id, e.activity_at, e.source_name,
               e.target_id, e.status, e.error_code,
               coalesce(a.ids, []::VARCHAR[]) AS wiki_request_ids,
               coalesce(a.codes, []::BIGINT[]) AS wiki_status_codes,
               CASE WHEN {st} = 'failure' AND a.errs > 0 THEN 'rejected_by_wiki'
                    WHEN {st} = 'success' AND {n} > 0 AND a.oks = a.n THEN 'both_ok'
                    WHEN {st} IN ('failure', 'skipped') AND {n} = 0 THEN 'not_sent_to_wiki'
                    ELSE 'unmatched' END AS verdict,
               CASE WHEN {st} = 'failure' AND a.errs > 0 THEN NULL
                    WHEN {st} = 'success' AND {n} > 0 AND a.oks = a.n THEN NULL
                    WHEN {st} IN ('failure', 'skipped') AND {n} = 0 THEN NULL
                    WHEN {st} = 'success' AND {n} = 0 THEN {literal(_NOTES["success_none"])}
                    WHEN {st} = 'success' AND a.errs > 0 THEN {literal(_NOTES["success_error"])}
                    WHEN {st} = 'failure' AND {n} > 0 THEN {literal(_NOTES["failure_ok"])}
                    WHEN {st} = 'skipped' AND {n} > 0 THEN {literal(_NOTES["skipped_sent"])}
                    ELSE 'Entra status ' || CASE WHEN {st} IS NULL THEN 'nan'
                                                 WHEN {st} = '' THEN 'unknown' ELSE {st} END
                         || ' with ' || {n} || ' wiki request(s)' END AS verdict_note,
               e.action, e.source_id, e.source_upn, e.error_reason,
               a.d.status AS wiki_status, a.d.type AS wiki_scim_type,
               a.d.detail AS wiki_detail, a.d.op AS wiki_operation,
               a.d.user AS wiki_user_name, a.first_at AS wiki_first_at,
               a.last_at AS wiki_last_at, {n} AS wiki_requests{flag}
        FROM ev e LEFT JOIN agg a ON a.ep = e._row
        WHERE {keep}
        UNION ALL
        SELECT 1, r._row, NULL, NULL, NULL, r.resource_id, NULL, NULL, [r.request_id],
               [r.status_code], 'wiki_only', {literal(_NOTES["wiki_only"])}, NULL, NULL, NULL,
               NULL, r.status_code, r.scim_type, r.detail, r.operation, r.user_name,
               r.received_at, r.received_at, 1{", false" if noise_flag else ""}
        FROM rq r
        WHERE {wiki_only}
          AND NOT EXISTS (SELECT 1 FROM matches m WHERE m.request_id = r.request_id)
    )
    SELECT {", ".join(COLUMNS)}{", _noise" if noise_flag else ""} FROM out
    ORDER BY coalesce(activity_at, wiki_first_at) NULLS LAST, part, o
    """  # noqa: S608 (literals quoted)
    hidden = (
        "SELECT 0"
        if include_noise
        else f"{base} SELECT count(*) FROM ev e WHERE {selected} AND {noisy}"  # noqa: S608
    )
    return base, rows, hidden


def _view(frame: pd.DataFrame, columns: tuple[str, ...]) -> pa.Table:
    """Return ``frame``'s ``columns`` (a missing one as nulls) as Arrow, with ``_row``."""
    have = [c for c in columns if c in frame.columns]
    table = pa.Table.from_pandas(frame[have], preserve_index=False)
    for c in columns:
        if c not in have:
            table = table.append_column(c, pa.nulls(len(frame), pa.string()))
    return table.append_column("_row", pa.array(np.arange(len(frame), dtype=np.int64)))


def _frame(result: pa.Table) -> pd.DataFrame:
    """Return the rows as the report's frame (list columns Arrow-backed: no list per row)."""
    lists = {pa.list_(pa.string()), pa.list_(pa.int64())}
    out = result.to_pandas(types_mapper=lambda t: pd.ArrowDtype(t) if t in lists else None)
    for col in ("event_id", "source_name", "target_id", "status", "error_code", "verdict"):
        out[col] = out[col].astype("str")
    for col in ("verdict_note", "action", "source_id", "source_upn", "error_reason"):
        out[col] = out[col].astype("str")
    for col in ("wiki_scim_type", "wiki_detail", "wiki_operation", "wiki_user_name"):
        out[col] = out[col].astype("str")
    for col in ("activity_at", "wiki_first_at", "wiki_last_at"):
        out[col] = pd.to_datetime(out[col], utc=True).astype("datetime64[us, UTC]")
    out["wiki_status"] = out["wiki_status"].astype("Int64")
    out["wiki_requests"] = out["wiki_requests"].astype("int64")
    return out


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
    model = model_of(inputs)
    if window == WINDOW and not user and filters == Filters() and inputs.scan("events") is not None:
        kept = _kept(model, include_noise)
        if kept is not None:
            return kept
    stored = _stored(inputs, model) if window == WINDOW else None
    if stored is not None:
        return _build_stored(inputs, filters, stored, include_noise=include_noise, user=user)
    events = inputs.events
    requests = inputs.scim_requests
    base, rows, hidden_sql = rows_sql(
        filters,
        include_noise=include_noise,
        user=user,
        window=window,
        unique_requests=unique_text(requests["request_id"]),
        unique_events=unique_text(events["id"]),
    )
    con = connect()  # a cursor of the process's database: its registered frames are its own
    try:
        con.register("events", _view(events, _EVENT_VIEW))
        con.register("scim_requests", _view(requests, _REQUEST_VIEW))
        model_matches = pa.Table.from_pandas(
            model.columns("matches", ["request_id", "event_id"]), preserve_index=False
        )
        con.register("model_matches", model_matches)
        if window == WINDOW:
            con.register("matches", model_matches)
        else:
            # Another window: the matches among the selected events and requests, computed here.
            ev = con.sql(f"{base} SELECT * EXCLUDE (_row) FROM ev ORDER BY _row").df()  # noqa: S608
            rq = con.sql(f"{base} SELECT * EXCLUDE (_row) FROM rq ORDER BY _row").df()  # noqa: S608
            own = match_requests(ev, rq, window)
            con.register("matches", pa.Table.from_pandas(own, preserve_index=False))
        noise = model.columns("noise", ["event_id", "noise"])
        con.register("noise", pa.Table.from_pandas(noise, preserve_index=False))
        hidden = int(con.sql(hidden_sql).fetchall()[0][0])
        result = con.sql(rows).to_arrow_table()
    finally:
        con.close()
    return ReportResult(frame=_frame(result), hidden_noise=hidden)


KEPT_ROWS: Final = "correlation_rows"
# The kept rows shown with noise hidden (their text is kept too: reports.query).
NOISE_HIDDEN: Final = "NOT _noise"


def kept_rows_sql(model_files: dict[str, str], unique_requests: bool, unique_events: bool) -> str:
    """Return the SQL of the unfiltered rows the model keeps (``KEPT_ROWS``): every row, noise
    shown, each with its ``_noise`` flag (over views ``events`` and ``scim_requests`` with
    ``_row``; the model's matches and noise read from ``model_files``)."""
    _, rows, _ = rows_sql(
        Filters(),
        include_noise=True,
        user=None,
        window=WINDOW,
        unique_requests=unique_requests,
        unique_events=unique_events,
        model_files=model_files,
        noise_flag=True,
    )
    return rows


def _kept(model: Model, include_noise: bool) -> ReportResult | None:
    """Return the unfiltered report from the rows the model keeps, None when it keeps none."""
    from reports.model import kept_rows

    rows = kept_rows(model, KEPT_ROWS, COLUMNS, "TRUE" if include_noise else NOISE_HIDDEN)
    if rows is None:
        return None
    hidden = 0
    if not include_noise:
        noisy = kept_rows(model, KEPT_ROWS, ["_noise"], "_noise")
        hidden = 0 if noisy is None else noisy.table().num_rows
    return ReportResult.of_rows(rows, lambda kept: _frame(kept.table()), hidden_noise=hidden)


def _stored(inputs: Inputs, model: Model) -> dict[str, str] | None:
    """Return the model's kept matches and noise files when events and requests are stored
    tables not read yet (then the rows are computed where they lie), else None."""
    files = {part: model.file(part) for part in ("matches", "noise")}
    if any(f is None for f in files.values()):
        return None
    if inputs.scan("events") is None or inputs.scan("scim_requests") is None:
        return None
    return {part: f for part, f in files.items() if f is not None}


def _build_stored(
    inputs: Inputs,
    filters: Filters,
    model_files: dict[str, str],
    *,
    include_noise: bool,
    user: str | None,
) -> ReportResult:
    """Return the report computed over the stored events and requests in place, with the
    model's kept parts read from their files: no input becomes a frame, only the rows do."""
    from reports.sql import over_arrow, stored_unique

    tables = ["events", "scim_requests"]
    _, rows, hidden_sql = rows_sql(
        filters,
        include_noise=include_noise,
        user=user,
        window=WINDOW,
        unique_requests=stored_unique(inputs, "scim_requests"),
        unique_events=stored_unique(inputs, "events"),
        model_files=model_files,
    )
    hidden = int(over_arrow(inputs, hidden_sql, ["events"]).column(0)[0].as_py())
    return ReportResult.of_rows(over_arrow(inputs, rows, tables), _frame, hidden_noise=hidden)
