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

import contextlib
import functools
import os
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
    _bag,
    _details_text,
    _scalar,
    _value_text,
    finish,
)

# ---- generated from the field map ----------------------------------------------------------


def _tree() -> dict[str, Any]:
    """Nested dict of the map's Graph-shaped paths (envelope paths excluded); bags are leaves."""
    root: dict[str, Any] = {}
    for f in fm.EVENT_FIELDS:
        for path in f.paths:
            if path.startswith(fm.ENVELOPE):
                continue
            node = root
            parts = path.split(".")
            for i, key in enumerate(parts):
                if key.lower() in fm.BAGS:
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


def _ref(path: str) -> str:
    return ".".join(f'"{p}"' for p in path.split("."))


def _select() -> tuple[str, list[tuple[str, str, tuple[str, ...]]]]:
    """The SELECT list and, per output column, (field column, path, keys inside a bag)."""
    cols: list[str] = []
    plan: list[tuple[str, str, tuple[str, ...]]] = []
    for f in fm.EVENT_FIELDS:
        for path in f.paths:
            if path.startswith(fm.ENVELOPE):
                continue
            parts = path.split(".")
            bag_at = next((i for i, p in enumerate(parts) if p.lower() in fm.BAGS), None)
            inner: tuple[str, ...] = ()
            if bag_at is None:
                expr = _ref(path)
            else:
                expr = _ref(".".join(parts[: bag_at + 1])) + "::VARCHAR"
                inner = tuple(p.lower() for p in parts[bag_at + 1 :])
            name = f"c{len(cols)}"
            cols.append(f"{expr} AS {name}")
            plan.append((f.column, name, inner))
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
    cols.append(f"list_transform({_ref(fm.STEPS_PATH)}, lambda x: {{{step_fields}}}) AS steps")
    cols.append(f"list_transform({_ref(fm.PROPERTIES_PATH)}, lambda x: {{{prop_fields}}}) AS props")
    # Non-object steps/properties are skipped by the per-record engine: such records go there.
    cols.append(
        f"len(list_filter({_ref(fm.STEPS_PATH)}, lambda x: x IS NULL))"
        f" + len(list_filter({_ref(fm.PROPERTIES_PATH)}, lambda x: x IS NULL)) AS odd"
    )
    return ", ".join(cols), plan


SELECT, PLAN = _select()
_COLUMNS_SQL = "{" + ", ".join(f"'{k}': '{v}'" for k, v in COLUMNS.items()) + "}"


def _known_keys() -> tuple[set[str], set[str]]:
    """Key spellings DuckDB reads (exact), and every key the map knows (lower case)."""
    exact: set[str] = set()
    lower: set[str] = set(fm.ENVELOPE_MARKERS) | {"properties"}

    def walk(node: dict[str, Any]) -> None:
        for k, v in node.items():
            exact.add(k)
            if isinstance(v, dict):
                walk(v)

    walk(TREE)
    exact.update({fm.STEPS_PATH, fm.PROPERTIES_PATH})
    for group in (fm.EVENT_FIELDS, fm.STEP_FIELDS, fm.PROPERTY_FIELDS):
        for f in group:
            for path in f.paths:
                for part in path.split("."):
                    if part != fm.ENVELOPE:
                        lower.add(part.lower())
                        if group is not fm.EVENT_FIELDS:
                            exact.add(part)
                    if part.lower() in fm.BAGS:
                        break  # keys inside a bag are looked up case-insensitively by both
    lower.update({fm.STEPS_PATH.lower(), fm.PROPERTIES_PATH.lower()})
    return exact, lower


EXACT_KEYS, KNOWN_KEYS = _known_keys()
# A key the map knows, spelled otherwise than DuckDB reads it, or an envelope marker. The
# lookahead skips exact spellings; matching is on the key's text between quotes.
_ODD_KEY = re.compile(
    rb'"(?!(?:'
    + b"|".join(re.escape(k.encode()) for k in sorted(EXACT_KEYS - set(fm.ENVELOPE_MARKERS)))
    + rb')"\s*:)(?i:'
    + b"|".join(re.escape(k.encode()) for k in sorted(KNOWN_KEYS))
    + rb')"\s*:'
)


