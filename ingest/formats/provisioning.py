"""Provisioning log files: every JSON shape Microsoft ships them in.

Kinds:
- ``graph``: Graph list responses (``{"@odata.context", "value": [...], "@odata.nextLink"?}``),
  also several pages concatenated or one page per line (JSON Lines), and JSON Lines of records.
- ``portal_json``: the admin center's JSON download, a bare array of records.
- ``azure_monitor``: diagnostic-settings envelopes (``{"records": [...]}`` from a storage account,
  Event Hub captures, or one envelope per line).
- ``log_analytics``: ``AADProvisioningLogs`` exported as JSON (rows, or the query API's
  ``{"tables": [{"columns", "rows"}]}``) or CSV.

They share one reader: the document layer finds the records, and ingest.records reads each record
whatever its shape, so a file mixing shapes still ingests.
"""

from __future__ import annotations

import io
import os
import re
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pandas as pd

from ingest import jsonstream, records_direct, records_fast
from ingest.errors import BadInput
from ingest.formats import FileFormat, Frames, Options, Source, register
from ingest.records import records_to_frames

CHUNK = 20_000
# Records per group of a large file's chunks read by DuckDB: half a CHUNK, as one group is read
# ahead while the one before is finished (two in memory, as one CHUNK was).
GROUP_RECORDS = CHUNK // 2
# Page files read directly by DuckDB are gathered up to this many bytes per query.
DIRECT_BYTES = 64 << 20
_NOTHING = "nothing was stored"

_PROVISIONING_HINT = re.compile(
    r'"(activityDateTime|provisioningSteps|provisioningStatusInfo|provisioningAction|'
    r'ProvisioningSteps|ProvisioningStatusInfo|statusInfo)"|"category"\s*:\s*"ProvisioningLogs"|'
    r"AADProvisioningLogs",
    re.IGNORECASE,
)
_JSON_POS = re.compile(r"line (\d+) column (\d+)")


def _looks_json(source: Source) -> bool:
    head = source.head().lstrip()
    return head[:1] in ("{", "[")


def _raw_bytes(source: Source) -> bytes:
    if source.encoding == "utf-8":
        data = source.path.read_bytes()
        return data[3:] if data.startswith(b"\xef\xbb\xbf") else data
    return source.text().encode("utf-8")


def _json_error(source: Source, exc: orjson.JSONDecodeError, line_offset: int = 0) -> BadInput:
    msg = str(exc)
    m = _JSON_POS.search(msg)
    line = int(m.group(1)) + line_offset if m else line_offset + 1
    col = int(m.group(2)) if m else 0
    problem = msg.split(":")[0].strip() or "invalid JSON"
    if "unexpected end" in msg.lower() or "eof" in msg.lower():
        problem = "unexpected end of JSON (the file looks truncated)"
    return BadInput(f"{source.name}:{line}", f"{problem} (column {col})", _NOTHING)


def iter_documents(source: Source) -> Iterator[tuple[str, Any]]:
    """Yield ``(where, document)`` for one JSON document, JSON Lines, or concatenated documents."""
    data = _raw_bytes(source)
    try:
        yield f"{source.name}", orjson.loads(data)
        return
    except orjson.JSONDecodeError as exc:
        if not any(w in str(exc).lower() for w in ("trailing", "after document")):
            raise _json_error(source, exc) from None
    # Several documents: one per line (JSON Lines), or pretty-printed pages back to back.
    text = data.decode("utf-8")
    lines = text.splitlines()
    line_mode = True
    for line in lines:
        if not line.strip():
            continue
        try:
            orjson.loads(line)
        except orjson.JSONDecodeError:
            line_mode = False
        break
    if line_mode:
        for n, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                yield f"{source.name}:{n}", orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise _json_error(source, exc, line_offset=n - 1) from None
        return
    import json

    decoder = json.JSONDecoder()
    pos, length = 0, len(text)
    while True:
        while pos < length and text[pos].isspace():
            pos += 1
        if pos >= length:
            return
        at_line = text.count("\n", 0, pos) + 1
        try:
            doc, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise BadInput(
                f"{source.name}:{exc.lineno}",
                f"invalid JSON: {exc.msg} (column {exc.colno})",
                _NOTHING,
            ) from None
        except RecursionError:
            raise BadInput(
                f"{source.name}:{at_line}", "JSON nested too deeply to read", _NOTHING
            ) from None
        yield f"{source.name}:{at_line}", doc
        pos = end


