"""Columnar engine for provisioning records, generated from :mod:`ingest.fieldmap`.

DuckDB's JSON reader turns a chunk of records (JSON Lines bytes) into columns without building a
Python object per record. Its column structure is generated from the field map's paths, spelled as
the map spells them; DuckDB matches keys case-sensitively, so :func:`exact_keys` first checks,
on the chunk's bytes, that no key the map knows is spelled any other way (and that no envelope
marker is present). A chunk that fails the check, or that DuckDB cannot read, is parsed by the
per-record engine (:func:`ingest.records.records_to_frames`), which matches keys in any casing.

Both engines extract the same raw values and end in the same
:func:`ingest.records.finish`, so enums, derived columns and duplicates are handled once.
"""

from __future__ import annotations

import re
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

from ingest import fieldmap as fm
from ingest.records import (
    PARENT,
    Frames,
    _details_text,
    _value_text,
    finish,
)

# ---- generated from the field map ----------------------------------------------------------


def _tree(bag_structs: bool = False) -> dict[str, Any]:
    """Nested dict of the map's Graph-shaped paths (envelope paths excluded); bags are leaves,
    or with ``bag_structs`` objects of the keys the map reads in them (for a reader matching
    keys in any casing, :mod:`ingest.records_direct`)."""
    root: dict[str, Any] = {}
    for f in fm.EVENT_FIELDS:
        for path in f.paths:
            if path.startswith(fm.ENVELOPE):
                continue
            node = root
            parts = path.split(".")
            for i, key in enumerate(parts):
                if key.lower() in fm.BAGS and not bag_structs:
                    node[key] = "JSON"
                    break
                if i == len(parts) - 1:
                    node.setdefault(key, "VARCHAR")
                else:
                    node = node.setdefault(key, {})
    return root


TREE = _tree()


def _child_struct(fields: tuple[fm.Field, ...], json_cols: tuple[str, ...]) -> str:
    keys: dict[str, str] = {}
    for f in fields:
        for path in f.paths:
            keys.setdefault(path, "JSON" if f.column in json_cols else "VARCHAR")
    return "STRUCT(" + ", ".join(f'"{k}" {t}' for k, t in keys.items()) + ")[]"


def _sql_type(node: Any) -> str:
    if isinstance(node, str):
        return node
    return "STRUCT(" + ", ".join(f'"{k}" {_sql_type(v)}' for k, v in node.items()) + ")"


COLUMNS: dict[str, str] = {k: _sql_type(v) for k, v in TREE.items()}
COLUMNS[fm.STEPS_PATH] = _child_struct(fm.STEP_FIELDS, ("details",))
COLUMNS[fm.PROPERTIES_PATH] = _child_struct(fm.PROPERTY_FIELDS, ("old_value", "new_value"))
# The same structure in lower case, to read the lower-cased bytes (see _signature).
LOWER_COLUMNS: dict[str, str] = {
    k.lower(): re.sub(r'"[^"]+"', lambda m: m.group(0).lower(), v) for k, v in COLUMNS.items()
}
for _marker in (*fm.ENVELOPE_MARKERS, "properties"):
    LOWER_COLUMNS[_marker] = "JSON"


def _ref(path: str) -> str:
    return ".".join(f'"{p}"' for p in path.split("."))


