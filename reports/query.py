"""The query layer: DuckDB over one manifest version of the store's Parquet parts.

A question is answered from one :class:`Snapshot` (one committed manifest): every table it reads
comes from the part files that manifest lists, so two tables never come from two versions. When a
writer replaces a part under a reader (a commit that rewrote or compacted parts), the whole
question is asked again on the new manifest.

Reads are SQL over ``read_parquet([...parts])`` with the filters and columns pushed down: the time
range, apps and jobs select events (and, through them, steps and modified properties); wiki
requests are read 120 s wider than the range (the correlation window); scope follows the app.
Action and status filters are not pushed down: they choose which events a report lists, never
what a cycle, a match or noise is (DESIGN "filters"), and reports apply them.

The derived model (reports.model) of a version is computed once and kept beside the parts in
``derived/v<version>/<part>.parquet``; a later question on the same version reads it back.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Final, TypeVar

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ingest.errors import UsageError
from ingest.kept import DERIVED, model_dir
from ingest.schema import TABLES, empty_frame
from ingest.store import Manifest, Store, to_pandas
from reports import Filters, Inputs, ReportResult, Scan
from reports.model import (
    ASKED_AT_BUILD,
    KEPT_ANSWER_ROWS,
    KEPT_ANSWERS,
    MODEL_FORMAT,
    PART_TABLES,
    PARTS,
    ROW_PARTS,
    Model,
    Once,
    answer_file,
    cycles_frame,
    part_query,
    read_frame,
    typed_part,
)
from reports.model_sql import TIMELINE_ROW_GROUP, USER_COLUMNS, object_key_sql, user_hit_sql

log = logging.getLogger(__name__)

SLACK = pd.Timedelta(seconds=120)  # wiki requests are read this much wider than the range
MODEL_CACHE_SIZE = 2
T = TypeVar("T")


class PartVanished(Exception):
    """A part listed by the manifest we read was replaced by a writer meanwhile."""


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class Snapshot:
    """One committed version of a store: the manifest every read of one question uses."""

    store: Store
    manifest: Manifest

    @classmethod
    def of(cls, store: Store) -> Snapshot:
        """Return the store's current committed version."""
        return cls(store, store.manifest())

    @property
    def version(self) -> int:
        """The manifest's version number."""
        return self.manifest.version

    def prepare(self) -> None:
        """Make this version's tables readable on the question's connection (before SQL naming
        :meth:`source` runs)."""

    def files(self, table: str) -> list[str]:
        """Return the part files of ``table`` in this version."""
        return [str(self.store.path / p) for p in self.manifest.parts.get(table, [])]

    def source(self, table: str, ordered: bool = False) -> str | None:
        """Return the SQL table expression reading ``table``'s parts (None: no parts).

        ``ordered``: with each row's part file and row number (for :data:`STORED_ORDER`).
        """
        files = self.files(table)
        if not files:
            return None
        listed = f"[{', '.join(_quote(f) for f in files)}]"
        if ordered:
            return f"read_parquet({listed}, filename = true, file_row_number = true)"
        return f"read_parquet({listed})"

    def stored_order(self, table: str) -> str:
        """Return the SQL of each row's position in the order a read returns the rows (parts
        in the manifest's order, rows in file order) over :meth:`source` ``ordered``."""
        listed = f"[{', '.join(_quote(f) for f in self.files(table))}]"
        return f"list_position({listed}, filename) * 4294967296 + file_row_number"


def _in(column: str, values: Sequence[str], params: list[Any]) -> str:
    params.extend(values)
    return f"{_ident(column)} IN ({', '.join('?' for _ in values)})"


def _event_where(filters: Filters, params: list[Any]) -> list[str]:
    conds = []
    if filters.since is not None:
        conds.append("activity_at >= ?")
        params.append(filters.since.to_pydatetime())
    if filters.until is not None:
        conds.append("activity_at < ?")
        params.append(filters.until.to_pydatetime())
    if filters.service_principal_ids:
        conds.append(_in("service_principal_id", filters.service_principal_ids, params))
    if filters.job_ids:
        conds.append(_in("job_id", filters.job_ids, params))
    return conds


def _narrows_events(filters: Filters) -> bool:
    return bool(
        filters.since is not None
        or filters.until is not None
        or filters.service_principal_ids
        or filters.job_ids
    )


@dataclass(frozen=True)
class Rows:
    """Which events a question needs beyond the filters: an SQL condition on events.

    ``sql`` may read the events again as ``{events}`` (a subquery); its values are bound
    (``params``). Steps and modified properties follow the events it keeps. A report given such
    rows still selects them itself (the same rule in pandas), so over in-memory inputs it
    answers the same: the condition only spares reading what the report would drop.
    """

    sql: str
    params: tuple[Any, ...] = ()
    # Only steps and modified properties follow (every selected event is still read): for a
    # question that reads all events but one user's steps (a diagnosis, a support pack).
    children_only: bool = False

    def children(self) -> Rows:
        """Return these rows applied to steps and modified properties only."""
        return Rows(self.sql, self.params, children_only=True)

    def bind(self, events: str, params: list[Any]) -> str:
        """Return the condition reading events from ``events``; append its values to ``params``."""
        params.extend(self.params)
        return "(" + self.sql.format(events=events) + ")"


# reports.inputs.object_key in SQL (the model's own coding of it).
OBJECT_KEY = object_key_sql()