def _la_table_rows(doc: dict[str, Any]) -> list[Any]:
    rows: list[Any] = []
    for table in doc.get("tables") or []:
        columns = table.get("columns") if isinstance(table, dict) else None
        body = table.get("rows", []) if isinstance(table, dict) else None
        if not isinstance(columns, list) or not isinstance(body, list):
            rows.append(table)  # not a query-API table: refused below as a record that is not one
            continue
        cols = [str(c.get("name")) if isinstance(c, dict) else str(c) for c in columns]
        rows.extend(dict(zip(cols, row)) if isinstance(row, list) else row for row in body)
    return rows


def _records_of(doc: Any) -> tuple[list[Any], str | None]:
    """Return the records a document holds and the origin they imply (None = caller's)."""
    if isinstance(doc, list):
        if doc and all(
            isinstance(d, dict) and "value" in d and isinstance(d["value"], list) for d in doc
        ):
            return [r for d in doc for r in d["value"]], None
        if doc and isinstance(doc[0], dict) and any(k.lower() == "timegenerated" for k in doc[0]):
            return doc, "log_analytics"
        return doc, None
    if isinstance(doc, dict):
        if isinstance(doc.get("value"), list):
            return doc["value"], None
        if isinstance(doc.get("records"), list):
            return doc["records"], None
        if isinstance(doc.get("tables"), list):
            return _la_table_rows(doc), "log_analytics"
        if any(k.lower() == "timegenerated" for k in doc):
            return [doc], "log_analytics"
        return [doc], None
    return [doc], None


def _frames_from_records(
    records: Iterable[tuple[str, Any]], origin: str, source: Source
) -> Iterator[Frames]:
    chunk: list[Any] = []
    places: list[str] = []
    for where, rec in records:
        chunk.append(rec)
        places.append(where)
        if len(chunk) >= CHUNK:
            yield records_to_frames(chunk, origin, locate=places.__getitem__)
            chunk, places = [], []
    if chunk:
        yield records_to_frames(chunk, origin, locate=places.__getitem__)


def parse_json(source: Source, options: Options) -> Iterator[Frames]:
    """Yield canonical frames from any JSON shape of provisioning records.

    Graph pages, bare arrays and JSON Lines of records stream: ingest.jsonstream splits them
    into chunks of records without parsing the whole document, and :func:`chunk_frames` reads
    each chunk. Other layouts (Log Analytics tables, arrays of pages, UTF-16 text) are read whole.
    """
    layout = stream_layout(source)
    if layout is None:
        yield from _parse_whole(source, options)
        return
    report = jsonstream.PROGRESS.get()
    found = False
    for chunk in jsonstream.iter_chunks(source.path, source._skip, layout, source.name, CHUNK):
        found = True
        yield chunk_frames(source, chunk, options.origin, options.columnar_min_records)
        if report is not None:
            report(chunk.consumed)
    if not found:
        raise BadInput(f"{source.name}:1", "the file holds no provisioning records", _NOTHING)


def stream_layout(source: Source) -> str | None:
    """How :func:`parse_json` would stream ``source`` (jsonstream layout), None: read whole."""
    if source.encoding != "utf-8":
        return None
    with source.path.open("rb") as fh:
        head = fh.read(jsonstream.HEAD_BYTES + source._skip)[source._skip :]
    return jsonstream.plan(head)


@dataclass
class _Held:
    source: Source
    chunk: jsonstream.Chunk
    rows: dict[str, int]  # the file's rows per table, filled as its records are read


_Page = tuple[Source, str, dict[str, int]]  # a page file, its layout, its rows per table


@dataclass
class _Group:
    """Records handed to the reader thread: page files or held chunks, and their DuckDB read
    (None: read here, when framed)."""

    pages: list[_Page]
    held: list[_Held]
    read: Future[Any] | None


