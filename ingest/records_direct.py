"""Graph page files read by DuckDB itself: one parse, no Python per record, no copies.

The paged-dump fast path of :class:`ingest.formats.provisioning.Gather`. One DuckDB query reads
many page files (``{"@odata.context", "value": [...]}``, one compact page per file) with the
structure :mod:`ingest.records_fast` generates from :mod:`ingest.fieldmap`, unnests ``value``
and extracts the same raw values as the line engine; :func:`finish_arrow` then gives the
canonical tables as Arrow, applying the field map's own rules (``fieldmap.norm_enum``,
``identity_type``, ``duration``, ``snake`` and the derived-column rules of
:func:`ingest.records.finish`) once per distinct value, so both engines share one coding of
every rule.

**Key casing.** The map's keys match in any casing. DuckDB reads them in any ASCII casing too
(``case_insensitive_keys``) and refuses an object holding one key in two casings (the
per-record engine would keep the first: such pages are declined). The details bags the map
looks into are read as objects of the keys it reads there (:data:`TREE`), so a bag that is no
object (a JSON text, a list: the per-record engine reads those) is refused too. What DuckDB
does not do is checked on the raw bytes, each with a pattern starting with one fixed byte (RE2
skips to it: ~20 ms for 64 MB, where one alternation of every other spelling of every key ran
at 0.5 GB/s): a letter of a key written as a ``\\u`` escape (Python reads it unescaped, DuckDB
matches keys as written) and a trailing comma (DuckDB accepts them, orjson does not). Duplicate
keys and values of the wrong type make DuckDB's reader fail.

Anything it cannot reproduce (such an escape, an Azure Monitor envelope, a page framing orjson would
refuse, a trailing comma, a record without id or time, a repeated id, too few records) makes
:func:`pages_to_tables` return None, and the caller reads those files the way it always did, so
rows and errors stay those of the per-record engine.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ingest import fieldmap as fm
from ingest import records_fast as rf
from ingest.records import STATUS, STEP_TYPE, _skip_reason, _upn_of
from ingest.store import ARROW_SCHEMAS
from ingest.times import parse_times

# Page files larger than this are left to the streaming splitter (DuckDB holds a page whole).
MAX_PAGE_BYTES = 16 << 20

# ---- generated from the field map ----------------------------------------------------------


# The map's paths, the keys it reads inside details bags included: DuckDB reads bags as objects
# (matching their keys in any casing, and refusing a bag that is no object, which the per-record
# engine may still read: a JSON text, a list).
TREE = rf._tree(bag_structs=True)


def _vocabulary() -> list[str]:
    """Every key the map reads outside free-form texts, spelled as the map spells it, and the
    envelope markers."""
    keys: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        for k, v in node.items():
            keys.append(k)
            if isinstance(v, dict):
                walk(v)

    walk(TREE)
    for fields in (fm.STEP_FIELDS, fm.PROPERTY_FIELDS):
        keys.extend(p for f in fields for p in f.paths)
    keys.extend((fm.STEPS_PATH, fm.PROPERTIES_PATH, "category", "operationName", "properties"))
    return list(dict.fromkeys(keys))


VOCABULARY = _vocabulary()
# Letters Python lower-cases to a letter of a key the map reads (any ASCII casing, and the Kelvin
# sign for k): DuckDB folds ASCII letters only, and matches keys as written (not unescaped).
_KEY_LETTERS = sorted(
    {c for k in VOCABULARY for c in k.lower() + k.upper()}
    | ({"\u212a"} if any("k" in k.lower() for k in VOCABULARY) else set())
)
# Raw bytes that make a page one DuckDB would read otherwise than the per-record engine: such a
# letter written as a \\u escape, the Kelvin sign itself (when a key has a k), a trailing comma,
# a bare NaN or Infinity (rf.NON_JSON_NUMBERS; the one after a comma shares the comma's pattern).
# Each pattern starts with one fixed byte, so RE2 looks for it with memchr (an alternation of
# patterns starting with different bytes runs at a sixth of the speed: it is tried at every byte).
DECLINE = [
    r"\\u(?i:" + "|".join(f"{ord(c):04x}" for c in _KEY_LETTERS) + ")",
    r",\s*(?:[\]}]|" + rf.NON_JSON_NUMBER + ")",
    *(p for p in rf.NON_JSON_NUMBERS if not p.startswith(",")),
    *(["".join(f"\\x{b:02x}" for b in "\u212a".encode())] if "\u212a" in _KEY_LETTERS else []),
]


def _record_columns() -> dict[str, str]:
    columns = {k: rf._sql_type(v) for k, v in TREE.items()}
    columns[fm.STEPS_PATH] = rf.COLUMNS[fm.STEPS_PATH]
    columns[fm.PROPERTIES_PATH] = rf.COLUMNS[fm.PROPERTIES_PATH]
    for marker in ("category", "operationName", "properties"):
        columns[marker] = "JSON"
    return columns


def _record() -> str:
    return "STRUCT(" + ", ".join(f'"{k}" {v}' for k, v in _record_columns().items()) + ")"


def _select() -> str:
    """The line engine's columns (without its recasing test) and whether the record is an Azure
    Monitor envelope (its markers, in any casing)."""
    select = rf._select(bag_structs=True)[0].split(", ([")[0]
    markers = " OR ".join(
        f'o."{m}" IS NOT NULL' for m in ("category", "operationName", "properties")
    )
    return f"{select}, ({markers}) AS envelope"


def _query() -> str:
    columns = rf._columns_sql({"value": f"{_record()}[]", "records": "JSON"})
    # A compact page is one line: newline_delimited reads it 3x faster than unstructured.
    # Only the generated structure is spliced in; the file names are bound as $files.
    return f"""