def one_user_rows(user: str) -> Rows:
    """Return the events of the objects ``user`` names (reports.users.match_user, in SQL).

    An event hits when an id, UPN or name equals ``user`` (any case); every event of a hit's
    object is kept. Hits are looked for in all events (a superset of what the report then
    matches within its selection), so the report's own match finds every row it needs.
    """
    wanted = user.strip().lower()
    hits = user_hit_sql("?")
    sql = f"{OBJECT_KEY} IN (SELECT {OBJECT_KEY} FROM {{events}} WHERE {hits})"  # noqa: S608
    return Rows(sql, (wanted,) * len(USER_COLUMNS))


def table_query(
    snap: Snapshot,
    table: str,
    columns: Sequence[str] | None,
    filters: Filters,
    present: Iterable[str] | None = None,
    rows: Rows | None = None,
    ordered: bool = False,
) -> tuple[str, list[Any]] | None:
    """Return the SQL and parameters reading ``table`` under ``filters`` (None: no parts).

    ``present``: the columns the parts hold; a column asked for that parts written before it
    existed lack is read as null. ``rows``: the events the question needs (and their steps
    and modified properties), on top of the filters. ``ordered``: with a ``_row`` column, each
    row's position in the order a read returns them.
    """
    source = snap.source(table)
    if source is None:
        return None
    params: list[Any] = []
    conds: list[str] = []
    if table == "events":
        conds = _event_where(filters, params)
        if rows is not None and not rows.children_only:
            conds.append(rows.bind(source, params))
    elif table in ("steps", "modified_properties"):
        events = snap.source("events")
        if (_narrows_events(filters) or rows is not None) and events is not None:
            inner: list[Any] = []
            kept = _event_where(filters, inner)
            if rows is not None:
                kept.append(rows.bind(events, inner))
            where = " AND ".join(kept)
            # Only file paths (quoted) and column names are spliced in; values are bound.
            conds.append(f"event_id IN (SELECT id FROM {events} WHERE {where})")  # noqa: S608
            params.extend(inner)
    elif table == "scim_requests":
        if filters.since is not None:
            conds.append("received_at >= ?")
            params.append((filters.since - SLACK).to_pydatetime())
        if filters.until is not None:
            conds.append("received_at < ?")
            params.append((filters.until + SLACK).to_pydatetime())
    elif table == "sync_jobs":
        if filters.service_principal_ids:
            conds.append(_in("service_principal_id", filters.service_principal_ids, params))
        if filters.job_ids:
            conds.append(_in("job_id", filters.job_ids, params))
    elif table == "assignments":
        if filters.service_principal_ids:
            conds.append(_in("service_principal_id", filters.service_principal_ids, params))
    elif table == "group_members":
        assignments = snap.source("assignments")
        if filters.service_principal_ids and assignments is not None:
            inner = []
            sp = _in("service_principal_id", filters.service_principal_ids, inner)
            conds.append(
                f"group_id IN (SELECT principal_id FROM {assignments} "  # noqa: S608
                f"WHERE principal_type = 'group' AND {sp})"
            )
            params.extend(inner)
    have = None if present is None else set(present)
    cols = (
        ", ".join(
            _ident(c) if have is None or c in have else f"NULL AS {_ident(c)}" for c in columns
        )
        if columns is not None
        else "*"
    )
    if ordered:
        source = snap.source(table, ordered=True)
        cols += f", {snap.stored_order(table)} AS _row"
    sql = f"SELECT {cols} FROM {source}"  # noqa: S608 (quoted paths and identifiers only)
    if conds:
        sql += " WHERE " + " AND ".join(conds)
    return sql, params


def connect() -> duckdb.DuckDBPyConnection:
    """Return a DuckDB connection set for provlens: UTC, two threads, no progress bar (a new
    connection to the process's database: reports.sql.connect)."""
    from reports.sql import connect as shared

    return shared()


def read_table(
    con: duckdb.DuckDBPyConnection,
    snap: Snapshot,
    table: str,
    columns: Sequence[str] | None = None,
    filters: Filters | None = None,
    rows: Rows | None = None,
) -> pd.DataFrame:
    """Return ``table`` of ``snap`` as a canonical frame, filters, rows and columns pushed down."""
    if table not in TABLES:
        raise UsageError(f"unknown table {table!r}; tables: {', '.join(TABLES)}")
    query = table_query(snap, table, columns, filters or Filters(), rows=rows)
    if query is None:
        frame = empty_frame(table)
        return frame[list(columns)] if columns is not None else frame
    sql, params = query
    if isinstance(snap, SliceSnapshot) and snap.reads is not None and table in snap.views:
        # One user's rows: the same read by another question about them is the frame read first.
        return snap.reads.get(
            ("read", sql, tuple(params)),
            partial(_read_table, con, snap, table, columns, filters, rows, sql, params),
        )
    return _read_table(con, snap, table, columns, filters, rows, sql, params)


def _read_table(
    con: duckdb.DuckDBPyConnection,
    snap: Snapshot,
    table: str,
    columns: Sequence[str] | None,
    filters: Filters | None,
    rows: Rows | None,
    sql: str,
    params: list[Any],
) -> pd.DataFrame:
    snap.prepare()
    try:
        try:
            tbl = con.sql(sql, params=params).to_arrow_table()
        except duckdb.BinderException:
            # Parts written before a column was added to the schema: read it as null.
            source = snap.source(table)
            present = con.sql(f"SELECT * FROM {source} LIMIT 0").columns  # noqa: S608
            query = table_query(snap, table, columns, filters or Filters(), present, rows)
            known = {c.name for c in TABLES[table].columns}
            missing = set(columns or ()) - set(present)
            if query is None or not missing or not missing <= known:
                raise
            sql, params = query
            tbl = con.sql(sql, params=params).to_arrow_table()
    except duckdb.IOException as exc:
        if "No such file" in str(exc) or "not exist" in str(exc) or "No files found" in str(exc):
            raise PartVanished(str(exc)) from None
        raise
    return to_pandas(table, tbl)


