"""SQL over a report's tables: one coding of a rule serves test inputs and the store alike.

A report whose heavy step is an aggregate writes it once as DuckDB SQL. :func:`run` runs it over
frames (DuckDB reads their Arrow buffers without copying); :func:`over` runs it over the report's
inputs, where a stored table not read yet is scanned in place from its Parquet parts (filters,
rows and columns pushed down), so a million events never become a frame: pandas only sees the
small result.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

if TYPE_CHECKING:
    from reports import Filters, Inputs


# This process's DuckDB database (in memory): every question gets its own connection to it
# (a cursor: its own temporary views and registered frames, ~0.3 ms to open), where a database of
# its own per question cost ~25 ms to open (a page asking seven one-user answers opened a dozen).
_database: dict[int, duckdb.DuckDBPyConnection] = {}  # by process id: a fork opens its own
_database_lock = threading.Lock()


def connect() -> duckdb.DuckDBPyConnection:
    """Return a new connection for one question (close it after): UTC, two threads (the
    database's, shared by the process's questions), no progress bar."""
    pid = os.getpid()
    with _database_lock:
        base = _database.get(pid)
        if base is None:
            base = duckdb.connect(config={"threads": 2})
            base.execute("SET TimeZone = 'UTC'")
            _database.clear()
            _database[pid] = base
        con = base.cursor()
    con.execute("SET TimeZone = 'UTC'")
    return con


def frame_of(result: pa.Table) -> pd.DataFrame:
    """Return an Arrow result as a frame: text as pandas' ``str``, times as UTC microseconds."""
    out = result.to_pandas()
    for field in result.schema:
        if pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
            out[field.name] = out[field.name].astype("str")
        elif pa.types.is_timestamp(field.type):
            out[field.name] = pd.to_datetime(out[field.name], utc=True).astype(
                "datetime64[us, UTC]"
            )
    return out


def run(sql: str, **frames: pd.DataFrame) -> pd.DataFrame:
    """Return the result of ``sql`` over ``frames`` (each a table named by its keyword).

    Text comes back as pandas' ``str``, times as UTC ``datetime64[us, UTC]``.
    """
    con = connect()
    try:
        for name, frame in frames.items():
            con.register(name, pa.Table.from_pandas(frame, preserve_index=False))
        result = con.sql(sql).to_arrow_table()
    finally:
        con.close()
    return frame_of(result)