SELECT array_position($files, filename) - 1 AS _file, {_select()}, has_records
FROM (SELECT filename, unnest("value") AS o, "records" IS NOT NULL AS has_records
      FROM read_json($files, format='newline_delimited', records=true, filename=true,
                     case_insensitive_keys=true, columns={columns},
                     maximum_object_size={MAX_PAGE_BYTES}))
"""  # noqa: S608


QUERY = _query()


def _lines_query() -> str:
    return f"""
SELECT 0 AS _file, {_select()}, false AS has_records
FROM read_json($file, format='newline_delimited', records=true, case_insensitive_keys=true,
               columns={rf._columns_sql(_record_columns())},
               maximum_object_size={MAX_PAGE_BYTES}) o
"""  # noqa: S608


LINES_QUERY = _lines_query()
# The framing of a page, as strict as orjson and the splitter: odata members around one array.
_HEAD = re.compile(rb'\{(?:"@odata\.[A-Za-z]+":"[^"\\]*",)*"value":\[')
_TAIL = re.compile(rb'\](?:,"@odata\.[A-Za-z]+":(?:"[^"\\]*"|[0-9]+))*\}[ \t\r\n]*$')


def _plain_page(data: bytearray, start: int, stop: int) -> bool:
    """Whether ``data[start:stop]`` is one compact Graph page whose framing orjson and the
    splitter read as DuckDB does: ``{"@odata.*": "...", "value": [records], "@odata.*": ...}``."""
    if not _HEAD.match(data, start, stop):
        return False
    end = data.rfind(b"]", start, stop)
    if end < 0 or not _TAIL.match(data, end, stop):
        return False
    last = end - 1
    while last > start and data[last] in b" \t\r\n":
        last -= 1
    if data[last] not in b"}[":
        return False  # a trailing comma, or something else than a record
    # One line (a raw line break is whitespace outside strings): DuckDB reads one page per line.
    return data.find(b"\n", start, end) < 0 and data.find(b"\r", start, end) < 0


_local = threading.local()


def _forget_connections() -> None:
    """A forked child must not use a DuckDB connection its parent opened: it opens its own.
    The parent's are kept referenced, never closed here (closing one in the child crashes)."""
    global _local
    _inherited.append(_local)
    _local = threading.local()