def scan_table(
    con: duckdb.DuckDBPyConnection,
    snap: Snapshot,
    table: str,
    columns: Sequence[str] | None = None,
    filters: Filters | None = None,
    rows: Rows | None = None,
) -> Scan | None:
    """Return the SQL reading ``table`` of ``snap`` in place (what read_table would read, plus
    ``_row``: the position read_table gives each row), or None when it has no parts (then the
    caller reads the empty frame)."""
    source = snap.source(table)
    if source is None:
        return None
    snap.prepare()
    present = None
    if columns is not None:
        try:
            present = con.sql(f"SELECT * FROM {source} LIMIT 0").columns  # noqa: S608
        except duckdb.IOException as exc:
            raise PartVanished(str(exc)) from None
    query = table_query(snap, table, columns, filters or Filters(), present, rows, ordered=True)
    if query is None:
        return None
    sql, params = query
    # The same read with every column: what the rows are, the columns aside (Scan.key).
    every = table_query(snap, table, None, filters or Filters(), None, rows, ordered=True)
    key = None if every is None else (table, every[0], tuple(every[1]))
    return Scan(con, sql, tuple(params), key)


def consistent(store: Store, ask: Callable[[Snapshot], T], attempts: int = 5) -> T:
    """Return ``ask(snapshot)`` on one store version; ask again on a newer one if parts vanish."""
    for attempt in range(attempts):
        snap = Snapshot.of(store)
        try:
            return ask(snap)
        except (PartVanished, FileNotFoundError):
            time.sleep(0.05 * (attempt + 1))
    raise UsageError(f"{store.path}: the store kept changing while being read; try again")


def read_inputs(
    con: duckdb.DuckDBPyConnection,
    snap: Snapshot,
    tables: Iterable[str],
    filters: Filters | None = None,
    columns: Mapping[str, Sequence[str]] | None = None,
    *,
    lazy: bool = False,
    rows: Rows | None = None,
) -> Inputs:
    """Return Inputs holding ``tables`` of ``snap`` (the others empty), filters pushed down.

    ``rows``: only these events (and their steps and modified properties) are read.

    ``lazy``: each table is read the first time it is used (once for all copies), so a report
    answered from the derived model alone reads no canonical table; ``con`` must then stay open
    while the inputs are used (reports.service asks the whole question inside it).
    """

    def reader(table: str) -> Callable[[], pd.DataFrame]:
        return lambda: read_table(con, snap, table, (columns or {}).get(table), filters, rows)

    def scan(table: str) -> Callable[[], Scan | None]:
        return lambda: scan_table(con, snap, table, (columns or {}).get(table), filters, rows)

    wanted = dict.fromkeys(tables)
    inputs = Inputs.lazy({t: reader(t) for t in wanted}, {t: scan(t) for t in wanted})
    if not lazy:
        for t in dict.fromkeys(tables):
            inputs.table(t)
    return inputs


# --- the derived model, once per version ---------------------------------------------------


def derived_dir(store: Store, version: int) -> Path:
    """Return where the model of ``version`` is kept."""
    # The model format is part of the name: a model written by other code is never read.
    return model_dir(store.path, version)


def _kept_files() -> list[str]:
    from reports.model_sql import USER_FILES

    return [f"{p}.parquet" for p in (*PARTS, *ROW_PARTS, *USER_FILES)]


def load_model(store: Store, version: int) -> Model | None:
    """Return the model kept for ``version``, or None when it was not (completely) written."""
    root = derived_dir(store, version)
    if not (root / "complete").exists():
        return None
    if not all((root / f).exists() for f in _kept_files()):
        return None

    return _model_at(root)


def _model_at(root: Path) -> Model:
    """Return the model kept at ``root`` (complete or being written)."""

    def read(part: str, columns: Sequence[str] | None) -> pd.DataFrame:
        frame: pd.DataFrame = pq.read_table(root / f"{part}.parquet", columns=columns).to_pandas()
        return frame

    files = {p: str(root / f"{p}.parquet") for p in (*PARTS, *ROW_PARTS)}
    return Model(loader=read, root=root, files=files)


def keep_answers(con: duckdb.DuckDBPyConnection, snap: Snapshot, root: Path) -> None:
    """Keep unfiltered answers with the model at ``root``, each report's own build over every
    row of ``snap`` read as the service reads them: the whole answer of reports.model.
    KEPT_ANSWERS, and the small SQL answers of reports.model.ASKED_AT_BUILD (reports.sql).
    Written where later asks find the model, each file atomically (a reader meanwhile finds
    an answer whole, or none and computes it)."""
    from reports import REPORTS
    from reports.service import answer_with
    from reports.sql import recording_answers

    def ask(name: str) -> ReportResult:
        # As an unfiltered `provlens report NAME` asks it.
        return answer_with(con, snap, _model_at(root), name, Filters())

    with recording_answers():
        for name in ASKED_AT_BUILD:
            t0 = time.perf_counter()
            ask(name)
            log.info("answers of %s kept in %.1f s", name, time.perf_counter() - t0)
    for name in KEPT_ANSWERS:
        rows = [snap.manifest.rows.get(t, 0) for t in REPORTS[name].tables]
        if max(rows, default=0) > KEPT_ANSWER_ROWS:
            continue
        t0 = time.perf_counter()
        result = ask(name)
        if result.frame is None or result.data or result.hidden_noise:
            continue  # only a frame is kept
        target = answer_file(root, name)
        written = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        table = pa.Table.from_pandas(result.frame, preserve_index=False)
        pq.write_table(table, written, compression="zstd")
        # Kept only when it reads back as the very frame (values and dtypes).
        try:
            pd.testing.assert_frame_equal(read_frame(written), result.frame)
        except AssertionError as exc:
            written.unlink()
            log.warning("answer of %s not kept: it reads back otherwise (%s)", name, exc)
            continue
        written.replace(target)
        log.info("kept answer %s written in %.1f s", name, time.perf_counter() - t0)


