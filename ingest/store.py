"""The local store: Parquet parts per table, listed by one manifest replaced atomically.

Layout of a store directory::

    manifest.json          the committed state: parts per table, watermarks, ingest log, version
    parts/<table>/<seq>.parquet
    writer.lock            held by the one writer at a time (readers never lock)

A batch stages new parts, then commits by writing a new manifest to a temporary file and
``os.replace``-ing it over the old one, so a crash or a bad input mid-ingest leaves the previous
manifest, and so the previous state, readable. Keys are enforced at commit time: rows of older parts
that a batch supersedes are removed by rewriting those parts, so reads need no de-duplication.
Readers read the manifest, then its parts; a part replaced under them is retried with the new
manifest, so the dashboard can read while an ingest writes.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ingest import schema
from ingest.errors import UsageError

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
# Merge a table's parts into one when it has more than this many.
MAX_PARTS = 24
# Rows buffered in memory per table before they are written (events and their children: a row
# group of the table's open part while the batch stages every event once; else a part).
PART_ROWS = 250_000
ROW_GROUP_ROWS = 1_000_000  # rows per Parquet row group: the unit a commit reads and rewrites
INGEST_LOG_KEEP = 500


def _now_iso() -> str:
    return pd.Timestamp.now(tz="UTC").strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _fsync_write(path: Path, data: bytes) -> None:
    with path.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _arrow_schema(table: str) -> pa.Schema:
    types = {
        schema.TEXT: pa.string(),
        schema.TIME: pa.timestamp("us", tz="UTC"),
        schema.INT: pa.int64(),
        schema.FLOAT: pa.float64(),
        schema.BOOL: pa.bool_(),
    }
    return pa.schema([(c.name, types[c.kind]) for c in schema.TABLES[table].columns])


ARROW_SCHEMAS = {name: _arrow_schema(name) for name in schema.TABLES}


def to_arrow(table: str, df: pd.DataFrame | pa.Table) -> pa.Table:
    """Return ``df`` (any subset of the table's columns) as an Arrow table of the full schema;
    an Arrow table of exactly that schema is taken as it is."""
    if isinstance(df, pa.Table):
        if not df.schema.equals(ARROW_SCHEMAS[table]):
            raise ValueError(f"an Arrow {table} table must have the canonical schema")
        return df
    df = schema.conform(table, df)
    return pa.Table.from_pandas(df, schema=ARROW_SCHEMAS[table], preserve_index=False)


def to_pandas(table: str, tbl: pa.Table) -> pd.DataFrame:
    """Return an Arrow table of a canonical table as a pandas frame with the schema's dtypes."""
    df = tbl.to_pandas()
    for c in schema.TABLES[table].columns:
        if c.name in df.columns:
            want = schema.DTYPES[c.kind]
            if str(df[c.name].dtype) != want:
                df[c.name] = df[c.name].astype(want)
    return df


@dataclass
class Manifest:
    """The committed state of a store."""

    version: int = 0
    seq: int = 0
    parts: dict[str, list[str]] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    watermarks: dict[str, str] = field(default_factory=dict)
    ingests: list[dict[str, Any]] = field(default_factory=list)
    created_at: str = ""

    @classmethod
    def load(cls, root: Path) -> Manifest:
        path = root / MANIFEST
        try:
            raw = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            return cls()
        except orjson.JSONDecodeError as exc:
            raise UsageError(
                f"{path}: the store manifest is damaged ({exc}); restore it from a backup "
                "or point --store at a new directory"
            ) from None
        if raw.get("format") != FORMAT_VERSION:
            raise UsageError(
                f"{path}: store format {raw.get('format')!r} is not supported by this provlens "
                f"(expects {FORMAT_VERSION})"
            )
        return cls(
            version=raw["version"],
            seq=raw["seq"],
            parts=raw["parts"],
            rows=raw.get("rows", {}),
            watermarks=raw.get("watermarks", {}),
            ingests=raw.get("ingests", []),
            created_at=raw.get("created_at", ""),
        )

    def dump(self) -> bytes:
        return orjson.dumps(
            {
                "format": FORMAT_VERSION,
                "version": self.version,
                "seq": self.seq,
                "parts": self.parts,
                "rows": self.rows,
                "watermarks": self.watermarks,
                "ingests": self.ingests[-INGEST_LOG_KEEP:],
                "created_at": self.created_at,
            },
            option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS,
        )


class Store:
    """A provlens store directory (see the module docstring)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path).expanduser()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    @staticmethod
    def default_path() -> Path:
        """Return PROVLENS_STORE, else the platform's user data directory for provlens."""
        env = os.environ.get("PROVLENS_STORE")
        if env:
            return Path(env).expanduser()
        import platformdirs

        return Path(platformdirs.user_data_dir("provlens", appauthor=False)) / "store"

    # ---- reading -------------------------------------------------------------------------

    def manifest(self) -> Manifest:
        """Return the committed manifest (empty when the store does not exist yet)."""
        return Manifest.load(self.path)

    @property
    def version(self) -> int:
        """Number of commits so far; changes whenever the data does."""
        return self.manifest().version

    def exists(self) -> bool:
        """Whether anything was ever committed here."""
        return (self.path / MANIFEST).exists()

    def watermark(self, key: str) -> pd.Timestamp | None:
        """Return the watermark stored under ``key``, or None."""
        value = self.manifest().watermarks.get(key)
        return pd.Timestamp(value) if value else None

    def read_arrow(
        self,
        table: str,
        columns: Sequence[str] | None = None,
        filters: Any = None,
    ) -> pa.Table:
        """Return ``table`` as Arrow, with only ``columns`` and rows passing pyarrow ``filters``."""
        if table not in schema.TABLES:
            raise UsageError(f"unknown table {table!r}; tables: {', '.join(schema.TABLES)}")
        cols = list(columns) if columns is not None else None
        for attempt in range(5):
            manifest = self.manifest()
            files = [self.path / p for p in manifest.parts.get(table, [])]
            try:
                if not files:
                    empty = ARROW_SCHEMAS[table].empty_table()
                    return empty.select(cols) if cols is not None else empty
                tables = [_read_part(table, f, cols, filters) for f in files]
                return pa.concat_tables(tables) if len(tables) > 1 else tables[0]
            except FileNotFoundError:
                # A writer replaced a part after we read the manifest: read the new state.
                time.sleep(0.05 * (attempt + 1))
        raise UsageError(f"{self.path}: the store kept changing while being read; try again")

    def read(
        self,
        table: str,
        columns: Sequence[str] | None = None,
        since: pd.Timestamp | None = None,
        until: pd.Timestamp | None = None,
    ) -> pd.DataFrame:
        """Return ``table`` as a canonical frame; ``since``/``until`` filter its time column."""
        filters = None
        time_col = TIME_COLUMN.get(table)
        if time_col and (since is not None or until is not None):
            conds = []
            if since is not None:
                conds.append((time_col, ">=", pd.Timestamp(since).tz_convert("UTC")))
            if until is not None:
                conds.append((time_col, "<=", pd.Timestamp(until).tz_convert("UTC")))
            filters = conds
        # One chunk per column: row selection on a many-chunk column is slow in pandas.
        return to_pandas(table, self.read_arrow(table, columns, filters).combine_chunks())

    def info(self) -> dict[str, Any]:
        """Return path, row counts, time range, last ingest per source and on-disk size."""
        m = self.manifest()
        size = _disk_size(self.path)
        ranges: dict[str, tuple[str | None, str | None]] = {}
        for table, col in TIME_COLUMN.items():
            if not m.parts.get(table):
                continue
            tbl = self.read_arrow(table, [col])
            mm = pc.min_max(tbl.column(col))
            lo, hi = mm["min"].as_py(), mm["max"].as_py()
            ranges[table] = (
                _iso(lo) if lo is not None else None,
                _iso(hi) if hi is not None else None,
            )
        last: dict[str, dict[str, Any]] = {}
        for entry in m.ingests:
            last[entry["source"]] = entry
        return {
            "path": str(self.path),
            "version": m.version,
            "rows": {t: m.rows.get(t, 0) for t in schema.TABLES},
            "time_range": ranges,
            "last_ingest": last,
            "watermarks": dict(m.watermarks),
            "bytes": size,
        }

    # ---- writing -------------------------------------------------------------------------

    @contextlib.contextmanager
    def batch(self, source: str, detail: str = "") -> Iterator[Batch]:
        """Stage a batch of frames; commit all of it on normal exit, none of it on an exception."""
        self.path.mkdir(parents=True, exist_ok=True)
        lock_path = self.path / "writer.lock"
        with lock_path.open("a+") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                b = Batch(self, source, detail)
                b._clean_debris()
                try:
                    yield b
                except BaseException:
                    b._discard()
                    raise
                b._commit()
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


TIME_COLUMN = {
    "events": "activity_at",
    "sync_jobs": "captured_at",
    "scim_resources": "captured_at",
    "scim_requests": "received_at",
    "membership_changes": "changed_at",
}


def _iso(ts: Any) -> str:
    return pd.Timestamp(ts).tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class Batch:
    """Frames staged for one all-or-nothing commit (see Store.batch)."""

    def __init__(self, store: Store, source: str, detail: str) -> None:
        self.store = store
        self.source = source
        self.detail = detail
        self.base = store.manifest()
        self.token = uuid.uuid4().hex[:12]
        self._buffers: dict[str, list[pa.Table]] = {}
        # Last-copy-wins bookkeeping: the number of each add() call, the call that last staged
        # each event id, the call of each buffered child table and the last call in each part.
        self._adds = 0
        self._event_add: dict[str, int] = {}
        self._buffer_add: dict[str, list[int]] = {}
        self._part_add: dict[str, int] = {}
        # True while no event id was staged by two calls and no child row came before its
        # event: then no staged row is superseded and the checks above are skipped.
        self._simple = True
        # True while, besides, every call's event ids are distinct and its children are of its
        # own events: then no key of events or of their children is in two staged rows, and the
        # commit checks only the parts committed earlier.
        self._disjoint = True
        # While disjoint, the buffers of events and their children are appended to one open
        # part per table, a row group each: one part per table for a batch however large (no
        # compaction rewriting what was just written); rows of one part or of several are alike
        # to the commit then.
        self._open: dict[str, tuple[str, Path, pq.ParquetWriter]] = {}
        self._buffered: dict[str, int] = {}
        self._staged: dict[str, list[str]] = {}
        self._written: list[Path] = []
        self._replace: dict[str, set[str]] = {}
        self._watermarks: dict[str, str] = {}
        self._seq = self.base.seq
        self.added: dict[str, int] = {}

    # public API

    def add(self, frames: Mapping[str, pd.DataFrame | pa.Table]) -> None:
        """Stage canonical frames (any subset of columns; missing ones are null), or Arrow
        tables of a table's exact schema.

        A record staged again by a later call replaces the earlier copy with its own steps and
        modified properties: children staged before the latest copy of their event are dropped.
        """
        self._adds += 1
        parents: list[pa.ChunkedArray] = []
        event_ids: pa.ChunkedArray | None = None
        for table, df in frames.items():
            if table not in schema.TABLES:
                raise ValueError(f"unknown table {table!r}")
            if df is None or len(df) == 0:
                continue
            tbl = to_arrow(table, df)
            if table == "events":
                event_ids = tbl.column("id")
                ids = event_ids.to_pylist()
                if self._simple and not self._event_add.keys().isdisjoint(ids):
                    self._simple = False
                before = len(self._event_add)
                self._event_add.update(dict.fromkeys(ids, self._adds))
                self._disjoint &= len(self._event_add) - before == len(ids)
            elif schema.TABLES[table].mode == "child":
                parents.append(tbl.column("event_id"))
            self._buffers.setdefault(table, []).append(tbl)
            self._buffer_add.setdefault(table, []).append(self._adds)
            self._buffered[table] = self._buffered.get(table, 0) + tbl.num_rows
            self.added[table] = self.added.get(table, 0) + tbl.num_rows
        if self._simple and parents:
            # Children of this call's own events (the usual case) are checked in Arrow.
            own = pc.unique(event_ids) if event_ids is not None else None
            of_own = [
                own is not None and pc.all(pc.is_in(ids, value_set=own)).as_py() for ids in parents
            ]
            self._disjoint &= all(of_own)
            known = self._event_add.keys()
            self._simple = all(
                mine or set(ids.to_pylist()) <= known
                for mine, ids in zip(of_own, parents, strict=True)
            )
        self._disjoint &= self._simple
        if not self._disjoint:
            self._close_parts()  # parts written from now on hold what later calls may supersede
        if any(n >= PART_ROWS for n in self._buffered.values()):
            self._flush()

    def replace_groups(self, table: str, values: Sequence[str]) -> None:
        """Drop stored rows of ``table`` whose group key is in ``values`` (group-mode tables)."""
        if schema.TABLES[table].mode != "group":
            raise ValueError(f"{table} is not a group-mode table")
        self._replace.setdefault(table, set()).update(values)

    def set_watermark(self, key: str, value: pd.Timestamp) -> None:
        """Record a watermark, committed with the batch."""
        self._watermarks[key] = _iso(value)

    def mark(self) -> dict[str, Any]:
        """Return a savepoint: :meth:`rollback` to it drops everything staged after it."""
        self._close_parts()
        return {
            "buffers": {t: len(v) for t, v in self._buffers.items()},
            "staged": {t: len(v) for t, v in self._staged.items()},
            "written": len(self._written),
            "added": dict(self.added),
            "adds": self._adds,
        }

    def rollback(self, mark: Mapping[str, Any]) -> None:
        """Drop what was staged since ``mark`` (frames buffered or parts already written)."""
        for table in list(self._buffers):
            keep = mark["buffers"].get(table, 0)
            self._buffers[table] = self._buffers[table][:keep]
            self._buffer_add[table] = self._buffer_add[table][:keep]
            if not self._buffers[table]:
                del self._buffers[table]
        self._event_add = {k: v for k, v in self._event_add.items() if v <= mark["adds"]}
        self._buffered = {t: sum(x.num_rows for x in v) for t, v in self._buffers.items()}
        for table in list(self._staged):
            keep = mark["staged"].get(table, 0)
            self._staged[table] = self._staged[table][:keep]
            if not self._staged[table]:
                del self._staged[table]
        for path in self._written[mark["written"] :]:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        del self._written[mark["written"] :]
        self.added = dict(mark["added"])

    # internals

    def _part_path(self, table: str) -> str:
        self._seq += 1
        return f"parts/{table}/{self._seq:08d}-{self.token}.parquet"

    def _write(self, table: str, tbl: pa.Table | Iterator[pa.Table]) -> str:
        """Write a new part of ``table`` (fsynced, then renamed into place); ``tbl`` may be an
        iterator of Arrow tables of the table's schema, written one after another."""
        rel = self._part_path(table)
        path = self.store.path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        if isinstance(tbl, pa.Table):
            pq.write_table(tbl, tmp, compression="zstd", row_group_size=ROW_GROUP_ROWS)
        else:
            with pq.ParquetWriter(tmp, ARROW_SCHEMAS[table], compression="zstd") as writer:
                for piece in tbl:
                    writer.write_table(piece, row_group_size=ROW_GROUP_ROWS)
        with tmp.open("rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        self._written.append(path)
        return rel

    def _flush(self) -> None:
        # Events and their children are flushed together so a part's children match its events.
        for table in list(self._buffers):
            tables = self._buffers.pop(table)
            adds = self._buffer_add.pop(table)
            self._buffered.pop(table, None)
            if schema.TABLES[table].mode == "child":
                tables = [self._latest_children(t, n) for t, n in zip(tables, adds, strict=True)]
            tbl = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
            if self._disjoint and (table == "events" or schema.TABLES[table].mode == "child"):
                rel = self._append(table, tbl)
            else:
                rel = self._write(table, tbl)
                self._staged.setdefault(table, []).append(rel)
            self._part_add[rel] = max(self._part_add.get(rel, 0), *adds)

    def _append(self, table: str, tbl: pa.Table) -> str:
        """Write ``tbl`` as a row group of the table's open part (opened here if need be)."""
        if table not in self._open:
            rel = self._part_path(table)
            path = self.store.path / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            writer = pq.ParquetWriter(tmp, ARROW_SCHEMAS[table], compression="zstd")
            self._open[table] = (rel, tmp, writer)
            self._staged.setdefault(table, []).append(rel)
        rel, _, writer = self._open[table]
        writer.write_table(tbl, row_group_size=ROW_GROUP_ROWS)
        return rel

    def _close_parts(self) -> None:
        """Finish the open parts (fsynced, then renamed into place)."""
        for rel, tmp, writer in self._open.values():
            writer.close()
            with tmp.open("rb") as fh:
                os.fsync(fh.fileno())
            path = self.store.path / rel
            os.replace(tmp, path)
            self._written.append(path)
        self._open.clear()

    def _latest_children(self, tbl: pa.Table, add: int) -> pa.Table:
        """Drop child rows of ``add`` whose event was staged again by a later call."""
        if self._simple:
            return tbl
        ids = tbl.column("event_id").to_pylist()
        last = self._event_add
        keep = [last.get(i, 0) <= add for i in ids]
        return tbl if all(keep) else tbl.filter(pa.array(keep))

    def _discard(self) -> None:
        self._buffers.clear()
        for _, tmp, writer in self._open.values():
            with contextlib.suppress(Exception):
                writer.close()
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        self._open.clear()
        for path in self._written:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        log.info("batch discarded; the store keeps version %s", self.base.version)

    def _clean_debris(self) -> None:
        """Delete part files no manifest lists (left by a crashed writer); we hold the lock."""
        # A writer killed between writing its new manifest and renaming it leaves the temp file.
        for tmp in self.store.path.glob(f"{MANIFEST}.*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        parts_dir = self.store.path / "parts"
        if not parts_dir.exists():
            return
        listed = {p for parts in self.base.parts.values() for p in parts}
        for path in parts_dir.rglob("*"):
            if path.is_file() and path.relative_to(self.store.path).as_posix() not in listed:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    def _commit(self) -> None:
        self._flush()
        self._close_parts()
        if not self._staged and not self._replace and not self._watermarks:
            return
        new_parts: dict[str, list[str]] = {t: list(p) for t, p in self.base.parts.items()}
        obsolete: list[str] = []
        for table, staged in self._staged.items():
            if schema.TABLES[table].mode == "child":
                staged = [self._drop_superseded(rel, obsolete) for rel in staged]
                self._staged[table] = staged
            new_parts.setdefault(table, []).extend(staged)
        # Enforce keys table by table; children follow their re-ingested events.
        staged_events = self._staged_keys("events")
        for table, spec in schema.TABLES.items():
            if spec.mode == "child":
                if staged_events is not None:
                    self._resolve(table, new_parts, obsolete, replace=staged_events)
            elif table in self._staged or table in self._replace:
                replace = pa.array(sorted(self._replace.get(table, ())), pa.string())
                self._resolve(table, new_parts, obsolete, replace=replace)
        for table, parts in new_parts.items():
            if len(parts) > MAX_PARTS:
                new_parts[table] = [self._compact(table, parts)]
                obsolete.extend(parts)
        rows = {
            t: sum(pq.ParquetFile(self.store.path / p).metadata.num_rows for p in parts)
            for t, parts in new_parts.items()
        }
        m = Manifest(
            version=self.base.version + 1,
            seq=self._seq,
            parts={t: p for t, p in new_parts.items() if p},
            rows=rows,
            watermarks={**self.base.watermarks, **self._watermarks},
            ingests=[
                *self.base.ingests,
                {
                    "at": _now_iso(),
                    "source": self.source,
                    "detail": self.detail,
                    "added": dict(self.added),
                },
            ],
            created_at=self.base.created_at or _now_iso(),
        )
        tmp = self.store.path / f"{MANIFEST}.{self.token}.tmp"
        _fsync_write(tmp, m.dump())
        os.replace(tmp, self.store.path / MANIFEST)
        dir_fd = os.open(self.store.path, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        # Superseded parts are no longer listed; readers still holding the old manifest retry.
        for rel in obsolete:
            with contextlib.suppress(FileNotFoundError):
                (self.store.path / rel).unlink()
        log.info("committed store version %s: %s", m.version, self.added)

    def _drop_superseded(self, rel: str, obsolete: list[str]) -> str:
        """Rewrite a staged child part without rows whose event a later part re-staged."""
        if self._simple:
            return rel
        tbl = pq.read_table(self.store.path / rel)
        newest = self._part_add.get(rel, 0)
        last = self._event_add
        keep = [last.get(i, 0) <= newest for i in tbl.column("event_id").to_pylist()]
        if all(keep):
            return rel
        obsolete.append(rel)
        return self._write(rel.split("/")[1], tbl.filter(pa.array(keep)))

    def _key_array(self, table: str, tbl: pa.Table) -> pa.Array:
        key = schema.TABLES[table].key
        if len(key) == 1:
            return tbl.column(key[0]).cast(pa.string()).combine_chunks()
        parts = [tbl.column(k).cast(pa.string()).fill_null("\x00") for k in key]
        return pc.binary_join_element_wise(*parts, "\x1f").combine_chunks()

    def _resolve(
        self,
        table: str,
        parts: dict[str, list[str]],
        obsolete: list[str],
        replace: pa.Array | None = None,
    ) -> None:
        """Keep, for every key, only the rows of the newest part holding it.

        ``replace`` holds keys whose rows in parts committed earlier are dropped even when this
        batch has no rows for them (groups replaced by an empty pull; children of re-ingested
        events). Row-mode tables also drop repeats of a key inside one part, keeping the last.

        Parts committed earlier already hold each key once (every commit resolved them), so only
        this batch's keys can supersede rows there: they are checked against the batch's keys
        and ``replace``, and memory stays the batch's size however large the store grows.
        """
        spec = schema.TABLES[table]
        files = parts.get(table, [])
        staged = set(self._staged.get(table, []))
        seen = pa.array([], pa.string())
        kept: list[str] = []
        if self._disjoint and (table == "events" or spec.mode == "child"):
            # No key in two staged rows: the staged parts stand as they are, and the parts
            # committed earlier lose the rows of the staged events (children: ``replace``).
            committed = [rel for rel in files if rel not in staged]
            if committed and table == "events":
                seen = self._staged_keys("events")
            for rel in committed:
                kept.extend(self._without(table, rel, (seen, replace), obsolete))
            parts[table] = [*kept, *(rel for rel in files if rel in staged)]
            return
        for rel in reversed(files):
            if rel not in staged:
                # Committed earlier (each key once already): checked a row group at a time, so
                # a compacted part of tens of millions of rows is never read whole.
                kept.extend(self._without(table, rel, (seen, replace), obsolete))
                continue
            keys = self._key_array(
                table, pq.read_table(self.store.path / rel, columns=list(spec.key))
            )
            mask = pc.is_in(keys, value_set=seen) if len(seen) else None
            if spec.mode == "row":
                mask = _or(mask, _dup_not_last(keys))
            if mask is not None and pc.any(mask).as_py():
                keep = pc.invert(mask)
                tbl = _read_part(table, self.store.path / rel, None, None).filter(keep)
                obsolete.append(rel)
                if tbl.num_rows:
                    kept.append(self._write(table, tbl))
                keys = keys.filter(keep)
            else:
                kept.append(rel)
            if len(keys):
                seen = pa.concat_arrays([seen, pc.unique(keys)])
        parts[table] = list(reversed(kept))

    def _without(
        self,
        table: str,
        rel: str,
        drop: tuple[pa.Array | None, ...],
        obsolete: list[str],
    ) -> list[str]:
        """Return ``rel``, or the part rewritten without rows whose key is in any of ``drop``
        (none left: no part), reading and writing one row group at a time."""
        path = self.store.path / rel
        key = list(schema.TABLES[table].key)
        sets = [d for d in drop if d is not None and len(d)]
        if not sets:
            return [rel]
        pf = pq.ParquetFile(path)
        masks = []
        for i in range(pf.num_row_groups):
            keys = self._key_array(table, pf.read_row_group(i, columns=key))
            mask = pc.is_in(keys, value_set=sets[0])
            for other in sets[1:]:
                mask = pc.or_(mask, pc.is_in(keys, value_set=other))
            masks.append(pc.invert(mask))
        if not any(pc.any(pc.invert(m)).as_py() for m in masks):
            return [rel]
        obsolete.append(rel)
        if not any(pc.any(m).as_py() for m in masks):
            return []
        pieces = (
            piece.filter(keep) for piece, keep in zip(_part_pieces(table, path), masks, strict=True)
        )
        return [self._write(table, pieces)]

    def _staged_keys(self, table: str) -> pa.Array | None:
        files = self._staged.get(table)
        if not files:
            return None
        arrays = [
            self._key_array(table, pq.read_table(self.store.path / f, columns=["id"]))
            for f in files
        ]
        return pc.unique(pa.concat_arrays(arrays))

    def _compact(self, table: str, files: list[str]) -> str:
        """Write ``files`` as one part, a row group at a time (memory: one row group)."""
        return self._write(
            table, (piece for f in files for piece in _part_pieces(table, self.store.path / f))
        )


def _read_part(table: str, path: Path, columns: list[str] | None, filters: Any) -> pa.Table:
    """Read one part as the table's current schema: a column added since it was written is null."""
    want = ARROW_SCHEMAS[table]
    names = columns if columns is not None else want.names
    have = set(pq.read_schema(path).names)
    if have.issuperset(names):
        return pq.read_table(path, columns=names, filters=filters)
    tbl = pq.read_table(path, columns=[n for n in names if n in have], filters=filters)
    return _as_schema(table, tbl, names)


def _as_schema(table: str, tbl: pa.Table, names: list[str]) -> pa.Table:
    """Return ``tbl`` as columns ``names`` of the table's schema, a missing column null."""
    want = ARROW_SCHEMAS[table]
    have = set(tbl.column_names)
    arrays = [
        tbl.column(n) if n in have else pa.nulls(tbl.num_rows, want.field(n).type) for n in names
    ]
    return pa.Table.from_arrays(arrays, schema=pa.schema([want.field(n) for n in names]))


def _part_pieces(table: str, path: Path) -> Iterator[pa.Table]:
    """Yield one part, a row group at a time, as the table's current schema."""
    want = ARROW_SCHEMAS[table]
    pf = pq.ParquetFile(path)
    have = set(pf.schema_arrow.names)
    names = [n for n in want.names if n in have]
    for i in range(pf.num_row_groups):
        piece = pf.read_row_group(i, columns=names)
        yield piece if len(names) == len(want.names) else _as_schema(table, piece, want.names)


def _disk_size(path: Path) -> int:
    """Bytes of the files under ``path``; a file a writer removes meanwhile counts as gone."""
    total = 0
    for p in path.rglob("*") if path.exists() else ():
        with contextlib.suppress(FileNotFoundError):
            if p.is_file():
                total += p.stat().st_size
    return total


def _or(a: pa.Array | None, b: pa.Array | None) -> pa.Array | None:
    if a is None:
        return b
    if b is None:
        return a
    return pc.or_(a, b)


def _dup_not_last(keys: pa.Array) -> pa.Array | None:
    """Mask of rows whose key occurs again later in the same array."""
    n = len(keys)
    if n == 0:
        return None
    s = pd.Series(keys.to_pandas(), copy=False)
    dup = s.duplicated(keep="last")
    if not dup.any():
        return None
    return pa.array(dup.to_numpy())