_inherited: list[threading.local] = []
os.register_at_fork(after_in_child=_forget_connections)


def _connection() -> Any:
    con = getattr(_local, "con", None)
    if con is None:
        import duckdb

        # One thread: reads run on a reader thread beside the finishing and store writes of the
        # group before (ingest.formats.provisioning.Gather), which keeps the other core busy;
        # a second DuckDB thread costs more CPU and memory than it saves there.
        con = duckdb.connect(config={"preserve_insertion_order": True, "threads": 1})
        con.execute(rf._MACROS)
        _local.con = con
    return con


def _declined(raw: pa.Buffer) -> bool:
    """Whether ``raw`` holds bytes of :data:`DECLINE`."""
    return rf.holds(raw, DECLINE)


def _read_all(paths: Sequence[Path]) -> tuple[pa.Buffer, list[int]] | None:
    """The files' bytes in one buffer (one copy, from the OS) and where each starts; None when
    one is not a plain page (:func:`_plain_page`)."""
    sizes = [p.stat().st_size for p in paths]
    # The thread's buffer of the previous read, reused: fresh memory costs a page fault per 4 KB,
    # as much as the reading itself (its bytes beyond sum(sizes) are never looked at).
    buf = getattr(_local, "buf", None)
    if buf is None or len(buf) < sum(sizes):
        buf = _local.buf = bytearray(sum(sizes))
    view = memoryview(buf)[: sum(sizes)]
    starts, at = [], 0
    for p, size in zip(paths, sizes, strict=True):
        with p.open("rb", buffering=0) as fh:
            got = fh.readinto(view[at : at + size])
        if got != size or not _plain_page(buf, at, at + size):
            return None
        starts.append(at)
        at += size
    return pa.py_buffer(view), starts


# ---- running it -------------------------------------------------------------------------------


def pages_to_tables(
    paths: Sequence[Path], origin: str, min_records: int = 0
) -> tuple[dict[str, pa.Table], np.ndarray, list[np.ndarray]] | None:
    """Canonical Arrow tables of the page files ``paths`` read together, the file of each event
    and the event row of each child row per child table; None when any file must be read the
    careful way (see the module docstring)."""
    read = read_pages(paths)
    return None if read is None else finish(read, origin, min_records)


def read_pages(paths: Sequence[Path]) -> pa.Table | None:
    """The raw columns of the page files ``paths`` (one DuckDB read), for :func:`finish`; None
    when any file must be read the careful way. No Python runs per record and DuckDB and Arrow
    release the GIL, so this can run on a thread beside the finishing and the store writes of
    the files before."""
    if not paths or any(p.stat().st_size > MAX_PAGE_BYTES for p in paths):
        return None
    read = _read_all(paths)
    if read is None or _declined(read[0]):
        return None
    files = [str(p) for p in paths]
    out = _run(QUERY, {"files": files})
    if out is None or len(pc.unique(out.column("_file"))) != len(files):
        return None  # a file without records: the careful reader names it
    return out


def lines_to_tables(
    data: bytes | bytearray, origin: str, min_records: int = 0
) -> tuple[dict[str, pa.Table], np.ndarray, list[np.ndarray]] | None:
    """:func:`pages_to_tables` for records as JSON Lines (the splitter's chunks of one large
    file): one temporary copy, one DuckDB read."""
    read = read_lines(data)
    return None if read is None else finish(read, origin, min_records)


def read_lines(data: bytes | bytearray) -> pa.Table | None:
    """:func:`read_pages` for records as JSON Lines."""
    import tempfile

    if _declined(pa.py_buffer(data)):
        return None
    with tempfile.TemporaryDirectory(prefix="provlens-") as tmp:
        path = Path(tmp, "records.jsonl")
        path.write_bytes(data)
        return _run(LINES_QUERY, {"file": str(path)})