MODEL_MEMORY: Final = "800MB"  # DuckDB's limit while building a model: beyond it, it spills
# Without PROVLENS_MODEL_MEMORY, a build statement that runs out of memory under one limit is run
# again under the next (a 10M-event store's one-user index needs more than 800 MB): a larger
# store costs more memory, not an error, nor the statements already done.
MODEL_MEMORY_STEPS: Final = (MODEL_MEMORY, "2GB", "4GB")
MODEL_MEMORY_ENV: Final = "PROVLENS_MODEL_MEMORY"  # one fixed limit, e.g. 2GB
PARQUET: Final = "FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1"


def model_memory() -> str:
    """Return the first memory limit of a model build (``PROVLENS_MODEL_MEMORY``, else
    MODEL_MEMORY)."""
    return model_memory_steps()[0]


def model_memory_steps() -> tuple[str, ...]:
    """Return the limits a model build tries in turn: the one set, else MODEL_MEMORY_STEPS."""
    fixed = os.environ.get(MODEL_MEMORY_ENV, "").strip()
    return (fixed,) if fixed else MODEL_MEMORY_STEPS


def model_connection(spill: Path, memory: str | None = None) -> duckdb.DuckDBPyConnection:
    """Return a DuckDB connection for building a model: bounded memory, its steps' tables in a
    database file under ``spill`` and spilling there too (removed after the build)."""
    con = duckdb.connect(
        str(spill / "model.duckdb"),
        config={
            "threads": 2,
            "memory_limit": memory or model_memory(),
            "temp_directory": str(spill),
            "preserve_insertion_order": False,
        },
    )
    con.execute("SET TimeZone = 'UTC'")
    return con


class MemoryLimits:
    """The memory limits of one model build (:func:`model_memory_steps`, the first in force).

    A statement that runs out of memory under one limit is run again under the next, set in
    place on every open connection of the build (``SET memory_limit``): what ran before it
    stays done. Beyond the last limit the build fails with a line saying how to raise it.
    """

    def __init__(self, store: Path, steps: Sequence[str]) -> None:
        self._store = store
        self._steps = tuple(steps)
        self._at = 0
        self._open: list[duckdb.DuckDBPyConnection] = []

    @property
    def memory(self) -> str:
        """The limit in force."""
        return self._steps[self._at]

    def connect(self, spill: Path) -> duckdb.DuckDBPyConnection:
        """Return a :func:`model_connection` under the limit in force (raised with the rest)."""
        con = model_connection(spill, self.memory)
        self._open.append(con)
        return con

    def close(self, con: duckdb.DuckDBPyConnection) -> None:
        """Close ``con``, one of :meth:`connect`'s."""
        self._open.remove(con)
        con.close()

    def run(self, statement: Callable[[], T]) -> T:
        """Return ``statement()``, run again under each larger limit while memory runs out
        (``statement`` must be one that can run again: CREATE OR REPLACE, COPY, a query)."""
        while True:
            try:
                return statement()
            except duckdb.OutOfMemoryException:
                self._raise_limit()

    def execute(self, con: duckdb.DuckDBPyConnection, sql: str) -> None:
        """Execute ``sql`` on ``con`` (see :meth:`run`)."""
        self.run(lambda: con.execute(sql))

    def _raise_limit(self) -> None:
        if self._at + 1 >= len(self._steps):
            raise UsageError(
                f"{self._store}: building the derived model needs more than {self.memory} "
                f"of memory; set {MODEL_MEMORY_ENV} higher (e.g. 8GB) and ask again"
            ) from None
        larger = self._steps[self._at + 1]
        log.warning(
            "%s: building the derived model needs more than %s of memory; going on with %s",
            self._store,
            self.memory,
            larger,
        )
        self._at += 1
        for con in self._open:
            con.execute(f"SET memory_limit = {_quote(larger)}")


def build_model(snap: Snapshot, root: Path | None) -> dict[str, pd.DataFrame]:
    """Compute the model of ``snap`` in SQL over its parts (reports.model_sql).

    With ``root``, each part is written straight to ``root/<part>.parquet`` (nothing is held in
    memory; an empty mapping is returned); without, the parts are returned as frames. A
    statement that runs out of memory is run again under the next of
    :func:`model_memory_steps` (:class:`MemoryLimits`).
    """
    return _build_model(snap, root, MemoryLimits(snap.store.path, model_memory_steps()))


