"""users: one row per source object; and one user's timeline with steps and modified properties."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa

from reports import Filters, Inputs, ReportResult
from reports.inputs import isin, lookup, object_key, order_events, slim
from reports.model_sql import USER_COLUMNS

if TYPE_CHECKING:
    from reports.sql import StoredRows

COLUMNS = [
    "source_id",
    "source_name",
    "source_upn",
    "source_type",
    "target_id",
    "last_at",
    "last_action",
    "last_status",
    "last_error_code",
    "events",
    "failures",
    "first_success_at",
    "last_success_at",
]


_LATEST = ("source_id", "source_name", "source_upn", "source_type", "target_id")
# One row per object from its events, by DuckDB over the frame (reports.sql). Columns given by
# the caller: _key (object_key), _ord (order_events' rank), _use (counts), _noise, _tier (ranks
# ties).
_USER_SQL = """
WITH ev AS (SELECT * FROM events), g AS (
    SELECT
        _key,
        _tier,
        count(*) AS events,
        arg_max(source_id, _ord) AS source_id,
        arg_max(source_name, _ord) AS source_name,
        arg_max(source_upn, _ord) AS source_upn,
        arg_max(source_type, _ord) AS source_type,
        arg_max(target_id, _ord) AS target_id,
        arg_max({'v': activity_at}, _ord).v AS last_at,
        arg_max({'v': action}, _ord).v AS last_action,
        arg_max({'v': status}, _ord).v AS last_status,
        (arg_max({'v': error_code}, _ord) FILTER (WHERE status = 'failure')).v AS last_error_code,
        count(*) FILTER (WHERE status = 'failure') AS failures,
        min(activity_at) FILTER (WHERE status = 'success') AS first_success_at,
        max(activity_at) FILTER (WHERE status = 'success') AS last_success_at,
        CASE WHEN _key IS NULL THEN -1 ELSE min(_ord) END AS _first
    FROM ev WHERE _use GROUP BY _key, _tier
), n AS (
    SELECT _key, count(*) AS noise_events FROM ev WHERE _noise GROUP BY _key
)
SELECT g.*, CASE WHEN g._key IS NULL THEN 0 ELSE coalesce(n.noise_events, 0) END AS noise_events
FROM g LEFT JOIN n ON g._key = n._key
ORDER BY last_at DESC NULLS LAST, source_id ASC NULLS LAST, _tier, _first
"""


# user_table() over the selected events where they lie: the key, order and noise flags that
# user_table computes in pandas, in SQL (order: time, then read order, no time last). ``_ord``
# orders as user_table's rank does without ranking (no sort of every event): the time in µs
# (no time: after any), then the read position.
_STORED_USERS_SQL = """
WITH sel AS (
    SELECT *, {key} AS _key,
        (coalesce(epoch_us(activity_at), 9223372036854775807)::HUGEINT << 64) + _row AS _ord,
        coalesce(id IN (SELECT event_id FROM noise_ids), false) AS _noise
    FROM events WHERE {where}
), flagged AS (
    SELECT *,
        {hide} AND _noise AND NOT coalesce(
            _key IN (SELECT _key FROM sel WHERE NOT _noise AND _key IS NOT NULL), false)
            AS _only
    FROM sel
), marked AS (
    SELECT *, NOT ({hide} AND _noise) OR _only AS _use, CASE WHEN _only THEN 1 ELSE 0 END AS _tier
    FROM flagged
)"""


def stored_user_table(
    inputs: Inputs, filters: Filters, noise_ids: pd.Series, include_noise: bool
) -> pd.DataFrame:
    """Return :func:`user_table` of the events ``filters`` select, computed where they lie.

    ``noise_ids``: the ids of noise events (the model's).
    """
    return _user_frame(_stored_user_rows(inputs, filters, noise_ids, include_noise))


def _user_frame(rows: pa.Table) -> pd.DataFrame:
    """Return :func:`_stored_user_rows`' Arrow rows as user_table's frame."""
    from reports import sql

    out = sql.frame_of(rows)
    out["events"] = out["events"].astype("Int64")
    out["failures"] = out["failures"].astype("Int64")
    out["noise_events"] = out["noise_events"].astype("int64")
    return out


def _stored_user_rows(
    inputs: Inputs, filters: Filters, noise_ids: pd.Series, include_noise: bool
) -> pa.Table:
    """Return the rows of :func:`stored_user_table` as Arrow (its columns, in its order)."""
    from reports import sql

    rows = sql.over_arrow(
        inputs,
        stored_users_sql(filters, include_noise),
        ["events"],
        noise_ids=pd.DataFrame({"event_id": noise_ids.dropna().astype("str")}),
    )
    return rows.select(ROW_COLUMNS)


ROW_COLUMNS: Final = [*COLUMNS, "noise_events"]
# The model keeps the unfiltered rows (reports.query: its ``users_rows`` parts), noise hidden and
# shown: computed with the model by :func:`stored_users_sql`, read back by an unfiltered ask.
KEPT_ROWS: Final = {False: "users_rows", True: "users_rows_noise"}


def stored_users_sql(filters: Filters, include_noise: bool) -> str:
    """Return the SQL of :func:`stored_user_table`'s rows (all its columns; ``ROW_COLUMNS``
    first) over a view ``events`` with ``_row`` and a view ``noise_ids`` (``event_id``)."""
    from reports import sql
    from reports.query import OBJECT_KEY

    head = _STORED_USERS_SQL.format(
        key=OBJECT_KEY,
        where=sql.filter_sql(filters),
        hide="FALSE" if include_noise else "TRUE",
    )
    body = _USER_SQL.replace(
        "WITH ev AS (SELECT * FROM events), g AS (", ", ev AS (SELECT * FROM marked), g AS ("
    )
    assert body != _USER_SQL
    return head + body


def _kept_rows(inputs: Inputs, filters: Filters, include_noise: bool) -> StoredRows | None:
    """Return the unfiltered rows the model keeps (read in place from its file), None when it
    keeps none (in-memory inputs, or a filter: then they are computed)."""
    from reports.model import kept_rows, model_of

    if filters != Filters() or inputs.scan("events") is None:
        return None
    return kept_rows(model_of(inputs), KEPT_ROWS[include_noise], ROW_COLUMNS)


_NOISE_COUNT_SQL = (
    "SELECT count(*) AS n FROM events WHERE {where} AND id IN (SELECT event_id FROM noise_ids)"
)


def users_counts_sql() -> dict[str, str]:
    """Return SQL counting over every event (views ``events`` with ``_pos``, ``noise_ids``):
    ``users_rows`` and ``users_rows_quiet``, the rows of the unfiltered users table with noise
    shown and hidden (:func:`stored_user_table`'s rule), and ``noise_events``. The model keeps
    them (its facts), so an unfiltered search need not build the whole table to count it."""
    from reports.query import OBJECT_KEY

    out = {}
    for name, hide in (("users_rows", "FALSE"), ("users_rows_quiet", "TRUE")):
        head = _STORED_USERS_SQL.format(key=OBJECT_KEY, where="TRUE", hide=hide)
        # Unfiltered, the read position is the stored position.
        ordered = head.replace("+ _row AS _ord", "+ _pos AS _ord")
        assert ordered != head
        rows = " SELECT count(*) FROM (SELECT DISTINCT _key, _tier FROM marked WHERE _use)"
        out[name] = ordered + rows
    out["noise_events"] = _NOISE_COUNT_SQL.format(where="TRUE")
    return out


def _noise_count(inputs: Inputs, filters: Filters, noise_ids: pd.Series) -> int:
    """Return how many of the selected events are noise (counted where they lie)."""
    from reports import sql

    counted = sql.over(
        inputs,
        _NOISE_COUNT_SQL.format(where=sql.filter_sql(filters)),
        ["events"],
        noise_ids=pd.DataFrame({"event_id": noise_ids.dropna().astype("str")}),
    )
    return int(counted["n"].iloc[0])


def _event_rank(events: pd.DataFrame) -> npt.NDArray[np.int64]:
    """Return each event's rank in order_events' order (time, then stored order; no time last)."""
    order = order_events(events[["activity_at"]].reset_index(drop=True)).index.to_numpy()
    rank = np.empty(len(events), dtype=np.int64)
    rank[order] = np.arange(len(events))
    return rank


def user_table(
    events: pd.DataFrame,
    noise: pd.Series | None = None,
    include_noise: bool = True,
) -> pd.DataFrame:
    """Return one row per source object of ``events`` (latest first), with ``noise_events``.

    Names, UPN and target id are the latest known values; ``last_error_code`` is the code of the
    object's latest failure (kept after a later success, so support sees what went wrong).
    ``noise`` flags events (aligned to ``events``); hidden (``include_noise`` False), they leave
    the counts and last values, but an object with only noise keeps its row from those events,
    ranked after the others at equal time and id.
    """
    from reports import sql

    keys = object_key(events)
    flag = np.zeros(len(events), bool) if noise is None else noise.to_numpy(bool)
    use = np.ones(len(events), bool)
    tier = np.zeros(len(events), np.int8)
    if not include_noise and flag.any():
        use = ~flag
        # Noise-only objects (a null key never matches another: it is its own object).
        only = flag & ~isin(keys, keys.loc[use]).to_numpy(bool)
        use |= only
        tier[only] = 1
    columns = ["activity_at", "action", "status", "error_code", *_LATEST]
    frame = events[columns].reset_index(drop=True)
    frame = frame.assign(
        _key=keys.to_numpy(), _ord=_event_rank(events), _use=use, _noise=flag, _tier=tier
    )
    out = sql.run(_USER_SQL, events=frame)
    out["events"] = out["events"].astype("Int64")
    out["failures"] = out["failures"].astype("Int64")
    out["noise_events"] = out["noise_events"].astype("int64")
    return out[[*COLUMNS, "noise_events"]]


def _named(events: pd.DataFrame, user: str) -> pd.Series:
    """Return True for events whose source or target id, UPN or display name is ``user``."""
    wanted = user.strip().lower()
    hit = pd.Series(False, index=events.index)
    for column in USER_COLUMNS:  # the columns model_sql.user_hit_sql reads
        hit |= (events[column].astype("str").str.lower() == wanted).fillna(False).astype(bool)
    return hit


def _objects_named(keys: pd.Series, events: pd.DataFrame, user: str) -> tuple[str, ...]:
    """Return the object keys (``keys``: object_key of ``events``) of the events ``user`` names."""
    return tuple(sorted(str(k) for k in keys.loc[_named(events, user)].dropna().unique()))


def match_user(events: pd.DataFrame, user: str) -> pd.Series:
    """Return True for events of ``user``: source or target id, UPN or display name (any case)."""
    # A name or UPN can hit one event; widen to every event of the objects it found.
    keys = object_key(events)
    return isin(keys, _objects_named(keys, events, user))


@dataclass(frozen=True)
class Timeline:
    """One user's events (oldest first) and the steps and modified properties of those events."""

    events: pd.DataFrame
    steps: pd.DataFrame
    modified_properties: pd.DataFrame


def rows_of_events(frame: pd.DataFrame, event_ids: pd.Series) -> pd.DataFrame:
    """Return the rows of a child table (steps, modified_properties) of ``event_ids``.

    By position, not boolean ``.loc``: on a store's multi-chunk Arrow columns a boolean
    selection of a few rows out of millions costs seconds, a positional take a fraction.
    """
    return frame.iloc[np.flatnonzero(isin(frame["event_id"], event_ids).to_numpy(bool))]


def user_timeline(inputs: Inputs, user: str, filters: Filters | None = None) -> Timeline:
    """Return the timeline of ``user`` (id, UPN or name); every event, noise included, marked.

    Over one user's rows (a store's one-user slice) the objects a text names and their
    timeline are derived once (reports.model.Model.of_rows): a page's answers about one user
    (diagnosis, timeline, steps, changes, wiki requests) share them, whichever of the user's
    texts each was asked with.
    """
    from reports.model import model_of

    model = model_of(inputs)
    chosen = filters or Filters()
    read: list[tuple[pd.DataFrame, pd.Series]] = []

    def selected() -> tuple[pd.DataFrame, pd.Series]:
        if not read:
            ev = chosen.apply_events(inputs.events)
            read.append((ev, object_key(ev)))
        return read[0]

    def named() -> tuple[str, ...]:
        ev, keys = selected()
        return _objects_named(keys, ev, user)

    objects = model.of_rows(("user-objects", user.strip().lower(), chosen), named)
    return model.of_rows(
        ("timeline", objects, chosen), lambda: _timeline_of(inputs, *selected(), objects)
    )


def _timeline_of(
    inputs: Inputs, events: pd.DataFrame, keys: pd.Series, objects: tuple[str, ...]
) -> Timeline:
    """Return the timeline of the objects ``objects`` among ``events`` (the selected events;
    ``keys``: their object keys)."""
    from reports.model import event_scim_errors, model_of

    model = model_of(inputs)
    ev = order_events(events.iloc[np.flatnonzero(isin(keys, objects).to_numpy(bool))])
    mp = rows_of_events(inputs.modified_properties, ev["id"])
    ev = ev.assign(
        noise=model.noise_of(ev["id"]),
        noise_reason=model.column_of(ev["id"], "noise_reason").astype("str"),
        excluded_by=model.column_of(ev["id"], "excluded_by").astype("str"),
    )
    ev = pd.concat([ev, event_scim_errors(ev, inputs.scim_requests, model)], axis=1)
    ids = ev["id"]
    steps = rows_of_events(inputs.steps, ids)
    order = pd.Series(range(len(ids)), index=ids.to_numpy())
    steps = steps.assign(_o=lookup(order, steps["event_id"])).sort_values(["_o", "position"])
    mp = mp.assign(_o=lookup(order, mp["event_id"])).sort_values("_o", kind="stable")
    return Timeline(
        events=ev.reset_index(drop=True),
        steps=steps.drop(columns="_o").reset_index(drop=True),
        modified_properties=mp.drop(columns="_o").reset_index(drop=True),
    )


def shown_timeline(timeline: Timeline, include_noise: bool) -> tuple[Timeline, int]:
    """Return the timeline without its noise events (unless ``include_noise``) and how many."""
    ev = timeline.events
    if include_noise or "noise" not in ev.columns:
        return timeline, 0
    noise = ev["noise"].fillna(False).astype(bool)
    hidden = int(noise.sum())
    if not hidden:
        return timeline, 0
    ev = ev.loc[~noise].reset_index(drop=True)
    steps, mods = timeline.steps, timeline.modified_properties
    return (
        Timeline(
            events=ev,
            steps=steps.loc[isin(steps["event_id"], ev["id"])].reset_index(drop=True),
            modified_properties=mods.loc[isin(mods["event_id"], ev["id"])].reset_index(drop=True),
        ),
        hidden,
    )


def user_key(users: pd.DataFrame) -> pd.Series:
    """Return the identifier ``match_user`` takes for each `users` row (id, else UPN, name)."""
    key = users["source_id"].astype("object")
    for col in ("source_upn", "source_name", "target_id"):
        key = key.where(key.notna(), users[col].astype("object"))
    return key.fillna("").astype(str)


def search_users(users: pd.DataFrame, query: str, limit: int = 200) -> pd.DataFrame:
    """Return up to ``limit`` `users` rows whose name, UPN or ids contain ``query`` (any case)."""
    q = query.strip().lower()
    if not q:
        return users.head(limit)
    mask = pd.Series(False, index=users.index)
    for col in ("source_name", "source_upn", "source_id", "target_id"):
        if col in users.columns:
            found = users[col].astype("str").str.lower().str.contains(q, regex=False)
            mask |= found.fillna(False).astype(bool)
    return users.loc[mask].head(limit)


def affected_users(users: pd.DataFrame | None) -> pd.DataFrame:
    """Return `users` rows with at least one failure, most failures (then latest) first."""
    if users is None or users.empty:
        return pd.DataFrame(columns=COLUMNS)
    hit = users.loc[(users["failures"].fillna(0) > 0).astype(bool)]
    return hit.sort_values(
        ["failures", "last_at"], ascending=[False, False], kind="stable"
    ).reset_index(drop=True)


TIMELINE_COLUMNS = [
    "id",
    "activity_at",
    "job_id",
    "cycle_id",
    "change_id",
    "action",
    "status",
    "source_id",
    "source_upn",
    "source_name",
    "target_id",
    "error_code",
    "error_reason",
    "recommended_action",
    "skip_reason",
    "failed_step",
    "noise",
    "noise_reason",
    "excluded_by",
    "scim_status",
    "scim_type",
    "scim_detail",
    "steps",
    "modified_properties",
]


def steps_text(steps: pd.DataFrame) -> pd.Series:
    """Return each event's steps as text lines ``position. name [status]: description``."""
    text = (
        steps["position"].astype("str")
        + ". "
        + steps["name"].fillna(steps["step_type"]).astype("str")
        + " ["
        + steps["status"].astype("str")
        + "]"
        + (": " + steps["description"].astype("str")).fillna("")
    )
    ordered = text.iloc[np.lexsort((steps["position"].to_numpy(), steps["event_id"].to_numpy()))]
    return ordered.groupby(steps["event_id"], sort=False).agg("\n".join)


def modified_text(modified_properties: pd.DataFrame) -> pd.Series:
    """Return each event's modified properties as text lines ``name: old → new`` (∅ = null)."""
    mp = modified_properties
    text = (
        mp["name"].astype("str")
        + ": "
        + mp["old_value"].fillna("∅").astype("str")
        + " → "
        + mp["new_value"].fillna("∅").astype("str")
    )
    return text.groupby(mp["event_id"], sort=False).agg("\n".join)


def with_children_text(
    events: pd.DataFrame, steps: pd.DataFrame, modified_properties: pd.DataFrame
) -> pd.DataFrame:
    """Return events with two text columns, ``steps`` and ``modified_properties``."""
    st = steps.loc[isin(steps["event_id"], events["id"])]
    mp = modified_properties.loc[isin(modified_properties["event_id"], events["id"])]
    return events.assign(
        steps=lookup(steps_text(st), events["id"]).astype("str"),
        modified_properties=lookup(modified_text(mp), events["id"]).astype("str"),
    )


def timeline_frame(timeline: Timeline) -> pd.DataFrame:
    """Return the timeline flat: one row per event, its steps and modified properties as text."""
    out = with_children_text(timeline.events, timeline.steps, timeline.modified_properties)
    return out[TIMELINE_COLUMNS]


def build(
    inputs: Inputs,
    filters: Filters,
    *,
    include_noise: bool = False,
    now: pd.Timestamp | None = None,
    user: str | None = None,
    **params: Any,
) -> ReportResult:
    """Return one row per source object; ``user`` keeps that one.

    Hidden noise (the default) leaves the counts and last values; it never hides an object
    (DESIGN "one-user answers": searching users always finds every object, noise or not). An
    object whose selected events are all noise keeps its row, from those events, so it stays
    findable; ``noise_events`` says how many of each object's events are noise. Asked about one
    ``user``, every event counts.
    """
    from reports.model import model_of

    model = model_of(inputs)
    if not user:
        kept = _kept_rows(inputs, filters, include_noise)
        if kept is not None:
            facts = model.columns("facts", ["noise_events"])
            hidden = 0 if include_noise else int(facts["noise_events"].iloc[0])
            return ReportResult.of_rows(
                kept, lambda rows: _user_frame(rows.table()), hidden_noise=hidden
            )
        noise = model.columns("noise", ["event_id", "noise"])
        noisy = noise.loc[noise["noise"].astype(bool), "event_id"]
        rows = _stored_user_rows(inputs, filters, noisy, include_noise)
        hidden = 0 if include_noise else _noise_count(inputs, filters, noisy)
        return ReportResult.of_rows(rows, _user_frame, hidden_noise=hidden)
    ev = filters.apply_events(slim(inputs.events, "source_type", "error_code", "target_name"))
    if user:
        ev = ev.loc[match_user(ev, user)]
    noise = model.noise_of(ev["id"])
    shown = include_noise or bool(user)
    hidden = 0 if shown else int(noise.sum())
    table = user_table(ev, noise, include_noise=shown)
    return ReportResult(frame=table, hidden_noise=hidden)


def build_timeline(
    inputs: Inputs,
    filters: Filters,
    *,
    include_noise: bool = False,
    now: pd.Timestamp | None = None,
    user: str | None = None,
    **params: Any,
) -> ReportResult:
    """Return ``user``'s timeline, one row per event (noise marked, hidden unless asked)."""
    if not user:
        raise ValueError("the timeline report needs a user (--user ID, UPN or name)")
    tl = user_timeline(inputs, user, filters)
    frame = timeline_frame(tl)
    hidden = 0
    if not include_noise:
        hidden = int(frame["noise"].sum())
        frame = frame.loc[~frame["noise"]].reset_index(drop=True)
    return ReportResult(frame=frame, hidden_noise=hidden)