_READER: ThreadPoolExecutor | None = None


def _reader() -> ThreadPoolExecutor:
    """The one thread reading groups ahead (its DuckDB connection is kept for the next group)."""
    global _READER
    if _READER is None:
        _READER = ThreadPoolExecutor(1, thread_name_prefix="provlens-read")
    return _READER


def _stop_reader() -> None:
    """End the reader thread once the records held are sent: its DuckDB connection and read
    buffer go with it, so no thread or connection outlives an ingest (a process that forks
    later, or waits, holds none)."""
    global _READER
    if _READER is not None:
        _READER.shutdown(wait=True)
        _READER = None


def _forget_reader() -> None:
    """In a forked child the reader thread does not exist: the next ingest starts its own."""
    global _READER
    _READER = None


os.register_at_fork(after_in_child=_forget_reader)


class Gather:
    """Several streamable JSON files read as one stream (paged dumps: one page per file).

    Records of consecutive files are gathered into chunks of up to ``GROUP_RECORDS`` records across
    file boundaries, so many small files cost one columnar read, not one read each. A gathered
    chunk gives exactly the frames its files give one by one: when the columnar engine declines
    it, a record in it is bad, or a record id repeats in it, its files' chunks are read one by one
    (:func:`chunk_frames`), as if never gathered; errors then name the first bad file as before.

    A full group's DuckDB read (``records_direct.read_pages``, or ``lines_to_tables`` for a
    large file's chunks: read and finished there, as the splitter keeps this thread busy) runs
    on a reader thread while the group before it is finished and written: one group ahead,
    its frames yielded in file order, so rows, counts and errors are those of reading in turn.
    """

    def __init__(self, options: Options) -> None:
        self.origin = options.origin
        self.columnar_min_records = options.columnar_min_records
        self.held: list[_Held] = []
        self.n = 0
        # Whole page files waiting for one direct DuckDB read (records_direct).
        self.pages: list[_Page] = []
        self.pages_bytes = 0
        self.ahead: deque[_Group] = deque()  # groups sent to the reader, oldest first

    def add(self, source: Source, layout: str, rows: dict[str, int]) -> Iterator[Frames]:
        """Read ``source``'s records; yield frames of every chunk that became full.

        ``rows`` (the file's rows per table) is filled when its records are framed.
        A BadInput of this file is raised after the files before it have been framed.
        """
        if layout == "pages" and source._skip == 0 and source.size <= records_direct.MAX_PAGE_BYTES:
            # A page file: read later, with its neighbours, by DuckDB itself.
            if self.held:
                yield from self._send_held()
            self.pages.append((source, layout, rows))
            self.pages_bytes += source.size
            if self.pages_bytes >= DIRECT_BYTES:
                yield from self._send_pages()
            return
        yield from self._send_pages()
        try:
            for chunk in self._chunks(source, layout):
                self.held.append(_Held(source, chunk, rows))
                self.n += len(chunk.lines)
                if self.n >= GROUP_RECORDS:
                    yield from self._send_held()
        except BadInput:
            yield from self.flush()
            raise

    @staticmethod
    def _chunks(source: Source, layout: str) -> Iterator[jsonstream.Chunk]:
        """The splitter's chunks of ``source``; BadInput when it holds no record."""
        report = jsonstream.PROGRESS.get()
        found = False
        path, skip, name = source.path, source._skip, source.name
        for chunk in jsonstream.iter_chunks(path, skip, layout, name, GROUP_RECORDS):
            found = True
            yield chunk
            if report is not None:
                report(chunk.consumed)
        if not found:
            raise BadInput(f"{source.name}:1", "the file holds no provisioning records", _NOTHING)

    def flush(self) -> Iterator[Frames]:
        """Yield the frames of the records held so far."""
        yield from self._send_pages()
        yield from self._send_held()
        yield from self._take(0)
        _stop_reader()

    def _send_pages(self) -> Iterator[Frames]:
        """Send the page files held to the reader (one DuckDB query); frame older groups."""
        pages, self.pages, self.pages_bytes = self.pages, [], 0
        if pages:
            paths = [s.path for s, _, _ in pages]
            self.ahead.append(_Group(pages, [], _reader().submit(records_direct.read_pages, paths)))
        yield from self._take(1)

    def _send_held(self) -> Iterator[Frames]:
        """Send the chunks held to the reader (when the columnar engine reads them); frame
        older groups."""
        held, self.held, self.n = self.held, [], 0
        if held:
            read = None
            if sum(len(h.chunk.lines) for h in held) >= self.columnar_min_records:
                # The records as JSON Lines, read by DuckDB with one parse and finished in Arrow.
                data = held[0].chunk.data
                if len(held) > 1:
                    data = bytearray(b"\n").join(h.chunk.data for h in held)
                # Read and finished on the reader thread: for one large file the splitter
                # keeps this thread the busier one.
                read = _reader().submit(records_direct.lines_to_tables, data, self.origin)
            self.ahead.append(_Group([], held, read))
        yield from self._take(1)

    def _take(self, keep: int) -> Iterator[Frames]:
        """Frame the groups sent, oldest first, until ``keep`` are left in flight."""
        while len(self.ahead) > keep:
            group = self.ahead.popleft()
            if group.pages:
                yield from self._page_frames(group)
            else:
                yield from self._held_frames(group.held, group.read)

    def _page_frames(self, group: _Group) -> Iterator[Frames]:
        """Frames of page files DuckDB read; when it could not read them exactly, the files are
        split one by one, as any other streamable file."""
        assert group.read is not None
        raw = group.read.result()
        read = None
        if raw is not None:
            read = records_direct.finish(raw, self.origin, self.columnar_min_records)
        del raw
        if read is None:
            yield from self._careful(group.pages)
            return
        tables, owner, parents = read
        counts = [rows for _, _, rows in group.pages]
        _count_owner(counts, "events", owner)
        for table, at in zip(("steps", "modified_properties"), parents, strict=True):
            _count_owner(counts, table, owner[at])
        yield tables

    def _careful(self, pages: list[_Page]) -> Iterator[Frames]:
        """The page files read through the splitter, in chunks of ``CHUNK`` records."""
        held: list[_Held] = []
        try:
            for source, layout, rows in pages:
                for chunk in self._chunks(source, layout):
                    held.append(_Held(source, chunk, rows))
                    if sum(len(h.chunk.lines) for h in held) >= CHUNK:
                        yield from self._held_frames(held, None)
                        held = []
        except BadInput:
            yield from self._held_frames(held, None)
            raise
        yield from self._held_frames(held, None)

    def _held_frames(self, held: list[_Held], read: Future[Any] | None) -> Iterator[Frames]:
        """Frames of held chunks: DuckDB's ``read`` of them when it read them exactly, else
        the chunks together through the line engine, else one by one."""
        if not held:
            return
        sizes = [len(h.chunk.lines) for h in held]
        direct = read.result() if read is not None else None
        if direct is not None:
            tables, _, (step_parent, prop_parent) = direct
            owner = np.repeat(np.arange(len(held)), sizes)
            counts = [h.rows for h in held]
            _count_owner(counts, "events", owner)
            _count_owner(counts, "steps", owner[step_parent])
            _count_owner(counts, "modified_properties", owner[prop_parent])
            yield tables
            return
        frames = self._together(held) if len(held) > 1 else None
        if frames is None:
            for h in held:
                one = chunk_frames(h.source, h.chunk, self.origin, self.columnar_min_records)
                _count(one, np.zeros(len(one["events"]), dtype=int), [h.rows])
                yield one
            return
        _count(frames, np.repeat(np.arange(len(held)), sizes), [h.rows for h in held])
        yield frames

    def _together(self, held: list[_Held]) -> Frames | None:
        n = sum(len(h.chunk.lines) for h in held)
        if n < self.columnar_min_records:
            return None
        owner = np.repeat(np.arange(len(held)), [len(h.chunk.lines) for h in held])
        first = np.concatenate([[0], np.cumsum([len(h.chunk.lines) for h in held])])
        names = [h.source.name for h in held]

        def where(i: int) -> str:
            k = int(owner[i])
            j = i - int(first[k])
            line, index = int(held[k].chunk.lines[j]), int(held[k].chunk.index[j])
            place = f"{names[k]}:{line}"
            return f"{place}: record {index}" if index else place

        data = bytearray(b"\n").join(h.chunk.data for h in held)
        try:
            frames = records_fast.lines_to_frames(data, self.origin, where)
        except BadInput:
            return None  # read one by one: the error then names the first bad file
        if frames is None or len(frames["events"]) != n:
            return None  # a repeated id: each file keeps its own last copy, as one by one
        return frames