def _build_model(
    snap: Snapshot, root: Path | None, limits: MemoryLimits
) -> dict[str, pd.DataFrame]:
    """Compute the model of ``snap`` once, under DuckDB memory ``limits``."""
    from reports.cycles import _empty
    from reports.model_sql import VIEW_COLUMNS as VIEWS
    from reports.model_sql import store_views

    tables = [t for t in dict.fromkeys(t for p in PARTS for t in PART_TABLES[p]) if t in VIEWS]
    spill = Path(tempfile.mkdtemp(prefix="provlens-model-"))
    con = limits.connect(spill)
    out: dict[str, pd.DataFrame] = {}
    files = {t: snap.files(t) for t in tables}
    try:
        limits.run(lambda: store_views(con, files, tables, ("events", "group_members")))
        for name in ("noise", "timeline", "groups", "matches", "objects", "facts", "app_scope"):
            t0 = time.perf_counter()
            sql = limits.run(partial(part_query, con, name))
            if root is not None:
                target = _quote(str(root / f"{name}.parquet"))
                # The timeline in small row groups: a time range reads only those in range.
                size = f", ROW_GROUP_SIZE {TIMELINE_ROW_GROUP}" if name == "timeline" else ""
                limits.execute(con, f"COPY ({sql}) TO {target} ({PARQUET}{size})")
                if name == "noise":
                    con.execute(
                        "CREATE OR REPLACE TEMP VIEW noise AS "  # noqa: S608 (a quoted path)
                        f"SELECT * FROM read_parquet({target})"
                    )
            else:
                got = limits.run(partial(_arrow, con, sql))
                out[name] = typed_part(name, got.to_pandas())
                if name == "noise":
                    con.register("noise", out["noise"][["event_id", "excluded_by", "noise"]])
            log.info("model part %s computed in %.1f s", name, time.perf_counter() - t0)
        t0 = time.perf_counter()
        _write_recent_failures(con, snap, root, out)
        log.info("model part recent_failures computed in %.1f s", time.perf_counter() - t0)
        jobs = read_table(con, snap, "sync_jobs")
        cycles = limits.run(lambda: cycles_frame(con, jobs)) if snap.files("events") else _empty()
        if root is not None:
            _write_user_copies(con, snap, root, limits)
            _write_kept_rows(snap, root, spill, limits)
    except duckdb.IOException as exc:
        if "No such file" in str(exc) or "not exist" in str(exc) or "No files found" in str(exc):
            raise PartVanished(str(exc)) from None
        raise
    finally:
        limits.close(con)
        shutil.rmtree(spill, ignore_errors=True)
    if root is not None:
        pq.write_table(
            pa.Table.from_pandas(cycles, preserve_index=False),
            root / "cycles.parquet",
            compression="zstd",
        )
    else:
        out["cycles"] = cycles
    return out


def _write_recent_failures(
    con: duckdb.DuckDBPyConnection,
    snap: Snapshot,
    root: Path | None,
    out: dict[str, pd.DataFrame],
) -> None:
    """Keep recent-failures' own answer over every event of ``snap`` (its newest KEPT groups),
    its SQL over the events read in place as the service reads them (reports.recent_failures).
    """
    from reports.recent_failures import KEPT, recent_sql
    from reports.sql import frame_of, over_arrow

    sql = recent_sql(Filters(), KEPT)
    query = table_query(snap, "events", None, Filters(), ordered=True)
    if query is None:
        result = over_arrow(Inputs(), sql, ["events"])
    else:
        events, params = query
        own = connect()  # the build's connection holds the model's own ``events``
        try:
            own.register("events", own.sql(events, params=params))  # this connection's view
            result = own.sql(sql).to_arrow_table()
        finally:
            own.close()
    if root is not None:
        pq.write_table(result, root / "recent_failures.parquet", compression="zstd")
    else:
        out["recent_failures"] = frame_of(result)


def _write_user_copies(
    con: duckdb.DuckDBPyConnection, snap: Snapshot, root: Path, limits: MemoryLimits
) -> None:
    """Write the one-user access path beside the model (reports.model_sql "one user's access
    path"). The copies keep stored order (no sort of the wide rows); only the narrow lookups
    are sorted. Reads the kept noise and matches."""
    from reports import model_sql as ms

    tables = tuple(ms.USER_COPIES)
    ms.store_views(con, {t: snap.files(t) for t in tables}, tables, full=True)
    con.execute("SET preserve_insertion_order = true")  # stored order, and the clustering
    t0 = time.perf_counter()
    limits.execute(con, f"CREATE OR REPLACE TABLE ukeys AS {ms.user_keys_sql()}")
    limits.execute(
        con,
        "CREATE OR REPLACE TABLE req AS "
        "SELECT request_id, resource_id, external_id, user_name, _pos FROM full_scim_requests",
    )
    matches = _quote(str(root / "matches.parquet"))
    view = f"CREATE OR REPLACE TEMP VIEW matches AS SELECT * FROM read_parquet({matches})"  # noqa: S608
    con.execute(view)
    objects = _quote(str(root / "objects.parquet"))
    limits.execute(
        con,
        "CREATE OR REPLACE TABLE obj AS SELECT * EXCLUDE (file_row_number), "  # noqa: S608
        f"file_row_number AS _row FROM read_parquet({objects}, file_row_number = true)",
    )
    log.info("one-user keys read in %.1f s", time.perf_counter() - t0)
    files = {
        ms.USER_NAMES: ms.user_names_sql(),
        ms.USER_INDEX: ms.user_index_sql(),
        ms.USER_REQUEST_INDEX: ms.user_request_index_sql(),
        **{name: f"SELECT * FROM full_{t}" for t, name in ms.USER_COPIES.items()},  # noqa: S608
        ms.USER_OBJECTS: "SELECT * FROM obj ORDER BY _row",
        ms.USER_OBJECT_NAMES: ms.user_object_names_sql(),
    }
    for name, sql in files.items():
        target = _quote(str(root / f"{name}.parquet"))
        t0 = time.perf_counter()
        copy = f"COPY ({sql}) TO {target} ({PARQUET}, ROW_GROUP_SIZE {ms.USER_ROW_GROUP})"
        limits.execute(con, copy)
        log.info("one-user %s written in %.1f s", name, time.perf_counter() - t0)
    for table in ("ukeys", "req", "obj"):
        con.execute(f"DROP TABLE {table}")