def _select(bag_structs: bool = False) -> tuple[str, list[str]]:
    """The SELECT list and the event columns it yields (first non-empty path of each field);
    ``bag_structs``: bags read as objects (:func:`_tree`), not looked up as JSON texts."""
    cols: list[str] = []
    plan: list[str] = []
    for f in fm.EVENT_FIELDS:
        exprs: list[str] = []
        for path in f.paths:
            if path.startswith(fm.ENVELOPE):
                continue
            parts = path.split(".")
            bag_at = next((i for i, p in enumerate(parts) if p.lower() in fm.BAGS), None)
            inner: tuple[str, ...] = ()
            if bag_at is None or bag_structs:
                expr = "o." + _ref(path)
            else:
                inner = tuple(p.lower() for p in parts[bag_at + 1 :])
                expr = "o." + _ref(".".join(parts[: bag_at + 1]))
                for key in inner:
                    expr = f"bag_get({expr}, '{key}')"
            exprs.append(expr)
        cols.append(f'{_first_non_empty(exprs)} AS "{f.column}"')
        plan.append(f.column)
    step_fields = ", ".join(
        f"'{f.column}': x.{_ref(f.paths[0])}" + ("::VARCHAR" if f.kind == fm.JSON else "")
        for f in fm.STEP_FIELDS
    )
    prop_fields = ", ".join(
        f"'{f.column}': "
        + (
            f"COALESCE(NULLIF(x.{_ref(f.paths[0])}, ''), x.{_ref(f.paths[1])})"
            if len(f.paths) > 1
            else f"x.{_ref(f.paths[0])}::VARCHAR"
        )
        for f in fm.PROPERTY_FIELDS
    )
    steps, props = "o." + _ref(fm.STEPS_PATH), "o." + _ref(fm.PROPERTIES_PATH)
    cols.append(f"list_transform({steps}, lambda x: {{{step_fields}}}) AS steps")
    cols.append(f"list_transform({props}, lambda x: {{{prop_fields}}}) AS props")
    # Non-object steps/properties are skipped by the per-record engine, and a bag given as JSON
    # text or as a list is read there (``bag_get`` reads objects only; read as objects, such a
    # bag makes DuckDB refuse the read): such records go there.
    bags = (
        ""
        if bag_structs
        else " + ".join(
            f"COALESCE(json_type(o.{_ref('.'.join(p))}) IN ('VARCHAR', 'ARRAY'), false)::INT"
            for p in _leaves(TREE)
            if p[-1].lower() in fm.BAGS
        )
    )
    cols.append(
        f"len(list_filter({steps}, lambda x: x IS NULL))"
        f" + len(list_filter({props}, lambda x: x IS NULL)) + {bags or '0'} AS odd"
    )
    cols.append(f"({_signature('o', False)}) <> ({_signature('l', True)}) AS recased")
    markers = " OR ".join(f'l."{m}" IS NOT NULL' for m in (*fm.ENVELOPE_MARKERS, "properties"))
    cols.append(f"({markers}) AS envelope")
    return ", ".join(cols), plan


def _first_non_empty(exprs: list[str]) -> str:
    """SQL for the first of ``exprs`` that is neither null nor "" (else null). A CASE, not
    COALESCE: DuckDB then computes a later path (a bag lookup) only for the rows that need it."""
    if len(exprs) == 1:
        return f"NULLIF({exprs[0]}, '')"
    return "CASE " + " ".join(f"WHEN ({e}) <> '' THEN {e}" for e in exprs) + " END"