def _count_owner(rows: list[dict[str, int]], table: str, owner: np.ndarray) -> None:
    """Add each file's rows of ``table`` (``owner``: the file of each row)."""
    for k, count in enumerate(np.bincount(owner, minlength=len(rows)).tolist()):
        if count:
            rows[k][table] = rows[k].get(table, 0) + count


def _count(frames: Frames, owner: np.ndarray, rows: list[dict[str, int]]) -> None:
    """Add each file's rows per table (``owner``: the file of each event row)."""
    ids = frames["events"]["id"]
    for table, df in frames.items():
        if df is None or df.empty:
            continue
        if table == "events":
            per = np.bincount(owner, minlength=len(rows))
        else:
            at = pd.Index(ids).get_indexer(df["event_id"])
            per = np.bincount(owner[at], minlength=len(rows))
        for k, count in enumerate(per.tolist()):
            if count:
                rows[k][table] = rows[k].get(table, 0) + count


def chunk_frames(
    source: Source, chunk: jsonstream.Chunk, origin: str, columnar_min_records: int
) -> Frames:
    """Frames of one chunk: the columnar engine for chunks of at least ``columnar_min_records``
    records it can read exactly, else the per-record engine (both read ingest.fieldmap)."""
    lines = chunk.lines.tolist()
    index = chunk.index.tolist()

    def where(i: int) -> str:
        place = f"{source.name}:{lines[i]}"
        return f"{place}: record {index[i]}" if index[i] else place

    if len(lines) >= columnar_min_records:
        frames = records_fast.lines_to_frames(chunk.data, origin, where)
        if frames is not None:
            return frames
    return _generic_chunk(source, chunk, origin)


