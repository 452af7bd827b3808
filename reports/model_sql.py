"""The derived model's rules as DuckDB SQL: one coding, run over a store's parts or test frames.

Every query reads views named after the canonical tables (``events``, ``steps``,
``modified_properties``, ``scim_requests``, ``sync_jobs``, ``assignments``, ``group_members``,
``scim_resources``), each with the table's columns plus ``_pos``: the row's place in stored order
(part after part, row after row), the order "keep the last copy" and "first seen" speak of.
:func:`store_views` defines them over one manifest version's Parquet parts, :func:`frame_views`
over in-memory frames (tests, filtered selections), so a rule is the same text for both.

Why SQL in DuckDB rather than pandas: the rules are joins, windows and grouped aggregates over
whole tables (a million events, a million and a half requests). DuckDB runs them column-wise on
both cores, streams Parquet in and out, and spills to disk under a memory limit instead of
holding every column of every table as Python objects; the pandas coding needed the whole
tables in memory at once (5.4 GB at 1M events) and could not reach 10M.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from reports.noise import OUT_OF_SCOPE_SKIP_REASONS

WINDOW_US: Final = 120_000_000  # DESIGN "correlation": ±120 s between a request and its event

NOISE_OUT_OF_SCOPE: Final = "out_of_scope_skip"
NOISE_NOOP_DISABLED: Final = "noop_account_disabled"

# Entra's step texts (RE2: DuckDB's and Arrow's regex engine), matched case-insensitively.
SCOPING_NAME: Final = r"scoping filter '([^']*)'"
SCOPING_FAILED: Final = (
    r"(?:not in scope of the scoping filter|\"?scoping filter evaluation passed\"?\s*:\s*\"?false)"
)
NOT_ASSIGNED: Final = r"\"(?:assigned to the application|isassigned)\"\s*:\s*\"?false"
CLAUSE_NAME: Final = r"\{\s*\\?\"([^\".]+)\."  # case-sensitive: the clause's attribute prefix

# The columns each view needs (only these are read from the parts).
VIEW_COLUMNS: Final[dict[str, tuple[str, ...]]] = {
    "events": (
        "id",
        "activity_at",
        "job_id",
        "cycle_id",
        "change_id",
        "service_principal_id",
        "action",
        "status",
        "error_code",
        "skip_reason",
        "source_id",
        "source_upn",
        "source_name",
        "source_type",
        "target_id",
        "failed_step",
        "service_principal_name",
        "origin",
    ),
    "steps": ("event_id", "description", "details", "step_type", "status"),
    "modified_properties": ("event_id", "name", "old_value", "new_value"),
    "scim_requests": (
        "request_id",
        "received_at",
        "resource_id",
        "external_id",
        "user_name",
    ),
    "assignments": (
        "principal_id",
        "principal_type",
        "principal_name",
        "app_role_id",
        "default_access",
        "service_principal_id",
    ),
    "group_members": (
        "group_id",
        "member_id",
        "member_type",
        "member_upn",
        "member_name",
        "direct",
    ),
    "scim_resources": (
        "captured_at",
        "resource_type",
        "id",
        "external_id",
        "user_name",
        "display_name",
        "active",
    ),
}


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# --- views ---------------------------------------------------------------------------------

POS_SHIFT: Final = 40  # _pos = part number << 40 | row number within the part


def store_views(
    con: duckdb.DuckDBPyConnection,
    files: Mapping[str, Sequence[str]],
    tables: Sequence[str],
    copied: Sequence[str] = (),
    *,
    full: bool = False,
) -> None:
    """Define a view per table over its Parquet ``files`` (in stored order), ``_pos`` added.

    ``copied`` tables are read from the parts once into tables of ``con``'s database instead
    (those the rules scan many times). ``full``: every column of the table, in views named
    ``full_<table>`` (what the one-user copies hold), instead of the rules' columns.
    """
    from ingest.schema import TABLES

    for table in tables:
        every = tuple(c.name for c in TABLES[table].columns)
        cols = every if full else (VIEW_COLUMNS.get(table) or every)
        paths = list(files.get(table, ()))
        name = _ident(f"full_{table}" if full else table)
        if not paths:
            empty = ", ".join(f"NULL::{_sql_type(table, c)} AS {_ident(c)}" for c in cols)
            con.execute(
                f"CREATE OR REPLACE TEMP VIEW {name} AS "
                f"SELECT {empty}, NULL::BIGINT AS _pos WHERE false"
            )
            continue
        listing = ", ".join(_lit(p) for p in paths)
        scan = (
            f"read_parquet([{listing}], filename = true, file_row_number = true, "
            "union_by_name = true)"
        )
        have = set(con.sql(f"SELECT * FROM {scan} LIMIT 0").columns)  # noqa: S608
        # A column parts written before it existed lack is read as null.
        select = ", ".join(
            f"p.{_ident(c)}" if c in have else f"NULL::{_sql_type(table, c)} AS {_ident(c)}"
            for c in cols
        )
        numbers = ", ".join(f"({_lit(p)}, {i})" for i, p in enumerate(paths))
        kind = "TABLE" if table in copied else "TEMP VIEW"
        con.execute(
            f"CREATE OR REPLACE {kind} {name} AS "  # noqa: S608 (quoted paths, identifiers)
            f"SELECT {select}, (f.n::BIGINT << {POS_SHIFT}) + p.file_row_number AS _pos "
            f"FROM {scan} p JOIN (VALUES {numbers}) f(path, n) ON p.filename = f.path"
        )


def _sql_type(table: str, column: str) -> str:
    from ingest.schema import TABLES

    kind = {c.name: c.kind for c in TABLES[table].columns}[column]
    return {"time": "TIMESTAMPTZ", "int": "BIGINT", "float": "DOUBLE", "bool": "BOOLEAN"}.get(
        kind, "VARCHAR"
    )


def frame_views(con: duckdb.DuckDBPyConnection, frames: Mapping[str, pd.DataFrame]) -> None:
    """Define a view per table over in-memory ``frames`` (row order is stored order)."""
    for table, frame in frames.items():
        cols = list(VIEW_COLUMNS.get(table) or frame.columns)
        present = [c for c in cols if c in frame.columns]
        arrow = pa.Table.from_pandas(frame[present], preserve_index=False)
        arrow = arrow.append_column("_pos", pa.array(np.arange(len(frame), dtype=np.int64)))
        con.register(f"_frame_{table}", arrow)
        select = ", ".join(
            _ident(c) if c in present else f"NULL::{_sql_type(table, c)} AS {_ident(c)}"
            for c in cols
        )
        con.execute(
            f"CREATE OR REPLACE TEMP VIEW {_ident(table)} AS "  # noqa: S608 (identifiers only)
            f"SELECT {select}, _pos FROM {_ident('_frame_' + table)}"
        )


# --- shared expressions ----------------------------------------------------------------------


def object_key_sql(alias: str = "") -> str:
    """The object an event is about: source id, else ``upn:``UPN, ``name:``name, ``target:``id."""
    a = f"{alias}." if alias else ""
    return (
        f"coalesce({a}source_id, 'upn:' || {a}source_upn, 'name:' || {a}source_name, "
        f"'target:' || {a}target_id)"
    )


# The columns an event names its object by, for "which events are this user's" (reports.users.
# match_user: an id, UPN or name equal to what was asked, any case).
USER_COLUMNS: Final = ("source_id", "target_id", "source_upn", "source_name", "target_name")


def user_hit_sql(wanted: str) -> str:
    """SQL: the event names the user ``wanted`` (an SQL expression of the lower-cased, stripped
    text asked, e.g. ``?`` or a literal); every event of a hit's object is the user's."""
    return " OR ".join(f"coalesce(lower({c}) = {wanted}, false)" for c in USER_COLUMNS)


def last_key_sql(alias: str = "", pos: str = "_pos") -> str:
    """Sort key of "the latest event": by time (no time sorts last), then stored order (column
    ``pos``, under 2**63); one HUGEINT (null flag, time, position), so "the latest" is a plain
    max."""
    a = f"{alias}." if alias else ""
    return (
        f"((({a}activity_at IS NULL)::HUGEINT << 125) "
        f"+ ((coalesce(epoch_us({a}activity_at), 0) + {1 << 61})::HUGEINT << 63) + {a}{pos})"
    )


def noise_skip_reason_sql(column: str) -> str:
    """True where a skip reason says the object is out of scope (DESIGN "noise")."""
    folded = f"regexp_replace(lower({column}), '[\\s_\\-]', '', 'g')"
    known = ", ".join(_lit(r) for r in sorted(OUT_OF_SCOPE_SKIP_REASONS))
    return (
        f"coalesce({folded} IN ({known}) OR contains({folded}, 'entitled') "
        f"OR contains({folded}, 'outofscope'), false)"
    )


def _extract(text: str, pattern: str, flags: str) -> str:
    opt = f", {_lit(flags)}" if flags else ""
    return (
        f"CASE WHEN regexp_matches({text}, {_lit(pattern)}{opt}) "
        f"THEN regexp_extract({text}, {_lit(pattern)}, 1{opt}) END"
    )


# --- the parts -------------------------------------------------------------------------------


def scoping_filters_sql() -> str:
    """Per skipped event of an *assigned* object a scoping filter left out: ``event_id``, ``name``.

    Entra's steps say it: ``Scoping filter evaluation passed: False`` with ``Assigned to the
    application: True``, and "not in scope of the scoping filter 'X'". The name is the quoted
    filter, else the clause's attribute prefix, else ``(unnamed)``. The rules read an event's
    step texts joined in stored order; an event one of whose steps already says "not assigned"
    is left out before joining (what one step says, the joined text says too).
    """
    texts = (
        "SELECT event_id, _pos, coalesce(description, '') || ' ' || coalesce(details, '') AS s "
        "FROM steps WHERE event_id IN (SELECT id FROM events WHERE status = 'skipped')"
    )
    return f"""
    SELECT event_id, coalesce({_extract("txt", SCOPING_NAME, "i")},
                              {_extract("txt", CLAUSE_NAME, "")}, '(unnamed)') AS name
    FROM (
        SELECT event_id, string_agg(s, ' ' ORDER BY _pos) AS txt
        FROM ({texts})
        WHERE event_id NOT IN (
            SELECT event_id FROM ({texts}) WHERE regexp_matches(s, {_lit(NOT_ASSIGNED)}, 'i')
        )
        GROUP BY event_id
    )
    WHERE CASE WHEN regexp_matches(txt, {_lit(NOT_ASSIGNED)}, 'i') THEN false
               ELSE regexp_matches(txt, {_lit(SCOPING_FAILED)}, 'i') END
    """  # noqa: S608 (constant patterns)


def noop_disabled_sql() -> str:
    """Ids of events whose only modified property is a no-op ``accountDisabled`` (old value
    null, or equal to the new one ignoring case)."""
    return """
    SELECT event_id FROM modified_properties
    WHERE event_id IN (
        SELECT event_id FROM modified_properties WHERE lower(name) = 'accountdisabled'
    )
    GROUP BY event_id
    HAVING count(*) = 1
       AND lower(any_value(name)) = 'accountdisabled'
       AND (any_value(old_value) IS NULL
            OR coalesce(lower(any_value(old_value)) = lower(any_value(new_value)), false))
    """


def noise_sql() -> str:
    """The noise part: ``event_id``, ``noise``, ``noise_reason``, ``excluded_by``.

    One row per event that is noise (an out-of-scope skip, or a no-op ``accountDisabled``
    update that did not fail) or that a scoping filter excluded (an answer, never noise).
    """
    return f"""
    WITH filt AS ({scoping_filters_sql()}),
    noop AS ({noop_disabled_sql()}),
    flagged AS (
        SELECT e.id AS event_id, f.name AS excluded_by,
               coalesce(e.status = 'skipped', false)
                 AND {noise_skip_reason_sql("e.skip_reason")} AND f.name IS NULL AS oos,
               coalesce(e.action = 'update', false) AND coalesce(e.status <> 'failure', true)
                 AND e.id IN (SELECT event_id FROM noop) AS nop,
               e._pos
        FROM events e LEFT JOIN filt f ON e.id = f.event_id
    )
    SELECT event_id, oos OR nop AS noise,
           CASE WHEN oos THEN {_lit(NOISE_OUT_OF_SCOPE)}
                WHEN nop THEN {_lit(NOISE_NOOP_DISABLED)} END AS noise_reason,
           excluded_by
    FROM flagged
    WHERE oos OR nop OR excluded_by IS NOT NULL
    ORDER BY _pos
    """  # noqa: S608 (constants)


# (event column, request column, case-insensitive) in tie order: path id, externalId, userName.
MATCH_KEYS: Final = (
    ("target_id", "resource_id", False),
    ("source_id", "external_id", False),
    ("source_upn", "user_name", True),
)


def matches_sql(window_us: int = WINDOW_US) -> str:
    """The matches part: ``request_id``, ``event_id``, ``gap_s``.

    DESIGN "correlation": a request (the last copy of each id, with a receive time) belongs to an
    event about the same object (path id = target id, externalId = source id, or userName = UPN
    case-insensitively) within ±120 s of ``activity_at``; among several, the nearest in time;
    at equal distance the earlier event (then the key order: path id, externalId, userName);
    among events at the same instant the last stored before the request, the first after it.
    Two ASOF joins per key (the nearest event at or before, and at or after the request).
    """
    left, right = [], []
    for prio, (ev_col, req_col, fold) in enumerate(MATCH_KEYS):
        rk = f"lower({req_col})" if fold else req_col
        ek = f"lower({ev_col})" if fold else ev_col
        left.append(
            f"SELECT {prio} AS p, {rk} AS k, epoch_us(received_at) AS t, "  # noqa: S608
            f"_pos AS rp, request_id FROM req WHERE {req_col} IS NOT NULL"
        )
        right.append(
            f"SELECT {prio} AS p, {ek} AS k, epoch_us(activity_at) AS t, _pos, id "  # noqa: S608
            f"FROM events WHERE {ev_col} IS NOT NULL AND activity_at IS NOT NULL"
        )
    w = int(window_us)
    # Candidates: same key, within the window (time cut in window-wide buckets, so each request
    # meets only the events of its own and the two neighbouring buckets). The winner's rank as
    # one number: gap, then key order, then at-or-before over after, then the last stored event
    # of an instant before the request, the first stored after it.
    rank = (
        "(c.gap::HUGEINT << 80) + (c.p::HUGEINT << 78) + (c.dir::HUGEINT << 77) "
        f"+ CASE WHEN c.dir = 0 THEN {(1 << 63) - 1} - c.epos ELSE c.epos END"
    )
    return f"""
    WITH req AS (
        SELECT * FROM (
            SELECT request_id, received_at, resource_id, external_id, user_name, _pos,
                   row_number() OVER (PARTITION BY request_id ORDER BY _pos DESC) AS _copy
            FROM scim_requests
        ) WHERE _copy = 1 AND received_at IS NOT NULL
    ),
    lk AS ({" UNION ALL ".join(left)}),
    rk AS (SELECT *, t // {w} AS b FROM ({" UNION ALL ".join(right)})),
    c AS (
        SELECT l.rp, l.request_id, e.id AS event_id, l.p, e._pos AS epos,
               abs(l.t - e.t) AS gap, CASE WHEN e.t <= l.t THEN 0 ELSE 1 END AS dir
        FROM lk l CROSS JOIN (VALUES (-1), (0), (1)) o(n)
        JOIN rk e ON e.p = l.p AND e.k = l.k AND e.b = l.t // {w} + o.n
        WHERE abs(l.t - e.t) <= {w}
    )
    SELECT any_value(c.request_id) AS request_id, arg_min(c.event_id, {rank}) AS event_id,
           min(c.gap) / 1e6 AS gap_s
    FROM c
    GROUP BY c.rp
    ORDER BY c.rp
    """  # noqa: S608 (constants)


def cycles_sql(statuses: Sequence[str]) -> str:
    """Per (job, cycle) of events with a cycle id: the aggregates reports.cycles finishes."""
    counts = ", ".join(
        f"count(*) FILTER (WHERE status = {_lit(s)}) AS {_ident(s)}" for s in statuses
    )
    return f"""
    SELECT coalesce(job_id, '') AS job_id, cycle_id,
           arg_min(service_principal_id, _pos) FILTER (WHERE service_principal_id IS NOT NULL)
             AS service_principal_id,
           min(activity_at) AS started_at, max(activity_at) AS ended_at,
           count(*) AS events, count(DISTINCT change_id) AS changes,
           count(DISTINCT {object_key_sql()}) AS objects, {counts}
    FROM events
    WHERE cycle_id IS NOT NULL
    GROUP BY ALL
    ORDER BY min(_pos)
    """  # noqa: S608 (constants)


SCOPE_VIAS: Final = ("direct", "group", "nested_group", "default_access", "none")  # best first
DEFAULT_ACCESS_ROLE: Final = "00000000-0000-0000-0000-000000000000"
VERDICTS: Final = (
    "provisioned",
    "failed",
    "skipped",
    "pending",
    "missing_in_wiki",
    "should_be_disabled",
    "orphaned",
    "excluded",
)


def _names(values: Sequence[str], index: str) -> str:
    """``list_value(...)[index + 1]``: the name at a 0-based rank."""
    return f"[{', '.join(_lit(v) for v in values)}][{index} + 1]"


def default_access_sql() -> str:
    """True for a Default Access assignment (the flag, else the all-zero role id)."""
    return f"coalesce(default_access, coalesce(app_role_id = {_lit(DEFAULT_ACCESS_ROLE)}, false))"


def in_scope_groups_sql() -> str:
    """The groups assigned with a role other than Default Access (``principal_id``, once)."""
    return (
        "SELECT DISTINCT principal_id FROM assignments "  # noqa: S608 (constants)
        f"WHERE principal_type = 'group' AND NOT {default_access_sql()}"
    )


def scope_sql() -> str:
    """Per user principal named by scope data: ``principal_id``, ``rank`` (of SCOPE_VIAS).

    DESIGN "in scope": assigned directly with a role other than Default Access (the flag, else
    the all-zero role id), or a *direct* member of a group so assigned. A membership counts as
    nested when its group's rows are all marked direct although the group contains a group whose
    own members are known and the member is one of them (ingest could not derive it). Unknown
    principal types count as users; a principal's best way in wins.
    """
    return f"""
    WITH asg AS (
        SELECT principal_id, principal_type, _pos,
               {default_access_sql()} AS dflt
        FROM assignments
    ),
    gm AS (
        SELECT group_id, member_id, member_type, coalesce(direct, true) AS direct
        FROM group_members
    ),
    nested AS (
        SELECT DISTINCT group_id, member_id AS inner_id FROM gm
        WHERE member_type = 'group'
          AND member_id IN (SELECT group_id FROM gm WHERE group_id IS NOT NULL)
          AND group_id IN (SELECT group_id FROM gm GROUP BY group_id HAVING bool_and(direct))
    ),
    via AS (
        SELECT DISTINCT n.group_id, i.member_id FROM nested n JOIN gm i ON i.group_id = n.inner_id
    ),
    grp_ok AS (SELECT DISTINCT principal_id FROM asg WHERE principal_type = 'group' AND NOT dflt),
    grp_df AS (SELECT DISTINCT principal_id FROM asg WHERE principal_type = 'group' AND dflt),
    ways AS (
        SELECT principal_id, CASE WHEN dflt THEN 3 ELSE 0 END AS rank
        FROM asg WHERE principal_type IS NULL OR principal_type = 'user'
        UNION ALL
        SELECT g.member_id,
               CASE WHEN ok.principal_id IS NOT NULL AND g.direct AND v.group_id IS NULL THEN 1
                    WHEN ok.principal_id IS NOT NULL THEN 2
                    WHEN df.principal_id IS NOT NULL THEN 3
                    ELSE 4 END
        FROM gm g
        LEFT JOIN via v ON v.group_id = g.group_id AND v.member_id = g.member_id
        LEFT JOIN grp_ok ok ON ok.principal_id = g.group_id
        LEFT JOIN grp_df df ON df.principal_id = g.group_id
        WHERE g.member_type IS NULL OR g.member_type = 'user'
    )
    SELECT principal_id, min(rank) AS rank FROM ways
    WHERE principal_id IS NOT NULL
    GROUP BY principal_id
    """  # noqa: S608 (constants)


def objects_sql(scope_reasons: Mapping[str, str]) -> tuple[list[tuple[str, str]], str]:
    """The objects part: coverage's user rows, then the other objects events name.

    Users (DESIGN "coverage"): every Entra id known from scope data or events, with its UPN and
    name (first known: assignment, membership, latest event), matched to the wiki's latest user
    snapshot by externalId, else userName = UPN case-insensitively; wiki users matching nobody
    are rows of their own. Scope and why, wiki state, last status (latest user event), the error
    of the last failure, one verdict; then the other objects (groups, ...) by their latest event.
    Reads the ``noise`` view (the part, for the scoping filter of each object's latest event).
    Returns the steps (table name, query), each creating a table the next ones read, and the
    final query.
    """
    reasons = " ".join(f"WHEN {_lit(k)} THEN {_lit(v)}" for k, v in scope_reasons.items())
    verdict = _names(VERDICTS, "vr")
    cte = {
        "sc": scope_sql(),
        "grp_ok": in_scope_groups_sql(),
        "ue": f"""
        SELECT source_id, source_upn, source_name, status, error_code, activity_at,
               {last_key_sql()} AS o
        FROM events
        WHERE (source_type IS NULL OR source_type = 'user') AND source_id IS NOT NULL
        """,  # noqa: S608 (constants)
        "lu": """
        SELECT source_id,
               arg_max_null(status, o) AS last_status, arg_max_null(activity_at, o) AS last_at,
               arg_max_null(error_code, o) FILTER (WHERE status = 'failure') AS last_error_code,
               arg_max(source_upn, o) AS upn, arg_max(source_name, o) AS name, max(o) AS lo
        FROM ue GROUP BY source_id
        """,
        "au": """
        SELECT principal_id, arg_min(principal_name, _pos) AS name, min(_pos) AS p
        FROM assignments
        WHERE (principal_type IS NULL OR principal_type = 'user') AND principal_id IS NOT NULL
        GROUP BY principal_id
        """,
        "mu": """
        SELECT member_id AS principal_id, arg_min(member_upn, _pos) AS upn,
               arg_min(member_name, _pos) AS name, min(_pos) AS p
        FROM group_members
        WHERE (member_type IS NULL OR member_type = 'user') AND member_id IS NOT NULL
        GROUP BY member_id
        """,
        "entra": """
        SELECT coalesce(a.principal_id, m.principal_id, e.source_id) AS principal_id,
               coalesce(m.upn, e.upn) AS upn, coalesce(a.name, m.name, e.name) AS name,
               CASE WHEN a.p IS NOT NULL THEN {'s': 0, 'k': a.p::HUGEINT}
                    WHEN m.p IS NOT NULL THEN {'s': 1, 'k': m.p::HUGEINT}
                    ELSE {'s': 2, 'k': -e.lo} END AS seen
        FROM au a
        FULL JOIN mu m ON m.principal_id = a.principal_id
        FULL JOIN lu e ON e.source_id = coalesce(a.principal_id, m.principal_id)
        """,
        "by_upn": """
        SELECT lower(upn) AS lk, principal_id FROM entra
        WHERE upn IS NOT NULL
        QUALIFY row_number() OVER (PARTITION BY lower(upn) ORDER BY seen.s, seen.k) = 1
        """,
        "wiki": """
        SELECT w.*, coalesce(w.active, true) AS act,
               CASE WHEN e.principal_id IS NOT NULL THEN 0
                    WHEN b.principal_id IS NOT NULL THEN 1 ELSE 2 END AS how,
               coalesce(e.principal_id, b.principal_id, w.external_id) AS pid
        FROM scim_resources w
        LEFT JOIN entra e ON e.principal_id = w.external_id
        LEFT JOIN by_upn b ON b.lk = lower(w.user_name)
        WHERE w.resource_type = 'User'
          AND w.captured_at = (
              SELECT max(captured_at) FROM scim_resources WHERE resource_type = 'User'
          )
        """,
        "matched": """
        SELECT pid, id, user_name, display_name, act FROM wiki
        WHERE pid IS NOT NULL
        QUALIFY row_number() OVER (PARTITION BY pid ORDER BY how, NOT act, _pos) = 1
        """,
        "people": """
        SELECT coalesce(en.principal_id, m.pid) AS principal_id, m.id AS wiki_id,
               coalesce(en.upn, m.user_name) AS upn, coalesce(en.name, m.display_name) AS name,
               m.act AS active, en.principal_id IS NOT NULL AS known, 0 AS orphan, 0 AS p
        FROM entra en FULL JOIN matched m ON m.pid = en.principal_id
        UNION ALL
        SELECT NULL, id, user_name, display_name, act, false, 1, _pos FROM wiki WHERE pid IS NULL
        """,
        "cov": """
        SELECT pe.*, coalesce(sc.rank, 4) AS sr, coalesce(sc.rank, 4) IN (0, 1) AS in_scope,
               CASE WHEN pe.active IS NULL THEN 'absent' WHEN pe.active THEN 'active'
                    ELSE 'inactive' END AS wiki_state,
               lu.last_status, lu.last_at, lu.last_error_code
        FROM people pe LEFT JOIN sc ON sc.principal_id = pe.principal_id
        LEFT JOIN lu ON lu.source_id = pe.principal_id
        """,
        "users": """
        SELECT *,
               CASE WHEN in_scope AND wiki_state = 'active' THEN 0
                    WHEN in_scope AND last_status = 'failure' THEN 1
                    WHEN in_scope AND last_status = 'skipped' THEN 2
                    WHEN in_scope AND last_status IS NULL THEN 3
                    WHEN in_scope AND last_status = 'success' AND wiki_state <> 'active' THEN 4
                    WHEN NOT in_scope AND wiki_state = 'active' AND last_status IS NOT NULL THEN 5
                    WHEN wiki_state <> 'absent' AND NOT known THEN 6
                    ELSE 7 END AS vr,
               coalesce(principal_id, 'wiki:' || wiki_id) AS object_key
        FROM cov
        """,
        "ek": f"""
        SELECT {object_key_sql()} AS key, {last_key_sql()} AS o, id, target_id, source_type,
               source_id, source_upn, source_name, status, activity_at
        FROM events
        """,  # noqa: S608 (constants)
        "per_key": """
        SELECT key, CASE WHEN key IS NULL THEN 0 ELSE count(*) END AS n, max(o) AS lo
        FROM ek GROUP BY key
        """,
        "keyed": """
        SELECT k.key, k.n, k.lo, e.id, e.target_id, e.source_type, e.source_id, e.source_upn,
               e.source_name, e.status, e.activity_at, nz.excluded_by
        FROM per_key k JOIN ek e ON e.o = k.lo LEFT JOIN noise nz ON nz.event_id = e.id
        """,
    }
    # Materialised one after another (each a table): the build never holds every step at once.
    steps = [
        ("sc", ("sc",)),
        ("grp_ok", ("grp_ok",)),
        ("lu", ("ue", "lu")),
        ("entra", ("au", "mu", "entra")),
        ("wiki", ("by_upn", "wiki")),
        ("users", ("matched", "people", "cov", "users")),
        ("keyed", ("ek", "per_key", "keyed")),
    ]
    tables = []
    for table, names in steps:
        with_ = ", ".join(f"{n} AS ({cte[n]})" for n in names[:-1])
        tables.append((table, (f"WITH {with_} " if with_ else "") + cte[names[-1]]))
    final = f"""
    WITH objects AS (
        SELECT u.object_key, 'user' AS object_type, u.principal_id, u.upn, u.name,
               k.target_id AS target_id, u.in_scope, {_names(SCOPE_VIAS, "u.sr")} AS scope_via,
               k.excluded_by, u.wiki_id, u.wiki_state, u.last_status, u.last_at,
               u.last_error_code, {verdict.replace("vr", "u.vr")} AS verdict,
               coalesce(k.n, 0) AS events, true AS coverage,
               0 AS part, u.vr, u.upn AS s1, u.principal_id AS s2, u.orphan AS s3, u.p AS s4,
               NULL AS lo
        FROM users u LEFT JOIN keyed k ON k.key = u.object_key
        UNION ALL
        SELECT k.key, coalesce(k.source_type, 'other'), k.source_id, k.source_upn,
               k.source_name, k.target_id, g.principal_id IS NOT NULL,
               CASE WHEN g.principal_id IS NOT NULL THEN 'direct'
                    WHEN k.source_type = 'group' THEN 'none' END,
               k.excluded_by, NULL, NULL, k.status, k.activity_at, NULL, NULL, k.n, false,
               1, NULL, NULL, NULL, NULL, NULL, k.lo
        FROM keyed k
        LEFT JOIN grp_ok g ON k.source_type = 'group' AND g.principal_id = k.source_id
        WHERE k.key NOT IN (SELECT object_key FROM users WHERE object_key IS NOT NULL)
           OR k.key IS NULL
    )
    SELECT object_key, object_type, principal_id, upn, name, target_id, in_scope, scope_via,
           CASE WHEN excluded_by IS NOT NULL THEN 'excluded by scoping filter ' || excluded_by
                ELSE CASE scope_via {reasons} END END AS scope_reason,
           excluded_by, wiki_id, wiki_state, last_status, last_at, last_error_code, verdict,
           events, coverage
    FROM objects
    ORDER BY part, vr, s1 NULLS LAST, s2 NULLS LAST, s3, s4, lo
    """  # noqa: S608 (constants)
    return tables, final


# --- one user's access path ------------------------------------------------------------------

# The rows one-user answers read, found by object key without scanning every part. Copies of
# events, steps, modified properties and wiki requests in stored order, each row with its place
# (``_pos``), in small row groups; a lookup from names to object keys; and per key (clustered by
# it, so a key's rows are one or two row groups by their Parquet statistics) its events' places
# with their noise row and their steps' and modified properties' places, and the places of the
# wiki requests about it with the model's match. File name per table.
USER_COPIES: Final = {
    "events": "user_events",
    "steps": "user_steps",
    "modified_properties": "user_modified_properties",
    "scim_requests": "user_requests",
}
USER_NAMES: Final = "user_names"
USER_INDEX: Final = "user_index"
USER_REQUEST_INDEX: Final = "user_request_index"
# The objects part again, with each row's place (``_row``), and a lookup from the lower-cased
# id, UPN and name of each object to its place (a null name: one of them is not ASCII, where
# Python's casefold may fold it to a text lower() does not give).
USER_OBJECTS: Final = "user_objects"
USER_OBJECT_NAMES: Final = "user_object_names"
USER_FILES: Final = (
    USER_NAMES,
    USER_INDEX,
    USER_REQUEST_INDEX,
    *USER_COPIES.values(),
    USER_OBJECTS,
    USER_OBJECT_NAMES,
)
OBJECT_NAME_COLUMNS: Final = ("principal_id", "upn", "name")
USER_ROW_GROUP: Final = 16384


def user_keys_sql() -> str:
    """Per event (the full ``full_events`` view): ``id``, ``_pos``, ``_key`` and the columns a
    user is named by (USER_COLUMNS); events naming no object are left out."""
    names = ", ".join(USER_COLUMNS)
    return (
        f"SELECT id, _pos, {object_key_sql()} AS _key, {names} FROM full_events "  # noqa: S608
        f"WHERE {object_key_sql()} IS NOT NULL"
    )


def user_names_sql() -> str:
    """``name``, ``_key``: each lower-cased value of USER_COLUMNS and the object of its event.

    user_hit_sql's rule as a lookup (over the ``ukeys`` table of :func:`user_keys_sql`): an
    event names ``wanted`` when one of those columns, lower-cased, equals it; the objects of
    those events are ``SELECT _key WHERE name = wanted``.
    """
    arms = " UNION ALL ".join(
        f"SELECT lower({c}) AS name, _key FROM ukeys WHERE {c} IS NOT NULL"  # noqa: S608
        for c in USER_COLUMNS
    )
    return f"SELECT DISTINCT name, _key FROM ({arms}) ORDER BY name, _key"  # noqa: S608


def user_object_names_sql() -> str:
    """``name``, ``_row``: the lookup of USER_OBJECT_NAMES over ``obj`` (objects with ``_row``)."""
    arms = [
        f"SELECT lower({c}) AS name, _row FROM obj WHERE {c} IS NOT NULL"  # noqa: S608
        for c in OBJECT_NAME_COLUMNS
    ]
    odd = " OR ".join(f"strlen({c}) <> length({c})" for c in OBJECT_NAME_COLUMNS)
    arms.append(f"SELECT NULL, _row FROM obj WHERE {odd}")  # noqa: S608
    return f"SELECT DISTINCT name, _row FROM ({' UNION ALL '.join(arms)}) ORDER BY name, _row"  # noqa: S608


def user_index_sql() -> str:
    """Per event of a key: ``_key``, ``_pos``, its noise row (``_nz``: it has one; ``_noise``,
    ``_noise_reason``, ``_excluded_by``) and the first and last place of its steps
    (``_st_lo``, ``_st_hi``) and modified properties (``_mp_lo``, ``_mp_hi``), by key."""
    ranges = {
        t: f"SELECT event_id, min(_pos) AS lo, max(_pos) AS hi FROM full_{t} GROUP BY event_id"  # noqa: S608
        for t in ("steps", "modified_properties")
    }
    return f"""
    SELECT k._key, k._pos, nz.event_id IS NOT NULL AS _nz, nz.noise AS _noise,
           nz.noise_reason AS _noise_reason, nz.excluded_by AS _excluded_by,
           s.lo AS _st_lo, s.hi AS _st_hi, m.lo AS _mp_lo, m.hi AS _mp_hi
    FROM ukeys k
    LEFT JOIN noise nz ON nz.event_id = k.id
    LEFT JOIN ({ranges["steps"]}) s ON s.event_id = k.id
    LEFT JOIN ({ranges["modified_properties"]}) m ON m.event_id = k.id
    ORDER BY k._key, k._pos
    """  # noqa: S608 (constants)


def user_request_index_sql() -> str:
    """Per key, the places of the wiki requests about its objects (a path id that is a target
    id of its events, an externalId a source id, a userName a UPN, any case), with every copy of
    those request ids; ``_match_event``, ``_match_gap``: the model's match of the id. Reads
    ``req`` (the requests' ids and ``_pos``) and ``matches``."""
    arms = []
    for ev_col, req_col, fold in MATCH_KEYS:
        ek = f"lower({ev_col})" if fold else ev_col
        rk = f"lower(r.{req_col})" if fold else f"r.{req_col}"
        arms.append(
            f"SELECT i._key, r._pos, r.request_id FROM req r "  # noqa: S608
            f"JOIN (SELECT DISTINCT _key, {ek} AS v FROM ukeys WHERE {ev_col} IS NOT NULL) i "
            f"ON {rk} = i.v"
        )
    return f"""
    WITH about AS ({" UNION ".join(arms)}),
    picked AS (
        SELECT _key, _pos FROM about
        UNION
        SELECT a._key, r._pos
        FROM (SELECT DISTINCT _key, request_id FROM about WHERE request_id IS NOT NULL) a
        JOIN req r ON r.request_id = a.request_id
    )
    SELECT p._key, p._pos, m.event_id AS _match_event, m.gap_s AS _match_gap
    FROM picked p JOIN req r ON r._pos = p._pos
    LEFT JOIN matches m ON m.request_id = r.request_id
    ORDER BY p._key, p._pos
    """  # noqa: S608 (constants)


def facts_sql(counts: Mapping[str, str]) -> str:
    """The facts part: one row of what unfiltered answers read of the whole store.

    ``latest_at`` (the latest event time), ``objects`` (distinct object keys of events),
    ``assignments`` (rows), ``users_in_scope`` (scope_sql ranks direct and group) and
    ``groups_in_scope`` (groups assigned with a role other than Default Access): the estimate's;
    then each of ``counts`` (name: a query of one number, e.g. reports.users.users_counts_sql).
    """
    more = "".join(f", ({sql}) AS {_ident(name)}" for name, sql in counts.items())
    return f"""
    SELECT (SELECT max(activity_at) FROM events) AS latest_at,
           (SELECT count(DISTINCT {object_key_sql()}) FROM events) AS objects,
           (SELECT count(*) FROM assignments) AS assignments,
           (SELECT count(*) FROM ({scope_sql()}) WHERE rank IN (0, 1)) AS users_in_scope,
           (SELECT count(*) FROM (
               SELECT DISTINCT principal_id FROM assignments
               WHERE principal_type = 'group'
                 AND NOT coalesce(default_access,
                                  coalesce(app_role_id = {_lit(DEFAULT_ACCESS_ROLE)}, false))
           )) AS groups_in_scope{more}
    """  # noqa: S608 (constants)


# The event ids of failed reference-resolution steps (over the ``steps`` view).
REFERENCE_STEPS: Final = (
    "SELECT event_id FROM steps WHERE step_type = 'reference_resolution' "
    "AND status = 'failure' AND event_id IS NOT NULL"
)


def reference_failure_sql(ref_ids: str = REFERENCE_STEPS) -> str:
    """SQL over an event: it failed on a reference (manager, group members; reports.quarantine):
    its id among ``ref_ids`` (a query of event ids: REFERENCE_STEPS), a failed step named for a
    reference, or a group update."""
    return (
        f"status = 'failure' AND coalesce(id IN ({ref_ids}) "
        "OR regexp_matches(failed_step, 'reference', 'i') "
        "OR (source_type = 'group' AND action = 'update'), false)"
    )


# The timeline part: one row per event, what the answers a time range selects read of it, in
# time order (no time last; then stored order) in small row groups, so a time range reads only
# the row groups its Parquet statistics put in range. Besides these canonical columns: ``_row``
# (the event's stored place), ``_key`` (its object: one number per object key, null for none),
# ``_noise`` (the noise part's flag) and ``_ref`` (reference_failure_sql).
TIMELINE_COLUMNS: Final = (
    "activity_at",
    "job_id",
    "service_principal_id",
    "cycle_id",
    "action",
    "status",
    "error_code",
)
TIMELINE_ROW_GROUP: Final = 16384


def timeline_sql() -> str:
    """The timeline part (TIMELINE_COLUMNS, ``_row``, ``_key``, ``_noise``, ``_ref``) over the
    ``events``, ``steps`` and ``noise`` views, in time order."""
    cols = ", ".join(TIMELINE_COLUMNS)
    return f"""
    SELECT {cols}, _pos AS _row,
           CASE WHEN _k IS NOT NULL THEN dense_rank() OVER (ORDER BY _k) END AS _key,
           coalesce(id IN (SELECT event_id FROM noise WHERE noise), false) AS _noise,
           {reference_failure_sql()} AS _ref
    FROM (SELECT *, {object_key_sql()} AS _k FROM events)
    ORDER BY activity_at NULLS LAST, _pos
    """  # noqa: S608 (constants)


def event_marks_sql(*, noise: str | None = None, reference: bool = False) -> str:
    """The timeline's columns computed over the ``events`` view instead (every event, stored
    order; ``_key`` the object key itself): ``_noise`` from the event ids of query ``noise``
    (None: not computed), ``_ref`` when ``reference`` (reads ``steps``)."""
    marks = [f"{object_key_sql()} AS _key"]
    if noise is not None:
        marks.append(f"coalesce(id IN ({noise}), false) AS _noise")
    if reference:
        marks.append(f"{reference_failure_sql()} AS _ref")
    return f"SELECT *, {', '.join(marks)} FROM events"  # noqa: S608 (constants)


def groups_sql() -> str:
    """The groups part: one row per (``job_id``, ``service_principal_id``) of events (nulls are
    values), what the landing answers read of the events an app or job filter selects.

    Per group: ``events``, ``successes``, ``failure_events``, ``noise`` and ``noise_successes``
    (the noise part's events), ``first_at``, ``last_at``, ``cycles`` (distinct cycle ids),
    ``objects`` (distinct object keys), ``first_pos`` (its first event's place), ``first_name``
    (the app name of that event), ``last_name`` (the app's last non-null name), ``origins``
    and ``failure_codes`` (failed events per error code, ``(none)`` for none). Per job (null and
    "" one job, repeated on each of its groups): of each object's latest success or failure
    (time order, ties in stored order, no time last), ``q_failures``, ``q_reference_failures``
    (a failed reference step, a step named for a reference, or a group update) and
    ``q_successes`` (reports.quarantine's counts). Reads the ``noise`` view.
    """
    key = object_key_sql()
    return f"""
    WITH ref_steps AS ({REFERENCE_STEPS}), ev AS (
        SELECT job_id, service_principal_id, service_principal_name, origin, status, error_code,
               activity_at, cycle_id, _pos, {key} AS _key,
               coalesce(id IN (SELECT event_id FROM noise WHERE noise), false) AS _noise,
               {reference_failure_sql("SELECT event_id FROM ref_steps")} AS _ref
        FROM events
    ), latest AS (
        SELECT coalesce(job_id, '') AS _job,
               arg_max({{'status': status, 'reference': _ref}},
                       {{'untimed': activity_at IS NULL, 'at': activity_at, 'row': _pos}}) AS last
        FROM ev WHERE status IN ('success', 'failure')
        GROUP BY 1, _key
    ), outcomes AS (
        SELECT _job,
               count(*) FILTER (WHERE last.status = 'failure') AS q_failures,
               count(*) FILTER (WHERE last.status = 'failure' AND last.reference)
                   AS q_reference_failures,
               count(*) FILTER (WHERE last.status = 'success') AS q_successes
        FROM latest GROUP BY _job
    ), codes AS (
        SELECT job_id, service_principal_id,
               list({{'code': code, 'n': n}} ORDER BY code) AS failure_codes
        FROM (
            SELECT job_id, service_principal_id, coalesce(error_code, '(none)') AS code,
                   count(*) AS n
            FROM ev WHERE status = 'failure' GROUP BY ALL
        ) GROUP BY ALL
    ), g AS (
        SELECT job_id, service_principal_id, count(*) AS events,
               count(*) FILTER (WHERE status = 'success') AS successes,
               count(*) FILTER (WHERE status = 'failure') AS failure_events,
               count(*) FILTER (WHERE _noise) AS noise,
               count(*) FILTER (WHERE _noise AND status = 'success') AS noise_successes,
               min(activity_at) AS first_at, max(activity_at) AS last_at,
               count(DISTINCT cycle_id) AS cycles, count(DISTINCT _key) AS objects,
               min(_pos) AS first_pos,
               arg_min({{'n': service_principal_name}}, _pos).n AS first_name,
               arg_max(service_principal_name, _pos)
                   FILTER (WHERE service_principal_name IS NOT NULL) AS last_name,
               list(DISTINCT origin ORDER BY origin) FILTER (WHERE origin IS NOT NULL)
                   AS origins
        FROM ev GROUP BY job_id, service_principal_id
    )
    SELECT g.*, coalesce(o.q_failures, 0) AS q_failures,
           coalesce(o.q_reference_failures, 0) AS q_reference_failures,
           coalesce(o.q_successes, 0) AS q_successes, c.failure_codes
    FROM g
    LEFT JOIN outcomes o ON o._job = coalesce(g.job_id, '')
    LEFT JOIN codes c ON c.job_id IS NOT DISTINCT FROM g.job_id
        AND c.service_principal_id IS NOT DISTINCT FROM g.service_principal_id
    ORDER BY g.first_pos
    """  # noqa: S608 (constants)


def in_scope_counts_sql(assigned: str, members: str, pos: str = "_pos") -> str:
    """One row of the scope data ``assigned`` selects (a condition on assignments): how many
    ``assignments``, ``users`` in scope (scope_sql's ranks direct and group) and ``groups``
    (in_scope_groups_sql); ``members``: a condition on group memberships (e.g. of the selected
    assignments' groups, the CTE ``assignments``). ``pos``: the views' place column."""
    place = "" if pos == "_pos" else f", {pos} AS _pos"
    return f"""
    WITH assignments AS (SELECT *{place} FROM assignments WHERE {assigned}),
    group_members AS (
        SELECT * FROM group_members WHERE {members}
    )
    SELECT (SELECT count(*) FROM assignments) AS assignments,
        (SELECT count(*) FROM ({scope_sql()}) WHERE rank IN (0, 1)) AS users,
        (SELECT count(principal_id) FROM ({in_scope_groups_sql()})) AS groups
    """  # noqa: S608 (callers' conditions)


APP_MEMBERS: Final = (
    "group_id IN (SELECT principal_id FROM assignments WHERE principal_type = 'group')"
)
APP_SCOPE_MAX: Final = 64  # apps beyond this many are counted when asked (not kept)


def app_scope_sql(apps: Sequence[str]) -> str:
    """The app_scope part: per app of assignments (``service_principal_id``, at most
    APP_SCOPE_MAX of them), in_scope_counts_sql of its assignments and of the members of its
    assigned groups: what an app filter's scope count reads (reports.estimate)."""
    arms = [
        f"SELECT {_lit(app)} AS service_principal_id, * FROM ("  # noqa: S608
        + in_scope_counts_sql(f"service_principal_id = {_lit(app)}", APP_MEMBERS)
        + ")"
        for app in list(apps)[:APP_SCOPE_MAX]
    ]
    if not arms:
        return (
            "SELECT NULL::VARCHAR AS service_principal_id, 0::BIGINT AS assignments, "
            "0::BIGINT AS users, 0::BIGINT AS groups WHERE false"
        )
    return " UNION ALL ".join(arms) + " ORDER BY service_principal_id"
