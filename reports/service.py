"""One way to ask the store a question: every face (CLI, exports, dashboard, alerts) comes here.

``run(store, name, filters, ...)`` runs registered report ``name`` on one store version: it reads
only the tables the report declares (reports.REPORTS), with the filters pushed down into DuckDB,
attaches the derived model of that version (computed once, reports.query), and hands the report
inputs that refuse any other table (``UndeclaredRead``), so a report that reads more than it
declares fails its tests instead of silently losing rows. ``run_report(name, inputs, ...)`` over
in-memory frames stays what tests and library callers use; both run the same ``build`` functions.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from ingest.kept import unfiltered
from ingest.store import Store
from reports import REPORTS, Filters, Inputs, ReportResult, ReportSpec, run_report
from reports import query as q

if TYPE_CHECKING:
    import duckdb

    from reports.model import Model


@dataclass(frozen=True)
class Prepared:
    """The derived model of one store version, made ready by :func:`prepare`."""

    version: int
    built: bool  # False: it was kept already
    kept: bool  # False: built in memory only (a store this process may not write)
    seconds: float


def prepare(store: Store | Path | str) -> Prepared:
    """Keep the derived model of the store's current version beside its parts, building it when
    it is not kept yet (what `provlens ingest` runs after its commit, so the first question of
    the version reads the model instead of building it)."""
    st = _store(store)
    t0 = time.perf_counter()
    con = q.connect()

    def ask(snap: q.Snapshot) -> Prepared:
        before = q.load_model(st, snap.version) is not None
        q.model_for(con, snap)
        after = before or q.load_model(st, snap.version) is not None
        return Prepared(snap.version, not before, after, time.perf_counter() - t0)

    try:
        return q.consistent(st, ask)
    finally:
        con.close()


@dataclass(frozen=True)
class Answer:
    """A report result and the store version it was computed on."""

    result: ReportResult
    version: int


def _store(store: Store | Path | str) -> Store:
    return store if isinstance(store, Store) else Store(Path(store))


def load(
    store: Store | Path | str,
    tables: tuple[str, ...],
    filters: Filters | None = None,
    columns: Mapping[str, Sequence[str]] | None = None,
    rows: q.Rows | None = None,
) -> tuple[int, Inputs]:
    """Return (version, inputs): ``tables`` of one version, only those readable, model attached.

    ``columns`` narrows what is read per table (a report's declared columns), ``rows`` the
    events (reports.query.Rows).
    """
    st = _store(store)
    con = q.connect()

    def ask(snap: q.Snapshot) -> tuple[int, Inputs]:
        model = q.model_for(con, snap)
        inputs = q.read_inputs(con, snap, tables, filters, columns, rows=rows).declare(tables)
        object.__setattr__(inputs, "_model", model)
        return snap.version, inputs

    try:
        return q.consistent(st, ask)
    finally:
        con.close()


def _rows(spec: ReportSpec, params: Mapping[str, Any]) -> q.Rows | None:
    """Return the events report ``spec`` needs asked with ``params`` (None: all selected)."""
    user = params.get("user")
    # One event's pane (``event``) may show another user's event: then every event is read.
    if spec.one_user and user and str(user).strip() and not params.get("event"):
        return q.one_user_rows(str(user))
    if spec.one_user_children and user and str(user).strip():
        return q.one_user_rows(str(user)).children()
    return q.Rows(spec.events_where) if spec.events_where else None


def _slice_user(spec: ReportSpec, params: Mapping[str, Any], filters: Filters | None) -> str | None:
    """Return the user whose rows answer report ``spec`` (None: it reads the parts).

    A one-user report reads only the rows of the objects the user names (reports.query.
    user_slice). A report that also reads every event (the diagnosis: its estimate) does so
    only unfiltered, where the model's facts stand for every event.
    """
    user = str(params.get("user") or "").strip()
    if not user:
        return None
    if spec.one_user and not params.get("event"):
        return user
    if spec.one_user_children and (filters is None or filters == Filters()):
        return user
    return None


def ask(
    store: Store | Path | str,
    name: str,
    filters: Filters | None = None,
    *,
    include_noise: bool = False,
    now: pd.Timestamp | None = None,
    **params: Any,
) -> Answer:
    """Run registered report ``name`` on the store; return its result and the version used."""
    if name not in REPORTS:
        raise KeyError(f"unknown report {name!r}; known: {', '.join(sorted(REPORTS))}")
    con = q.connect()

    def answer(snap: q.Snapshot) -> Answer:
        # The whole question on one version: tables are read when the report first uses them
        # (none when it answers from the model), and asked again if a writer replaced a part.
        model = q.model_for(con, snap)
        result = answer_with(
            con, snap, model, name, filters, include_noise=include_noise, now=now, **params
        )
        return Answer(result, snap.version)

    try:
        return q.consistent(_store(store), answer)
    finally:
        con.close()


def answer_with(
    con: duckdb.DuckDBPyConnection,
    snap: q.Snapshot,
    model: Model,
    name: str,
    filters: Filters | None = None,
    *,
    include_noise: bool = False,
    now: pd.Timestamp | None = None,
    **params: Any,
) -> ReportResult:
    """Return report ``name`` on version ``snap`` with ``model`` (its derived model) attached,
    its tables read on ``con`` as :func:`ask` reads them (reports.query.keep_answers asks so
    while the model is built)."""
    spec = REPORTS[name]
    rows = _rows(spec, params)
    if filters is not None and not spec.time_filtered:
        filters = replace(filters, since=None, until=None)
    user = _slice_user(spec, params, filters)
    source: q.Snapshot = snap
    sliced = q.user_slice(model, user) if user is not None else None
    if spec.user_search and (filters is None or filters == Filters()):
        sliced = q.search_slice(model, str(params.get("query") or ""))
    if sliced is not None:
        source, model = sliced.snapshot(con, snap), sliced.model
    inputs = q.read_inputs(con, source, spec.tables, filters, spec.columns, lazy=True, rows=rows)
    inputs = inputs.declare(spec.tables)
    object.__setattr__(inputs, "_model", model)
    filtered = filters not in (None, Filters())
    if sliced is None and unfiltered(filtered=filtered, include_noise=include_noise, params=params):
        # The unfiltered answer the model keeps (reports.model.KEPT_ANSWERS): this very
        # question, asked while the model was built.
        kept = model.kept_answer(name, inputs)
        if kept is not None:
            return ReportResult(frame=kept)
    return run_report(name, inputs, filters, include_noise=include_noise, now=now, **params)


def run(
    store: Store | Path | str,
    name: str,
    filters: Filters | None = None,
    *,
    include_noise: bool = False,
    now: pd.Timestamp | None = None,
    **params: Any,
) -> ReportResult:
    """Run registered report ``name`` on the store and return its result."""
    return ask(store, name, filters, include_noise=include_noise, now=now, **params).result


def support_pack(
    store: Store | Path | str,
    user: str,
    filters: Filters | None = None,
    now: pd.Timestamp | None = None,
) -> dict[str, pd.DataFrame]:
    """Return one user's support pack (reports.export.support_pack) from one store version."""
    from reports.export import SUPPORT_PACK_TABLES
    from reports.export import support_pack as build_pack

    # Every event (the estimate counts them all), but only this user's steps and changes.
    rows = q.one_user_rows(user).children() if user.strip() else None
    _, inputs = load(store, SUPPORT_PACK_TABLES, filters, rows=rows)
    return build_pack(inputs, user, filters, now)


def table(store: Store | Path | str, name: str, filters: Filters | None = None) -> pd.DataFrame:
    """Return canonical table ``name`` (or ``events_flat``) of one version under ``filters``."""
    from reports.export import FLAT_TABLES, flat_events

    if name == "events_flat":
        _, inputs = load(store, FLAT_TABLES, filters)
        return flat_events((filters or Filters()).apply_inputs(inputs))
    need = [name]
    if name in ("steps", "modified_properties"):
        need.append("events")
    if name == "group_members":
        need.append("assignments")
    _, inputs = load(store, tuple(need), filters)
    return (filters or Filters()).apply_inputs(inputs).table(name)