def _generic_chunk(source: Source, chunk: jsonstream.Chunk, origin: str) -> Frames:
    """Parse a chunk record by record (every shape; exact error places)."""
    lines = chunk.lines.tolist()
    index = chunk.index.tolist()

    def where(i: int) -> str:
        place = f"{source.name}:{lines[i]}"
        return f"{place}: record {index[i]}" if index[i] else place

    records = []
    view = memoryview(chunk.data)
    at = 0
    for i in range(len(lines)):
        end = chunk.data.find(b"\n", at)
        end = len(chunk.data) if end < 0 else end
        try:
            records.append(orjson.loads(view[at:end]))
        except orjson.JSONDecodeError:
            raise _record_json_error(source, chunk, i, lines[i]) from None
        at = end + 1
    return records_to_frames(records, origin, locate=where)


def _record_json_error(source: Source, chunk: jsonstream.Chunk, i: int, line: int) -> BadInput:
    """Re-parse record ``i`` from the file itself so the error names its exact line."""
    start, end = int(chunk.starts[i]), int(chunk.ends[i])
    with source.path.open("rb") as fh:
        fh.seek(start)
        raw = fh.read(end - start)
    try:
        orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return _json_error(source, exc, line_offset=line - 1)
    return BadInput(f"{source.name}:{line}", "invalid JSON record", _NOTHING)


def _parse_whole(source: Source, options: Options) -> Iterator[Frames]:
    """Read the whole document(s) at once (the layouts the splitter does not stream)."""
    groups: dict[str, list[tuple[str, Any]]] = {}
    for where, doc in iter_documents(source):
        records, implied = _records_of(doc)
        origin = implied or options.origin
        bucket = groups.setdefault(origin, [])
        # A whole-file document has no line of its own: name the record, so errors have a place.
        many = len(records) > 1 or where == source.name
        for i, rec in enumerate(records):
            bucket.append((f"{where}: record {i + 1}" if many else where, rec))
    if not any(groups.values()):
        raise BadInput(f"{source.name}:1", "the file holds no provisioning records", _NOTHING)
    for origin, items in groups.items():
        yield from _frames_from_records(items, origin, source)