def _arrow(con: duckdb.DuckDBPyConnection, sql: str) -> pa.Table:
    return con.sql(sql).to_arrow_table()


def _no_nulls(con: duckdb.DuckDBPyConnection, table: str, key: str) -> bool:
    """Return True when no row of ``table`` lacks ``key``."""
    return bool(con.sql(f"SELECT count(*) FROM {table} WHERE {key} IS NULL").fetchall()[0][0] == 0)  # noqa: S608


def _write_kept_rows(snap: Snapshot, root: Path, spill: Path, limits: MemoryLimits) -> None:
    """Write the rows reports answer unfiltered (reports.model.ROW_PARTS) beside the model, by
    the reports' own SQL over every stored event and request (as the service reads them: each
    row's ``_row`` its stored position) and the kept noise and matches; in their order."""
    from reports import correlation, coverage, users
    from reports import model_sql as ms
    from reports.export import keep_json_text
    from reports.sql import StoredRows

    own = spill / "rows"
    own.mkdir()
    con = limits.connect(own)
    try:
        con.execute("SET preserve_insertion_order = true")  # the rows' order is the answer's
        tables = ("events", "scim_requests")
        ms.store_views(con, {t: snap.files(t) for t in tables}, tables, full=True)
        for table in tables:
            con.execute(
                f"CREATE OR REPLACE TEMP VIEW {table} AS "  # noqa: S608 (identifiers)
                f"SELECT * EXCLUDE (_pos), _pos AS _row FROM full_{table}"
            )
        files = {part: str(root / f"{part}.parquet") for part in ("matches", "noise")}
        con.execute(
            "CREATE OR REPLACE TEMP VIEW noise_ids AS "  # noqa: S608 (a quoted path)
            f"SELECT event_id FROM read_parquet({_quote(files['noise'])}) WHERE noise"
        )
        unique = {
            table: limits.run(partial(_no_nulls, con, table, key))
            for table, key in (("events", "id"), ("scim_requests", "request_id"))
        }
        # Whole queries (their ORDER BY outermost): users' rows keep their helper columns.
        queries = {
            name: users.stored_users_sql(Filters(), shown)
            for shown, name in users.KEPT_ROWS.items()
        }
        queries[correlation.KEPT_ROWS] = correlation.kept_rows_sql(
            files, unique["scim_requests"], unique["events"]
        )
        for name, sql in queries.items():
            t0 = time.perf_counter()
            target = _quote(str(root / f"{name}.parquet"))
            limits.execute(con, f"COPY ({sql}) TO {target} ({PARQUET})")
            log.info("kept rows %s written in %.1f s", name, time.perf_counter() - t0)
    finally:
        limits.close(con)
    # Each answered row's JSON, kept beside the rows: `report --format json` writes it back.
    answered = [
        StoredRows(str(root / f"{name}.parquet"), tuple(users.ROW_COLUMNS))
        for name in users.KEPT_ROWS.values()
    ]
    correlated = StoredRows(
        str(root / f"{correlation.KEPT_ROWS}.parquet"), tuple(correlation.COLUMNS)
    )
    answered.append(correlated)
    answered.append(coverage.kept_rows_at(str(root / "objects.parquet")))
    for rows in answered:
        t0 = time.perf_counter()
        keep_json_text(rows)
        took = time.perf_counter() - t0
        log.info("kept JSON of %s written in %.1f s", Path(rows.path).stem, took)
    # ... and of correlation's rows shown by default (noise hidden), on their own: its answer
    # is then read back as the users' is, with no mask to compute, and kept by a first ask as
    # a note naming it (ingest.kept.Keeper.text).
    t0 = time.perf_counter()
    keep_json_text(replace(correlated, where=correlation.NOISE_HIDDEN), subset=True)
    log.info("kept JSON of correlation without noise written in %.1f s", time.perf_counter() - t0)