def _run(query: str, params: dict[str, Any]) -> pa.Table | None:
    """The query's rows; None when DuckDB refuses the JSON (duplicate keys, also in two
    casings; values of the wrong type)."""
    import duckdb

    try:
        return _connection().sql(query, params=params).to_arrow_table()
    except duckdb.Error:
        return None


def finish(
    tbl: pa.Table, origin: str, min_records: int = 0
) -> tuple[dict[str, pa.Table], np.ndarray, list[np.ndarray]] | None:
    """:func:`finish_arrow` of what :func:`read_pages` or :func:`read_lines` read; None when the
    per-record engine must read the records (see the module docstring)."""
    if tbl.num_rows < max(min_records, 1):
        return None  # no records (the careful reader names the file), or few
    if (
        pc.any(tbl.column("envelope")).as_py()
        or pc.any(tbl.column("has_records")).as_py()
        or rf.pa_sum(tbl.column("odd")) > 0
    ):
        return None
    ids = tbl.column("id")
    if pc.any(pc.match_substring_regex(ids, r"^(?:[\[{]|true$|false$|-?\d+\.)")).as_py():
        return None  # an id that was no string: the per-record engine names the record
    return finish_arrow(tbl, origin)


# ---- finishing: the rules of ingest.records.finish, on Arrow ----------------------------------


def _distinct_map(
    values: pa.ChunkedArray | pa.Array, fn: Callable[[Any], Any], typ: Any
) -> pa.Array:
    """``fn`` applied once per distinct non-null value (null stays null)."""
    values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    enc = pc.dictionary_encode(values)
    mapped = pa.array([fn(v) for v in enc.dictionary.to_pylist()], type=typ)
    return mapped.take(enc.indices)


def _durations(values: pa.Array) -> pa.Array:
    """:func:`ingest.fieldmap.duration` of each text: integers of up to 15 digits (exact as
    floats, as the rule reads them) cast at once, the function itself once per other value."""
    plain = pc.match_substring_regex(values, r"^-?[0-9]{1,15}$").fill_null(False)
    if not pc.all(pc.or_(plain, values.is_null())).as_py():
        rest = pc.if_else(plain, pa.scalar(None, pa.string()), values)
        return pc.coalesce(
            pc.if_else(plain, values, pa.scalar(None, pa.string())).cast(pa.int64()),
            _distinct_map(rest, fm.duration, pa.int64()),
        )
    return pc.if_else(plain, values, pa.scalar(None, pa.string())).cast(pa.int64())


def _blank_null(values: Any) -> pa.Array:
    """Text with "" as null."""
    values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    return pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values)


def _enum(values: Any, table: dict[Any, str]) -> tuple[pa.Array, pa.Array]:
    values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    enc = pc.dictionary_encode(values)
    pairs = [fm.norm_enum(v, table) for v in enc.dictionary.to_pylist()]
    canon = pa.array([p[0] for p in pairs], pa.string()).take(enc.indices)
    raw = pa.array([p[1] for p in pairs], pa.string()).take(enc.indices)
    # null input: ("unknown", None), as norm_enum(None)
    return pc.fill_null(canon, "unknown"), raw


def _first_per_parent(n: int, parents: np.ndarray, values: pa.Array) -> pa.Array:
    """For each of ``n`` events, the first non-null value among its children (in order)."""
    valid = np.flatnonzero(values.is_valid().to_numpy(zero_copy_only=False))
    if not len(valid):
        return pa.nulls(n, pa.string())
    p = parents[valid]
    first = np.unique(p, return_index=True)
    rows = np.full(n, -1, dtype=np.int64)
    rows[first[0]] = valid[first[1]]
    idx = pa.array(rows, mask=rows < 0)
    return values.take(idx)