def _sniff_json(source: Source) -> bool:
    return _looks_json(source) and bool(_PROVISIONING_HINT.search(source.head()))


_ENVELOPE = re.compile(r'"category"\s*:\s*"ProvisioningLogs"', re.IGNORECASE)


def _sniff_envelope(source: Source) -> bool:
    return _looks_json(source) and bool(_ENVELOPE.search(source.head()))


def _sniff_graph(source: Source) -> bool:
    head = source.head().lstrip()
    return head.startswith("{") and _sniff_json(source)


def _sniff_portal(source: Source) -> bool:
    return source.head().lstrip().startswith("[") and _sniff_json(source)


# ---- Log Analytics CSV --------------------------------------------------------------------

_HEADER_UNIT = re.compile(r"\s*\[[^\]]*\]\s*$")


def _norm_header(h: str) -> str:
    return re.sub(r"[^a-z0-9]", "", _HEADER_UNIT.sub("", h).lower())


def _csv_header(source: Source) -> list[str]:
    first = source.head().splitlines()[0] if source.head() else ""
    import csv

    try:
        return next(csv.reader([first]))
    except (csv.Error, StopIteration):
        return []


def _sniff_la_csv(source: Source) -> bool:
    if _looks_json(source):
        return False
    names = {_norm_header(h) for h in _csv_header(source)}
    return "timegenerated" in names and bool(
        names & {"provisioningsteps", "provisioningstatusinfo", "resulttype", "cycleid"}
    )


def read_csv_text(source: Source) -> pd.DataFrame:
    """Read a CSV file as text columns, raising BadInput with the line of a malformed row."""
    try:
        return pd.read_csv(
            io.StringIO(source.text()), dtype=str, keep_default_na=False, na_values=[""]
        )
    except pd.errors.ParserError as exc:
        m = re.search(r"line (\d+)", str(exc))
        line = m.group(1) if m else "1"
        raise BadInput(f"{source.name}:{line}", f"malformed CSV: {exc}", _NOTHING) from None
    except pd.errors.EmptyDataError:
        raise BadInput(f"{source.name}:1", "the CSV file is empty", _NOTHING) from None


def parse_la_csv(source: Source, options: Options) -> Iterator[Frames]:
    """Yield frames from an AADProvisioningLogs CSV export."""
    df = read_csv_text(source)
    df.columns = [_HEADER_UNIT.sub("", c) for c in df.columns]
    if "timegenerated" not in {_norm_header(c) for c in df.columns}:
        found = ", ".join(repr(c)[:40] for c in list(df.columns)[:8])
        raise BadInput(
            f"{source.name}:1",
            f"not an AADProvisioningLogs CSV export: no TimeGenerated column (columns: {found})",
            _NOTHING,
        )
    rows = df.astype(object).where(df.notna(), None).to_dict("records")
    items = ((f"{source.name}:{i + 2}", r) for i, r in enumerate(rows))
    yield from _frames_from_records(items, "log_analytics", source)


TABLES = ("events", "steps", "modified_properties")

register(
    FileFormat(
        "graph",
        "Graph list response(s) of provisioning logs (JSON, JSON Lines)",
        _sniff_graph,
        parse_json,
        priority=60,
        tables=TABLES,
    )
)
register(
    FileFormat(
        "portal_json",
        "Admin center JSON download (a bare array of records)",
        _sniff_portal,
        parse_json,
        priority=61,
        tables=TABLES,
    )
)
register(
    FileFormat(
        "azure_monitor",
        "Azure Monitor diagnostic-settings / Event Hub envelopes",
        _sniff_envelope,
        parse_json,
        priority=58,
        tables=TABLES,
    )
)
register(
    FileFormat(
        "log_analytics",
        "AADProvisioningLogs export (JSON or CSV)",
        _sniff_la_csv,
        lambda s, o: parse_json(s, o) if _looks_json(s) else parse_la_csv(s, o),
        priority=55,
        tables=TABLES,
    )
)