def exact_keys(data: bytes | bytearray) -> bool:
    """True when every key of the field map in ``data`` is spelled as DuckDB reads it."""
    return _ODD_KEY.search(data) is None


# ---- running it -------------------------------------------------------------------------------

_local = threading.local()


def _connection() -> Any:
    con = getattr(_local, "con", None)
    if con is None:
        import duckdb

        con = duckdb.connect(config={"preserve_insertion_order": True})
        _local.con = con
    return con


def lines_to_frames(
    data: bytes | bytearray, origin: str, where: Callable[[int], str]
) -> Frames | None:
    """Frames for the JSON Lines records in ``data``, or None when this engine cannot read them
    exactly (keys in another casing, envelopes, JSON DuckDB refuses, non-object children)."""
    import duckdb

    if not exact_keys(data):
        return None
    con = _connection()
    fd, tmp = tempfile.mkstemp(prefix="provlens-", suffix=".jsonl")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        query = (
            f"SELECT {SELECT} FROM read_json('{tmp}', format='newline_delimited', "  # noqa: S608
            f"columns={_COLUMNS_SQL}, maximum_object_size=16777216)"
        )
        try:
            tbl = con.sql(query).to_arrow_table()
        except duckdb.Error:
            return None
    finally:
        with contextlib.suppress(FileNotFoundError):
            Path(tmp).unlink()
    if tbl.num_rows and int(pa_sum(tbl.column("odd"))) > 0:
        return None
    # Ids that were not strings in the JSON: the per-record engine names the record.
    ids = tbl.column(PLAN[0][1]).to_pandas()
    if ids.str.match(r"^(?:[\[{]|true$|false$|-?\d+\.)").any():
        return None
    return _frames(tbl, origin, where)


def pa_sum(col: Any) -> int:
    import pyarrow.compute as pc

    v = pc.sum(col).as_py()
    return int(v or 0)


def _first(series: list[pd.Series]) -> pd.Series:
    out = series[0]
    for s in series[1:]:
        out = out.where(out.notna() & (out != ""), s)
    return out


def _frames(tbl: Any, origin: str, where: Callable[[int], str]) -> Frames:
    import pyarrow.compute as pc

    from ingest.records import _map

    flat = tbl.select([c for c in tbl.column_names if c.startswith("c")]).to_pandas()
    by_column: dict[str, list[pd.Series]] = {}
    for column, name, inner in PLAN:
        s = flat[name].astype(object)
        if inner:
            s = _map(s, functools.partial(_bag_value, keys=inner))
        s = s.where(s.notna(), None)
        by_column.setdefault(column, []).append(s)
    ev = pd.DataFrame({c: _first(v) for c, v in by_column.items()}, dtype=object)
    ev["resource_id"] = None

    def children(column: str) -> pd.DataFrame:
        lists = tbl.column(column).combine_chunks()
        flat_c = pc.list_flatten(lists)
        parents = pc.list_parent_indices(lists).to_numpy()
        frame = pd.DataFrame(
            {f.name: flat_c.field(i).to_pandas() for i, f in enumerate(flat_c.type)},
            dtype=object,
        )
        frame[PARENT] = parents
        if column == "steps":
            offsets = lists.offsets.to_numpy()[:-1]
            frame["position"] = (
                (pd.RangeIndex(len(parents)).to_numpy() - offsets[parents]) if len(parents) else []
            )
        return frame.where(frame.notna(), None)

    st = children("steps")
    st["details"] = _map(st["details"], lambda t: _details_text(orjson.loads(t)))
    mp = children("props")
    for column in ("old_value", "new_value"):
        mp[column] = _map(mp[column], lambda t: _value_text(orjson.loads(t)))
    return finish(ev, st, mp, origin, where)


def _bag_value(textvalue: Any, keys: tuple[str, ...]) -> Any:
    """The value at ``keys`` (lower case) inside a bag given as JSON text, as text."""
    return _scalar(_walk_bag(textvalue, keys))


def _walk_bag(textvalue: Any, keys: tuple[str, ...]) -> Any:
    node: Any = _bag(textvalue)
    for k in keys:
        if not isinstance(node, dict):
            return None
        node = node.get(k)
    return None if node == "" else node