def _leaves(node: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for k, v in node.items():
        out.append((*prefix, k))
        if isinstance(v, dict):
            out.extend(_leaves(v, (*prefix, k)))
    return out


def _signature(alias: str, lower: bool) -> str:
    """Which keys the map reads are present in a record, as DuckDB saw them.

    Read once with the map's spellings and once from the record's bytes lower-cased (keys then
    match in any casing): the two differ exactly when a key is spelled otherwise than the map.
    """

    def ref(parts: tuple[str, ...] | list[str]) -> str:
        return ".".join(f'"{p.lower() if lower else p}"' for p in parts)

    bits = [f"{alias}.{ref(p)} IS NULL" for p in _leaves(TREE)]
    for path, fields in ((fm.STEPS_PATH, fm.STEP_FIELDS), (fm.PROPERTIES_PATH, fm.PROPERTY_FIELDS)):
        keys = list(dict.fromkeys(p for f in fields for p in f.paths))
        inner = ", ".join(f"x.{ref([k])} IS NULL" for k in keys)
        bits.append(f"list_transform({alias}.{ref([path])}, lambda x: [{inner}])::VARCHAR")
        bits.append(f"{alias}.{ref([path])} IS NULL")
    return "[" + ", ".join(f"({b})::VARCHAR" for b in bits) + "]"


SELECT, PLAN = _select()


def _columns_sql(columns: dict[str, str]) -> str:
    return "{" + ", ".join(f"'{k}': '{v}'" for k, v in columns.items()) + "}"


_MACROS = """
CREATE OR REPLACE MACRO bag_get(j, k) AS CASE WHEN starts_with(j::VARCHAR, '{') THEN NULLIF(
    json_extract_string(j, '$."' || list_filter(json_keys(j), lambda x: lower(x) = k)[1] || '"'),
    '') END;
"""


# ---- running it -------------------------------------------------------------------------------

_local = threading.local()


# A bare NaN or Infinity (any casing, signed, also "inf"): DuckDB reads it as a number, orjson (the
# per-record engine) refuses it as the invalid JSON it is. Bytes holding one where a value starts
# (after ":", "," or "[") go the per-record way, which names the file and line. Each pattern
# starts with one fixed byte, so RE2 looks for it with memchr (see records_direct.DECLINE). The
# token must end where a value ends (before ",", "}" or "]"), so a free text such as "Doe, Nancy"
# or "Error: Information" is still read the fast way; only one like "a, nan, b" goes the slow way.
NON_JSON_NUMBER = r"\s*-?(?i:nan|infinity|inf)\s*[,}\]]"
NON_JSON_NUMBERS = [":" + NON_JSON_NUMBER, "," + NON_JSON_NUMBER, r"\[" + NON_JSON_NUMBER]


def holds(raw: Any, patterns: list[str]) -> bool:
    """Whether the bytes ``raw`` (bytes or an Arrow buffer) hold a match of one of ``patterns``."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    raw = raw if isinstance(raw, pa.Buffer) else pa.py_buffer(raw)
    offsets = pa.py_buffer(np.array([0, raw.size], np.int64))
    whole = pa.LargeBinaryArray.from_buffers(pa.large_binary(), 1, [None, offsets, raw])
    return any(pc.count_substring_regex(whole, p)[0].as_py() for p in patterns)


def _connection() -> Any:
    con = getattr(_local, "con", None)
    if con is None:
        import duckdb

        con = duckdb.connect(config={"preserve_insertion_order": True})
        con.execute(_MACROS)
        _local.con = con
    return con


def lines_to_frames(
    data: bytes | bytearray, origin: str, where: Callable[[int], str]
) -> Frames | None:
    """Frames for the JSON Lines records in ``data``, or None when this engine cannot read them
    exactly (keys in another casing, envelopes, JSON DuckDB refuses, non-object children, a
    bare NaN or Infinity)."""
    import duckdb

    if holds(data, NON_JSON_NUMBERS):
        return None
    con = _connection()
    with tempfile.TemporaryDirectory(prefix="provlens-") as tmp:
        exact, lowered = Path(tmp, "exact.jsonl"), Path(tmp, "lower.jsonl")
        exact.write_bytes(data)
        lowered.write_bytes(data.lower())
        query = (
            f"SELECT {SELECT} FROM {_read(exact, COLUMNS)} o "  # noqa: S608
            f"POSITIONAL JOIN {_read(lowered, LOWER_COLUMNS)} l"
        )
        try:
            tbl = con.sql(query).to_arrow_table()
        except duckdb.Error:
            return None
    if tbl.num_rows and (
        int(pa_sum(tbl.column("odd"))) > 0
        or pa_sum(tbl.column("recased"))
        or pa_sum(tbl.column("envelope"))
    ):
        return None
    # Ids that were not strings in the JSON: the per-record engine names the record.
    ids = tbl.column("id").to_pandas()
    if ids.str.match(r"^(?:[\[{]|true$|false$|-?\d+\.)").any():
        return None
    return _frames(tbl, origin, where)


def _read(path: Path, columns: dict[str, str]) -> str:
    # Our own temporary file name and the generated structure: no outside text reaches the SQL.
    return (
        f"read_json('{path}', format='newline_delimited', columns={_columns_sql(columns)},"
        " maximum_object_size=16777216)"
    )


def pa_sum(col: Any) -> int:
    import pyarrow.compute as pc

    v = pc.sum(col).as_py()
    return int(v or 0)


def _frames(tbl: Any, origin: str, where: Callable[[int], str]) -> Frames:
    import pyarrow.compute as pc

    ev = tbl.select(PLAN).to_pandas()
    ev["resource_id"] = None

    def children(column: str, json_texts: dict[str, Callable[[Any], pd.Series]]) -> pd.DataFrame:
        lists = tbl.column(column).combine_chunks()
        flat_c = pc.list_flatten(lists)
        parents = pc.list_parent_indices(lists).to_numpy()
        frame = pd.DataFrame(
            {
                f.name: json_texts[f.name](flat_c.field(i))
                if f.name in json_texts
                else flat_c.field(i).to_pandas()
                for i, f in enumerate(flat_c.type)
            }
        )
        frame[PARENT] = parents
        if column == "steps":
            offsets = lists.offsets.to_numpy()[:-1]
            frame["position"] = (
                (pd.RangeIndex(len(parents)).to_numpy() - offsets[parents]) if len(parents) else []
            )
        return frame

    st = children("steps", {"details": lambda a: _json_texts(a, _details_text, None)})
    values = lambda a: _json_texts(a, _value_text, "{}")  # noqa: E731
    mp = children("props", {"old_value": values, "new_value": values})
    return finish(ev, st, mp, origin, where)


# JSON text whose parsed value prints back the same. RE2 (Arrow) has no lookahead: a plain
# string is a quoted text without quotes or backslashes that does not itself look like JSON or
# null (it parses to the text between its quotes); a plain object has no escapes but \" and \\
# (orjson writes those back alike) and, outside its strings, no fraction or exponent (no ".",
# "e" or "E" but those of true and false); a plain number is an integer.
_PLAIN_STRING = r'^"[^"\\]*"$'
_NOT_PLAIN_STRING = r'^"(?:[\[{]|null")'
_PLAIN_OTHER = r'^(?:\{(?:"(?:[^"\\]|\\["\\])*"|true|false|null|[^"eE.\\])*\}|-?[0-9]{1,15})$'


def _json_texts(
    values: Any, convert: Callable[[Any], str | None], empty_object: str | None
) -> pd.Series:
    """:func:`json_texts` as an object Series (None for null)."""
    out = json_texts(values, convert, empty_object).to_pandas().astype(object)
    return out.where(out.notna(), None)


def json_texts(values: Any, convert: Callable[[Any], str | None], empty_object: str | None) -> Any:
    """``convert(parsed JSON)`` of each JSON text of an Arrow string array, as an Arrow string
    array, parsing only the texts that do not print back as they are (most are plain strings or
    flat objects) and those once per distinct text."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    values = values.cast(pa.string())
    none = pa.scalar(None, pa.string())
    if values.null_count == len(values):
        return pa.nulls(len(values), pa.string())
    match = pc.match_substring_regex
    plain_string = pc.and_(
        match(values, _PLAIN_STRING), pc.invert(match(values, _NOT_PLAIN_STRING))
    ).fill_null(False)
    # The (slower) object and number pattern only where a text is no plain string.
    other = pc.and_(pc.invert(plain_string), values.is_valid())
    if pc.any(other).as_py():
        plain = pc.or_(plain_string, match(values, _PLAIN_OTHER)).fill_null(False)
    else:
        plain = plain_string
    # Plain texts as they print: strings without their quotes, "" as null, {} as empty_object.
    unquote = pc.and_(plain_string, plain).fill_null(False)
    inner = pc.if_else(unquote, pc.utf8_slice_codeunits(values, 1, -1), values)
    inner = pc.if_else(pc.equal(inner, ""), none, inner)
    if empty_object != "{}":
        empty = pc.and_(plain, pc.equal(inner, "{}")).fill_null(False)
        inner = pc.if_else(empty, pa.scalar(empty_object, pa.string()), inner)
    rest = pc.and_(pc.invert(plain), values.is_valid())
    if pc.any(rest).as_py():
        enc = pc.dictionary_encode(inner.filter(rest))
        parsed = pa.array(
            [convert(orjson.loads(t)) for t in enc.dictionary.to_pylist()], pa.string()
        )
        inner = pc.replace_with_mask(inner, rest, parsed.take(enc.indices))
    return inner