_UPN_FLAT = r"^\{[^{}\[\]\\]*\}$"
_UPN_KEY = '"' + "".join(f"[{c.upper()}{c}]" for c in fm.UPN_KEY) + r'"\s*:'


def _upn_texts(details: pa.Array) -> pa.Array:
    """:func:`ingest.records._upn_of` of each details text: a pattern for flat objects with one
    such key and a string value, the function itself for the rest (one call per text)."""
    n_keys = pc.count_substring_regex(details, _UPN_KEY)
    simple = pc.and_(pc.match_substring_regex(details, _UPN_FLAT), pc.equal(n_keys, 1))
    found = pc.extract_regex(details, _UPN_KEY + r'\s*"(?P<v>[^"]*)"')
    value = pc.struct_field(found, "v")
    use = pc.and_(simple, found.is_valid()).fill_null(False)
    out = pc.if_else(use, _blank_null(value), pa.scalar(None, pa.string()))
    rest = np.flatnonzero(
        (~use.to_numpy(zero_copy_only=False)) & details.is_valid().to_numpy(zero_copy_only=False)
    )
    if len(rest):
        texts = details.take(pa.array(rest)).to_pylist()
        fixed = pa.array([_upn_of(t) for t in texts], pa.string())
        out_np = np.array(out.to_pylist(), dtype=object)
        out_np[rest] = fixed.to_pylist()
        out = pa.array(out_np.tolist(), pa.string())
    return out