def _with_all_columns(table: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Return ``frame`` with the canonical columns it lacks added as typed nulls, as a stored
    table reads (a column written before it existed is null): in-memory inputs may omit them."""
    from ingest.schema import TABLES, empty_frame

    if table not in TABLES:
        return frame
    empty = empty_frame(table)
    missing = [c for c in empty.columns if c not in frame.columns]
    if not missing:
        return frame
    nulls = {c: empty[c].reindex(range(len(frame))).set_axis(frame.index) for c in missing}
    return frame.assign(**nulls)


# Answers of :func:`over` on stored tables, kept for the next question that asks the same SQL of
# the same rows (another report of the page, the CLI's next report in one process): part files
# are named once and never rewritten, so an answer cannot go stale. Only small answers are kept.
KEPT_ANSWERS = 256
KEPT_ROWS = 10_000
_kept: OrderedDict[tuple[Any, ...], pd.DataFrame] = OrderedDict()
_kept_lock = threading.Lock()
# Answers being computed: a second thread asking the same (two reports of a page computed side
# by side share quarantine-risk's counts) waits for the first instead of computing it again.
_computing: dict[tuple[Any, ...], threading.Event] = {}


def _answer_key(inputs: Inputs, sql: str, tables: Sequence[str]) -> tuple[Any, ...] | None:
    keys = []
    for table in tables:
        scan = inputs.scan(table)
        if scan is None or scan.key is None:
            return None
        keys.append(scan.key)
    return (sql, tuple(keys))


def over(inputs: Inputs, sql: str, tables: Sequence[str], **frames: pd.DataFrame) -> pd.DataFrame:
    """Return :func:`over_arrow`'s result as a frame (text as ``str``, times UTC).

    Over stored tables only (no ``frames``), a small answer is kept (``KEPT_ANSWERS``): the same
    SQL over the same rows is answered again from memory, as a copy.
    """
    key = None if frames else _answer_key(inputs, sql, tables)
    if key is None:
        return frame_of(over_arrow(inputs, sql, tables, **frames))
    while True:
        with _kept_lock:
            kept = _kept.get(key)
            if kept is not None:
                _kept.move_to_end(key)
                return kept.copy()
            other = _computing.get(key)
            if other is None:
                _computing[key] = threading.Event()
                break
        other.wait()  # then kept (or, when too large to keep or failed, computed here)
    try:
        out = frame_of(over_arrow(inputs, sql, tables))
        if len(out) <= KEPT_ROWS:
            with _kept_lock:
                _kept[key] = out.copy()
                while len(_kept) > KEPT_ANSWERS:
                    _kept.popitem(last=False)
    finally:
        with _kept_lock:
            _computing.pop(key).set()
    return out


# Small answers of :func:`over_arrow` on a store version's rows read in place, kept with the
# version's model (``answers/`` beside its parts): recorded while the model is built, by asking
# the reports unfiltered (reports.query.keep_answers), and read back by the same SQL over the same
# rows in any later process. A key is the SQL and the scans' own keys (files, filters, columns),
# as the in-memory answers above: another filter or another ``now`` in the SQL is another key.
_recording: ContextVar[bool] = ContextVar("recording_answers", default=False)


@contextmanager
def recording_answers() -> Iterator[None]:
    """Keep every small answer :func:`over_arrow` computes meanwhile with its model."""
    token = _recording.set(True)
    try:
        yield
    finally:
        _recording.reset(token)


def _answer_file(inputs: Inputs, sql: str, tables: Sequence[str]) -> Path | None:
    """Return where the model kept with ``inputs`` keeps this answer (None: no kept model)."""
    model = object.__getattribute__(inputs, "_model")
    root = getattr(model, "root", None)
    if root is None:
        return None
    key = _answer_key(inputs, sql, tables)
    if key is None:
        return None
    digest = hashlib.sha256(repr(key).encode()).hexdigest()[:32]
    return Path(root) / "answers" / f"{digest}.parquet"


def over_arrow(inputs: Inputs, sql: str, tables: Sequence[str], **frames: pd.DataFrame) -> pa.Table:
    """Return the result of ``sql`` over ``inputs``' ``tables`` (each named by its table name)
    and ``frames``; like :func:`run`, but a stored table not read yet is scanned in place.

    Each table has a ``_row`` column: a row's position in the frame the report would have
    read (ties broken as pandas' stable sorts break them). Declared reads apply. Over a store
    the SQL sees what the report would have read (the filters and rows pushed down at read, its
    declared columns): it must select the rest itself (e.g. :func:`filter_sql`), as over
    in-memory frames.
    """
    scans = {}
    for table in tables:
        scan = inputs.scan(table)
        if scan is None:
            frame = _with_all_columns(table, inputs.table(table))
            frames[table] = frame.assign(_row=np.arange(len(frame), dtype=np.int64))
        else:
            scans[table] = scan
    if not scans:
        con = connect()
        try:
            for name, frame in frames.items():
                con.register(name, pa.Table.from_pandas(frame, preserve_index=False))
            result: pa.Table = con.sql(sql).to_arrow_table()
        finally:
            con.close()
        return result
    kept = None if frames or len(scans) != len(tables) else _answer_file(inputs, sql, tables)
    if kept is not None and kept.exists():
        answer: pa.Table = pq.read_table(kept)
        return answer
    con = next(iter(scans.values())).con
    try:
        for table, scan in scans.items():
            # A view of this connection only (create_view would name it in the shared database).
            con.register(table, con.sql(scan.sql, params=list(scan.params)))
        for name, frame in frames.items():
            con.register(name, pa.Table.from_pandas(frame, preserve_index=False))
        result = con.sql(sql).to_arrow_table()
    except duckdb.IOException as exc:
        # A part replaced by a writer meanwhile: the question is asked again on the new version.
        raise FileNotFoundError(str(exc)) from None
    finally:
        for table in scans:
            con.execute(f'DROP VIEW IF EXISTS "{table}"')
        for name in frames:
            con.unregister(name)
    if kept is not None and _recording.get() and result.num_rows <= KEPT_ROWS:
        kept.parent.mkdir(exist_ok=True)
        tmp = kept.with_name(f"{kept.name}.{os.getpid()}.tmp")
        pq.write_table(result, tmp)
        tmp.replace(kept)
    return result


@dataclass(frozen=True)
class StoredRows:
    """Rows kept in a Parquet file (e.g. the derived model's, reports.model.ROW_PARTS): its
    ``columns`` of the rows ``where`` holds (SQL over those columns), in file order.

    A report may answer with them (ReportResult.of_rows): a writer then scans the file in place
    (:meth:`sql`, reports.export.write_json_rows) and the rows never sit whole in memory;
    :meth:`table` reads them as Arrow (for the frame)."""

    path: str
    columns: tuple[str, ...]
    where: str = "TRUE"
    # SQL of a column's value when it is not the stored column of its name (e.g. a null read
    # as false, as the frame the rows stand for has it).
    values: tuple[tuple[str, str], ...] = ()

    def sql(self) -> str:
        """Return the SQL selecting the rows (quoted path and identifiers only)."""
        given = dict(self.values)
        cols = ", ".join(
            given.get(c, '"' + c.replace('"', '""') + '"') + ' AS "' + c.replace('"', '""') + '"'
            for c in self.columns
        )
        return f"SELECT {cols} FROM read_parquet({literal(self.path)}) WHERE {self.where}"  # noqa: S608

    def text_path(self) -> str:
        """Return where each row's JSON text of these ``columns`` and ``values`` may be kept
        beside the file (reports.export.keep_json_text; every row, in file order): named by
        what the text holds, so text of other columns is never read for these."""
        return self._text_at(self.columns, self.values)

    def subset_text_path(self) -> str:
        """Return where the JSON text of only the rows ``where`` holds may be kept (as
        :meth:`text_path`; e.g. correlation's rows with noise hidden, kept with the model)."""
        return self._text_at(self.columns, self.values, self.where)

    def _text_at(self, *what: object) -> str:
        digest = hashlib.sha256(repr(what).encode()).hexdigest()[:16]
        stem = self.path[: -len(".parquet")] if self.path.endswith(".parquet") else self.path
        return f"{stem}.json-{digest}.parquet"

    def table(self) -> pa.Table:
        """Return the rows as Arrow (DuckDB's types, as the query that kept them gave)."""
        return self.table_of(None)

    def table_of(self, limit: int | None) -> pa.Table:
        """Return at most ``limit`` rows (None: all) as Arrow, as :meth:`table`."""
        con = connect()
        try:
            sql = self.sql() if limit is None else f"{self.sql()} LIMIT {int(limit)}"
            rows: pa.Table = con.sql(sql).to_arrow_table()
        finally:
            con.close()
        return rows


def stored_unique(inputs: Inputs, table: str) -> bool:
    """Return True when ``inputs`` read ``table`` from a store (not read into a frame yet) and
    no row lacks its key: a store keeps each key once (ingest.store, last copy wins), so its
    rows need no last copy picked. Counted where they lie; False for frames (may repeat)."""
    from ingest.schema import TABLES

    if inputs.scan(table) is None or len(TABLES[table].key) != 1:
        return False
    key = TABLES[table].key[0]
    sql = f'SELECT count(*) AS n FROM {table} WHERE "{key}" IS NULL'  # noqa: S608 (names)
    nulls = over_arrow(inputs, sql, [table])
    return int(nulls.column(0)[0].as_py()) == 0


def literal(value: object) -> str:
    """Return ``value`` (text or a timestamp) as an SQL literal."""
    if isinstance(value, pd.Timestamp):
        return f"TIMESTAMPTZ '{value.isoformat()}'"
    return "'" + str(value).replace("'", "''") + "'"


def filter_sql(filters: Filters, time_column: str | None = "activity_at") -> str:
    """Return ``filters`` as an SQL condition on events (Filters.apply_events; TRUE: none)."""
    conds = []
    if time_column is not None and filters.since is not None:
        conds.append(f"{time_column} >= {literal(filters.since)}")
    if time_column is not None and filters.until is not None:
        conds.append(f"{time_column} < {literal(filters.until)}")
    for column, values in filters.value_filters():
        if values:
            conds.append(f"{column} IN ({', '.join(literal(v) for v in values)})")
    return " AND ".join(conds) or "TRUE"