def compute_model(con: duckdb.DuckDBPyConnection, snap: Snapshot) -> Model:
    """Return the model of ``snap``, built in SQL and kept beside the parts (atomically; older
    versions' models dropped). A store we may not write (read-only media, or none yet) keeps
    the model in memory only. ``con`` is the question's connection (the build has its own).
    """
    store, version = snap.store, snap.version
    if not store.exists():
        return Model(parts=build_model(snap, None))
    root = derived_dir(store, version)
    tmp = root.with_name(f".{root.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        build_model(snap, tmp)
        (tmp / "complete").write_text(f"{version}\n")
        try:
            os.replace(tmp, root)
        except OSError:  # another process kept the same version first: theirs is as good
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            # Asked where later asks find the model: SQL that names its files is the same SQL.
            # Answers are kept for speed only: a failure to write them loses none.
            try:
                keep_answers(con, snap, root)
            except OSError as exc:
                log.warning("%s: answers not kept with the derived model: %s", store.path, exc)
        for old in (store.path / DERIVED).glob("v*"):
            with contextlib.suppress(ValueError):
                kept, _, form = old.name[1:].partition(".m")
                # Older versions, and any version of another model format.
                if int(kept) < version - 1 or form != str(MODEL_FORMAT):
                    shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        log.info("derived model of %s kept in memory only: %s", store.path, exc)
        return Model(parts=build_model(snap, None))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    model = load_model(store, version)
    return model if model is not None else Model(parts=build_model(snap, None))


_models: OrderedDict[tuple[str, int], Model] = OrderedDict()
_models_lock = threading.Lock()


def model_for(con: duckdb.DuckDBPyConnection, snap: Snapshot) -> Model:
    """Return the model of ``snap``: from memory, else from beside the parts, else computed."""
    key = (str(snap.store.path.resolve()), snap.version)
    with _models_lock:
        if key in _models:
            _models.move_to_end(key)
            return _models[key]
    model = load_model(snap.store, snap.version)
    if model is None:
        t0 = time.perf_counter()
        model = compute_model(con, snap)
        log.info(
            "derived model of version %s computed in %.2f s", snap.version, time.perf_counter() - t0
        )
    with _models_lock:
        _models[key] = model
        while len(_models) > MODEL_CACHE_SIZE:
            _models.popitem(last=False)
    return model


def clear_model_cache() -> None:
    """Forget the models held in memory (those kept beside the parts stay)."""
    with _models_lock:
        _models.clear()
        _slices.clear()
        _key_rows.clear()


# --- one user's access path ----------------------------------------------------------------


@dataclass(frozen=True)
class SliceSnapshot(Snapshot):
    """A store version whose events, steps, modified properties and wiki requests are one
    user's rows (views of ``con``: :func:`user_slice`); the other tables are the parts'."""

    views: tuple[str, ...] = ()
    # The slice's frames as read (read_table): every question over the same rows reading a
    # table by the same SQL gets the one frame read first (shared read-only, as model parts).
    reads: Once | None = None
    register: Callable[[], None] | None = None  # registers the views (once) before a read

    def prepare(self) -> None:
        if self.register is not None:
            self.register()

    def source(self, table: str, ordered: bool = False) -> str | None:
        if table in self.views:
            return _ident(f"_user_{table}" + ("_ordered" if ordered else ""))
        return super().source(table, ordered)

    def stored_order(self, table: str) -> str:
        return "_pos" if table in self.views else super().stored_order(table)


@dataclass(frozen=True)
class UserSlice:
    """The rows one-user answers read about the objects a text names, and the model parts
    restricted to them (noise and matches of those rows, the objects the text may name)."""

    tables: dict[str, pa.Table]  # canonical columns and ``_pos``, in stored order
    model: Model
    derived: Once  # shared by every slice of the same rows (_KeyRows.derived)

    def snapshot(self, con: duckdb.DuckDBPyConnection, snap: Snapshot) -> SliceSnapshot:
        """Return ``snap`` reading these rows (views of ``con``, registered when first read:
        a question answered from frames read before registers nothing)."""
        done: list[bool] = []

        def register() -> None:
            if done:
                return
            for table, rows in self.tables.items():
                con.register(f"_user_{table}_rows", rows)
                con.execute(
                    f"CREATE OR REPLACE TEMP VIEW {_ident(f'_user_{table}_ordered')} AS "  # noqa: S608
                    f"SELECT * FROM {_ident(f'_user_{table}_rows')}"
                )
                con.execute(
                    f"CREATE OR REPLACE TEMP VIEW {_ident(f'_user_{table}')} AS "  # noqa: S608
                    f"SELECT * EXCLUDE (_pos) FROM {_ident(f'_user_{table}_rows')}"
                )
            done.append(True)

        return SliceSnapshot(snap.store, snap.manifest, tuple(self.tables), self.derived, register)


USER_SLICE_CACHE = 16
SEARCH_KEYS_MAX = 2000  # a search naming more objects reads the whole users table instead
# By model directory, kind and text; asked side by side (a deep link's search and diagnosis),
# the second waits for the first.
_slices = Once(USER_SLICE_CACHE)


def _in_list(column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
    if not values:
        return "FALSE", []
    return f"{column} IN ({', '.join('?' for _ in values)})", list(values)


def _kept(root: Path, name: str) -> str:
    return f"read_parquet({_quote(str(root / f'{name}.parquet'))})"


def user_slice(model: Model, user: str) -> UserSlice | None:
    """Return the rows of the objects ``user`` names (reports.users.match_user's superset, as
    :func:`one_user_rows`) from the model's one-user copies, or None for a model without them.

    The keys: those of the events naming ``user`` (model_sql.user_names_sql), and the principal
    ids of the objects whose id, UPN or name may equal it (estimate.when_user's match, case and
    Unicode folding left to it; the slice's objects part holds them). Kept in memory per model
    and text (a page asks several reports about one user).
    """
    from reports.model_sql import USER_NAMES, USER_OBJECT_NAMES, USER_OBJECTS

    root = model.root
    if root is None:
        return None
    wanted = user.strip().lower()

    def make() -> UserSlice:
        con = connect()
        try:
            found = con.sql(
                f"SELECT DISTINCT _key FROM {_kept(root, USER_NAMES)} WHERE name = ?",  # noqa: S608
                params=[wanted],
            ).fetchall()
            # Any object whose id, UPN or name lower-cases to the text, or holds non-ASCII
            # text (a null name in the lookup).
            rows = [
                r[0]
                for r in con.sql(
                    f"SELECT DISTINCT _row FROM {_kept(root, USER_OBJECT_NAMES)} "  # noqa: S608
                    "WHERE name = ? OR name IS NULL",
                    params=[wanted],
                ).fetchall()
            ]
            where, at = _in_list("_row", sorted(rows))
            objects = con.sql(
                f"SELECT * EXCLUDE (_row) FROM {_kept(root, USER_OBJECTS)} "  # noqa: S608
                f"WHERE {where} ORDER BY _row",
                params=at,
            ).to_arrow_table()
        finally:
            con.close()
        pids = [p for p in objects.column("principal_id").to_pylist() if p is not None]
        keys = {r[0] for r in found} | set(pids)
        return _slice_of(model, root, sorted(keys), objects.to_pandas())

    return _slices.get((str(root), "user", wanted), make)


def search_slice(model: Model, query: str) -> UserSlice | None:
    """Return the rows of every object one of whose events has an id, UPN or name containing
    ``query`` (any case; reports.users.search_users reads the latest of those values), or None
    when the search must read the whole users table: no kept copies, an empty query, one a
    null value's text ("None") contains, or more than SEARCH_KEYS_MAX objects."""
    from reports.model_sql import USER_NAMES

    root = model.root
    wanted = query.strip().lower()
    if root is None or not wanted or wanted in "none":
        return None

    def make() -> UserSlice | None:
        con = connect()
        try:
            # Non-ASCII names too: Python's lower() may differ from DuckDB's there.
            found = con.sql(
                f"SELECT DISTINCT _key FROM {_kept(root, USER_NAMES)} "  # noqa: S608
                "WHERE contains(name, ?) OR strlen(name) <> length(name) "
                f"LIMIT {SEARCH_KEYS_MAX + 1}",
                params=[wanted],
            ).fetchall()
        finally:
            con.close()
        if len(found) > SEARCH_KEYS_MAX:
            return None
        return _slice_of(model, root, sorted(r[0] for r in found), None)

    return _slices.get((str(root), "search", wanted), make)


@dataclass(frozen=True)
class _KeyRows:
    """The one-user copies' rows of some object keys, and their noise and matches (Arrow);
    ``derived``: what questions over these rows derive from them, each once (their frames as
    read, a user's timeline: Model.of_rows)."""

    tables: dict[str, pa.Table]
    noise: pa.Table
    matches: pa.Table
    derived: Once = field(default_factory=Once)


# By model directory and keys: a deep link by UPN, its search and the page's asks by the object
# key most often name the same objects, whose rows are then read once.
_key_rows = Once(USER_SLICE_CACHE)


def _slice_of(
    model: Model, root: Path, keys: Sequence[str], objects: pd.DataFrame | None
) -> UserSlice:
    """Return the one-user copies' rows of ``keys``, and the model restricted to them."""
    rows: _KeyRows = _key_rows.get((str(root), tuple(keys)), partial(_rows_of_keys, root, keys))

    def whole(name: str, columns: Sequence[str] | None) -> pd.DataFrame:
        return model.part(name) if columns is None else model.columns(name, columns)

    # As load_model reads kept parts (Arrow to pandas, no retyping); each slice its own frames.
    parts = {"noise": rows.noise.to_pandas(), "matches": rows.matches.to_pandas()}
    if objects is not None:
        parts["objects"] = objects
    return UserSlice(
        dict(rows.tables), Model(parts=parts, loader=whole, rows=rows.derived), rows.derived
    )


def _rows_of_keys(root: Path, keys: Sequence[str]) -> _KeyRows:
    """Read the one-user copies' rows of ``keys`` (their index rows first), with their noise
    and the model's matches of their requests."""
    from reports.model_sql import USER_COPIES, USER_INDEX, USER_REQUEST_INDEX

    cond, params = _in_list("_key", keys)
    tables: dict[str, pa.Table] = {}
    con = connect()
    try:
        # The keys' rows of the lookups (each key one or two row groups), one row per place.
        index, req_index = (
            con.sql(
                f"SELECT * EXCLUDE (_key) FROM {_kept(root, name)} WHERE {cond} "  # noqa: S608
                "QUALIFY row_number() OVER (PARTITION BY _pos) = 1 ORDER BY _pos",
                params=params,
            ).to_arrow_table()
            for name in (USER_INDEX, USER_REQUEST_INDEX)
        )
        places: dict[str, list[int]] = {
            "events": index.column("_pos").to_pylist(),
            "scim_requests": req_index.column("_pos").to_pylist(),
        }
        for table, lo, hi in (
            ("steps", "_st_lo", "_st_hi"),
            ("modified_properties", "_mp_lo", "_mp_hi"),
        ):
            spans = zip(index.column(lo).to_pylist(), index.column(hi).to_pylist(), strict=True)
            places[table] = sorted({p for a, b in spans if a is not None for p in range(a, b + 1)})
        for table, name in USER_COPIES.items():
            where, at = _in_list("_pos", places[table])
            tables[table] = con.sql(
                f"SELECT * FROM {_kept(root, name)} WHERE {where} ORDER BY _pos",  # noqa: S608
                params=at,
            ).to_arrow_table()
        con.register("ix", index)
        con.register("ev", tables["events"])
        noise = con.sql(
            "SELECT ev.id AS event_id, ix._noise AS noise, ix._noise_reason AS noise_reason, "
            "ix._excluded_by AS excluded_by FROM ix JOIN ev ON ev._pos = ix._pos "
            "WHERE ix._nz ORDER BY ix._pos"
        ).to_arrow_table()
        for table in ("steps", "modified_properties"):  # only the events' own rows
            con.register("ch", tables[table])
            tables[table] = con.sql(
                "SELECT * FROM ch WHERE event_id IN (SELECT id FROM ev) ORDER BY _pos"
            ).to_arrow_table()
            con.unregister("ch")
        con.register("rx", req_index)
        con.register("rq", tables["scim_requests"])
        # One match per request id; the matches part's order: its last copy's place.
        matches = con.sql(
            "SELECT rq.request_id, any_value(rx._match_event) AS event_id, "
            "any_value(rx._match_gap) AS gap_s FROM rx JOIN rq ON rq._pos = rx._pos "
            "WHERE rx._match_event IS NOT NULL GROUP BY rq.request_id ORDER BY max(rq._pos)"
        ).to_arrow_table()
    finally:
        con.close()
    return _KeyRows(tables, noise, matches)