def finish_arrow(
    tbl: pa.Table, origin: str
) -> tuple[dict[str, pa.Table], np.ndarray, list[np.ndarray]] | None:
    """The canonical events/steps/modified_properties of raw extracted columns, as Arrow; None
    when a record lacks an id or a time, has a bad time or repeats an id (the per-record
    engine then names the record or keeps the last copy)."""
    n = tbl.num_rows
    ids = tbl.column("id").combine_chunks()
    if ids.null_count or pc.any(pc.equal(ids, "")).as_py():
        return None
    if pc.count_distinct(ids).as_py() != n:
        return None
    ts = tbl.column("activity_at").combine_chunks()
    if ts.null_count or pc.any(pc.equal(ts, "")).as_py():
        return None
    times = parse_times(pd.Series(ts.to_numpy(zero_copy_only=False), dtype=object))
    if times.isna().any():
        return None
    cols: dict[str, pa.Array] = {
        "id": ids,
        "activity_at": pa.array(times.array, type=pa.timestamp("us", tz="UTC")),
    }
    for f in fm.EVENT_FIELDS:
        if f.column in ("id", "activity_at"):
            continue
        raw = tbl.column(f.column).combine_chunks()
        if f.kind == fm.ENUM:
            canon, raw_out = _enum(raw, fm.ENUMS[f.enum or ""])
            if f.column in fm.NULLABLE_ENUMS:
                present = pc.and_(raw.is_valid(), pc.not_equal(raw, "")).fill_null(False)
                none = pa.scalar(None, pa.string())
                canon, raw_out = (
                    pc.if_else(present, canon, none),
                    pc.if_else(present, raw_out, none),
                )
            cols[f.column], cols[f"{f.column}_raw"] = canon, raw_out
        elif f.kind == fm.IDENTITY:
            cols[f.column] = _distinct_map(raw, fm.identity_type, pa.string())
        elif f.kind == fm.DURATION:
            cols[f.column] = _durations(raw)
        elif f.kind == fm.SNAKE:
            cols[f.column] = _distinct_map(raw, fm.snake, pa.string())
        else:
            cols[f.column] = _blank_null(raw)
    code = cols["error_code"]
    cols["error_code"] = pc.if_else(
        pc.is_in(code, pa.array(fm.NO_ERROR_CODES)).fill_null(False),
        pa.scalar(None, pa.string()),
        code,
    )
    cols["origin"] = pa.array(np.full(n, origin, dtype=object), pa.string())

    # Steps.
    lists = tbl.column("steps").combine_chunks()
    flat = pc.list_flatten(lists)
    parents = pc.list_parent_indices(lists).to_numpy()
    offsets = lists.offsets.to_numpy()[:-1]
    position = np.arange(len(parents), dtype=np.int64) - offsets[parents] if len(parents) else []
    parent_idx = pa.array(parents, pa.int64())
    step_type, step_type_raw = _enum(flat.field("step_type"), STEP_TYPE)
    status, status_raw = _enum(flat.field("status"), STATUS)
    details = rf.json_texts(flat.field("details"), rf._details_text, None)
    names = _blank_null(flat.field("name").cast(pa.string()))
    steps = {
        "event_id": ids.take(parent_idx),
        "change_id": cols["change_id"].take(parent_idx),
        "position": pa.array(position, pa.int64()),
        "name": names,
        "step_type": step_type,
        "step_type_raw": step_type_raw,
        "status": status,
        "status_raw": status_raw,
        "description": _blank_null(flat.field("description").cast(pa.string())),
        "details": details,
    }

    # Derived columns, from the canonical steps (the rules of ingest.records.finish).
    failing = pc.and_(pc.equal(status, "failure"), names.is_valid()).fill_null(False)
    cols["failed_step"] = _first_per_parent(
        n, parents, pc.if_else(failing, names, pa.scalar(None, pa.string()))
    )
    has = details.is_valid()
    skip_cand = pc.and_(has, pc.match_substring(details, "skip", ignore_case=True)).fill_null(False)
    skip = _distinct_map(
        pc.if_else(skip_cand, details, pa.scalar(None, pa.string())), _skip_reason, pa.string()
    )
    skip_first = _first_per_parent(n, parents, skip)
    inner = cols.pop(fm.INNER_REASON)
    skipped_reason = pc.if_else(
        pc.equal(cols["status"], "skipped"), inner, pa.scalar(None, pa.string())
    )
    cols["skip_reason"] = pc.coalesce(skip_first, skipped_reason)
    # The import steps' UPN counts only for events without one of their own.
    need = pc.is_null(cols["source_upn"])
    if pc.any(need).as_py():
        import_step = pc.and_(pc.equal(step_type, "import"), has).fill_null(False)
        import_step = pc.and_(import_step, need.take(parent_idx))
        cand = pc.if_else(import_step, details, pa.scalar(None, pa.string()))
        has_upn = pc.match_substring(cand, "principalname", ignore_case=True).fill_null(False)
        step_upn = _upn_texts(pc.if_else(has_upn, cand, pa.scalar(None, pa.string())))
        cols["source_upn"] = pc.coalesce(
            cols["source_upn"], _first_per_parent(n, parents, step_upn)
        )

    # Modified properties.
    plists = tbl.column("props").combine_chunks()
    pflat = pc.list_flatten(plists)
    pparents = pc.list_parent_indices(plists).to_numpy()
    pidx = pa.array(pparents, pa.int64())

    def values(name: str) -> pa.Array:
        return rf.json_texts(pflat.field(name), rf._value_text, "{}")

    props = {
        "event_id": ids.take(pidx),
        "change_id": cols["change_id"].take(pidx),
        "name": _blank_null(pflat.field("name").cast(pa.string())),
        "old_value": values("old_value"),
        "new_value": values("new_value"),
    }
    out = {
        "events": _table("events", cols),
        "steps": _table("steps", steps),
        "modified_properties": _table("modified_properties", props),
    }
    owner = tbl.column("_file").to_numpy()
    return out, owner, [parents, pparents]


def _table(name: str, cols: dict[str, Any]) -> pa.Table:
    schema = ARROW_SCHEMAS[name]
    return pa.Table.from_arrays([cols[f.name] for f in schema], schema=schema)
