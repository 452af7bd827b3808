"""Columnar fast path for Graph-shaped provisioning records (camelCase, as Graph and the portal
download write them), on DuckDB's JSON reader.

:func:`graph_lines_to_frames` reads a chunk of records given as JSON Lines and returns the same
frames :func:`ingest.records.records_to_frames` would, or ``None`` when the chunk holds anything
this path does not reproduce exactly: legacy or Azure Monitor / Log Analytics shapes, keys in
another case (a struct whose every field reads null), ``servicePrincipal`` as an array,
JSON-in-string values, non-object steps, records without an id or a parsable time. The caller
then parses the chunk with the generic per-record parser, which also names the bad record.

Enumerations are normalised with the generic parser's own :func:`ingest.records.norm_enum`,
applied to each distinct raw value, so both paths agree by construction.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from ingest import schema
from ingest.records import (
    ACTION,
    ERROR_CATEGORY,
    INITIATOR,
    STATUS,
    STEP_TYPE,
    identity_type,
    norm_enum,
    parse_times,
)

Frames = dict[str, pd.DataFrame]

_IDENT = "STRUCT(id VARCHAR, displayName VARCHAR, name VARCHAR, identityType VARCHAR, details JSON)"
_SYSTEM = "STRUCT(id VARCHAR, displayName VARCHAR, name VARCHAR, details JSON)"
COLUMNS: dict[str, str] = {
    "id": "VARCHAR",
    "activityDateTime": "VARCHAR",
    "tenantId": "VARCHAR",
    "jobId": "VARCHAR",
    "cycleId": "VARCHAR",
    "changeId": "VARCHAR",
    "provisioningAction": "VARCHAR",
    "durationInMilliseconds": "VARCHAR",
    "servicePrincipal": "STRUCT(id VARCHAR, displayName VARCHAR, name VARCHAR)",
    "sourceSystem": _SYSTEM,
    "targetSystem": _SYSTEM,
    "initiatedBy": (
        "STRUCT(id VARCHAR, displayName VARCHAR, name VARCHAR, initiatorType VARCHAR,"
        " initiatingType VARCHAR, type VARCHAR)"
    ),
    "sourceIdentity": _IDENT,
    "targetIdentity": _IDENT,
    "provisioningStatusInfo": (
        "STRUCT(status VARCHAR, errorInformation STRUCT(errorCode VARCHAR, reason VARCHAR,"
        " additionalDetails VARCHAR, errorCategory VARCHAR, recommendedAction VARCHAR))"
    ),
    "provisioningSteps": (
        "STRUCT(name VARCHAR, provisioningStepType VARCHAR, status VARCHAR,"
        " description VARCHAR, details JSON)[]"
    ),
    "modifiedProperties": (
        "STRUCT(displayName VARCHAR, name VARCHAR, oldValue JSON, newValue JSON)[]"
    ),
}

# DuckDB keeps a JSON value as minified text, so its first character tells its type; testing
# that is much cheaper than json_type(), which parses the text again.
_MACROS = """
CREATE OR REPLACE MACRO nz(x) AS NULLIF(x, '');
CREATE OR REPLACE MACRO en(x) AS lower(replace(replace(trim(x), '_', ''), ' ', ''));
CREATE OR REPLACE MACRO jtxt(j) AS CASE
    WHEN j IS NULL OR j::VARCHAR = 'null' THEN NULL
    WHEN starts_with(j::VARCHAR, '"') THEN nz(j->>'$')
    WHEN j::VARCHAR = 'true' THEN 'True'
    WHEN j::VARCHAR = 'false' THEN 'False'
    ELSE j::VARCHAR END;
CREATE OR REPLACE MACRO is_obj(j) AS starts_with(j::VARCHAR, '{');
CREATE OR REPLACE MACRO odd_json(j) AS j IS NOT NULL AND NOT is_obj(j) AND j::VARCHAR <> 'null';
CREATE OR REPLACE MACRO dkey(j, a, b) AS CASE WHEN is_obj(j)
    THEN COALESCE(nz(j->>a), nz(j->>b)) END;
CREATE OR REPLACE MACRO nonempty(j) AS j IS NOT NULL AND is_obj(j) AND j::VARCHAR <> '{}';
"""

# Chunk-level checks: any row counted here sends the chunk to the generic parser.
# Rows the fast path does not reproduce: any such row sends the input to the generic parser.
_BAD = """
       nz(id) IS NULL OR nz(activityDateTime) IS NULL
    OR provisioningAction IS NULL OR provisioningStatusInfo IS NULL
    OR (servicePrincipal IS NOT NULL AND servicePrincipal.id IS NULL
        AND servicePrincipal.displayName IS NULL AND servicePrincipal.name IS NULL)
    OR (sourceIdentity IS NOT NULL AND sourceIdentity.id IS NULL
        AND sourceIdentity.displayName IS NULL AND sourceIdentity.name IS NULL)
    OR (targetIdentity IS NOT NULL AND targetIdentity.id IS NULL
        AND targetIdentity.displayName IS NULL AND targetIdentity.name IS NULL
        AND targetIdentity.identityType IS NULL)
    OR (initiatedBy IS NOT NULL AND initiatedBy.displayName IS NULL AND initiatedBy.name IS NULL
        AND initiatedBy.initiatorType IS NULL AND initiatedBy.initiatingType IS NULL
        AND initiatedBy.type IS NULL AND initiatedBy.id IS NULL)
    OR (provisioningStatusInfo.status IS NULL
        AND provisioningStatusInfo.errorInformation IS NULL)
    OR odd_json(sourceIdentity.details) OR odd_json(targetIdentity.details)
    OR odd_json(sourceSystem.details) OR odd_json(targetSystem.details)
    OR len(list_filter(provisioningSteps, lambda x: x IS NULL OR odd_json(x.details)
        OR (x.name IS NULL AND x.status IS NULL AND x.provisioningStepType IS NULL))) > 0
    OR len(list_filter(modifiedProperties, lambda x: x IS NULL
        OR (x.displayName IS NULL AND x.name IS NULL AND x.oldValue IS NULL
            AND x.newValue IS NULL))) > 0
"""

_EVENT_COLUMNS = """
    id,
    activityDateTime AS ts,
    nz(tenantId) AS tenant_id,
    nz(jobId) AS job_id,
    nz(cycleId) AS cycle_id,
    nz(changeId) AS change_id,
    COALESCE(nz(servicePrincipal.id),
             dkey(CASE WHEN nonempty(targetSystem.details) THEN targetSystem.details
                       ELSE sourceSystem.details END, 'ServicePrincipalId', 'servicePrincipalId')
    ) AS service_principal_id,
    COALESCE(nz(servicePrincipal.displayName), nz(servicePrincipal.name),
             dkey(CASE WHEN nonempty(targetSystem.details) THEN targetSystem.details
                       ELSE sourceSystem.details END,
                  'ServicePrincipalDisplayName', 'servicePrincipalDisplayName')
    ) AS service_principal_name,
    provisioningAction AS action_in,
    provisioningStatusInfo.status AS status_in,
    provisioningStatusInfo.errorInformation.errorCode AS error_code,
    provisioningStatusInfo.errorInformation.errorCategory AS category_in,
    nz(provisioningStatusInfo.errorInformation.reason) AS error_reason,
    nz(provisioningStatusInfo.errorInformation.additionalDetails) AS error_additional_details,
    nz(provisioningStatusInfo.errorInformation.recommendedAction) AS recommended_action,
    list_filter(provisioningSteps, lambda x: CASE WHEN x.details::VARCHAR ILIKE '%skip%reason%'
        THEN COALESCE(dkey(x.details, 'SkipReason', 'skipReason'),
                      dkey(x.details, 'Skip Reason', 'skipreason')) IS NOT NULL
        ELSE false END)[1].details AS skip_details,
    list_filter(provisioningSteps, lambda x: en(x.status) IN ('failure', '1')
        AND nz(x.name) IS NOT NULL)[1].name AS failed_step,
    durationInMilliseconds AS duration_in,
    COALESCE(nz(initiatedBy.initiatorType), nz(initiatedBy.initiatingType), nz(initiatedBy.type))
        AS initiator_in,
    COALESCE(nz(initiatedBy.displayName), nz(initiatedBy.name)) AS initiator_name,
    COALESCE(nz(sourceSystem.displayName), nz(sourceSystem.name)) AS source_system,
    COALESCE(nz(targetSystem.displayName), nz(targetSystem.name)) AS target_system,
    nz(sourceIdentity.id) AS source_id,
    COALESCE(nz(sourceIdentity.displayName), nz(sourceIdentity.name)) AS source_name,
    COALESCE(
        dkey(sourceIdentity.details, 'userPrincipalName', 'UserPrincipalName'),
        dkey(list_filter(provisioningSteps, lambda x:
            CASE WHEN x.details::VARCHAR ILIKE '%principalname%'
                THEN en(x.provisioningStepType) IN ('import', '0')
                     AND dkey(x.details, 'userPrincipalName', 'UserPrincipalName') IS NOT NULL
                ELSE false END)[1].details,
            'userPrincipalName', 'UserPrincipalName')
    ) AS source_upn,
    sourceIdentity.identityType AS source_type_in,
    nz(targetIdentity.id) AS target_id,
    COALESCE(nz(targetIdentity.displayName), nz(targetIdentity.name)) AS target_name,
    targetIdentity.identityType AS target_type_in
"""

_CHILD_COLUMNS = """
    list_transform(provisioningSteps, lambda x: {
        'name': nz(x.name), 'step_type_in': x.provisioningStepType, 'status_in': x.status,
        'description': nz(x.description),
        'details': CASE WHEN nonempty(x.details) THEN x.details::VARCHAR END}) AS steps,
    list_transform(modifiedProperties, lambda x: {
        'name': COALESCE(nz(x.displayName), nz(x.name)),
        'old_value': jtxt(x.oldValue), 'new_value': jtxt(x.newValue)}) AS props
"""


def _query(path: str, fmt: str) -> str:
    """One row per record: a `bad` flag, the event's columns, its steps and properties."""
    quoted = path.replace("'", "''")
    # Built from constant SQL and our own temporary file name; no outside text reaches it.
    return (
        "SELECT ("  # noqa: S608
        + _BAD
        + ") AS bad, "
        + _EVENT_COLUMNS
        + ", "
        + _CHILD_COLUMNS
        + f" FROM read_json('{quoted}', format='{fmt}', columns="
        + _COLUMNS_SQL
        + ", maximum_object_size=16777216)"
    )


_local = threading.local()


def _connection() -> Any:
    con = getattr(_local, "con", None)
    if con is None:
        import duckdb

        con = duckdb.connect(config={"preserve_insertion_order": True})
        con.execute(_MACROS)
        _local.con = con
    return con


def _columns_sql() -> str:
    items = ", ".join(f"'{k}': '{v}'" for k, v in COLUMNS.items())
    return "{" + items + "}"


_COLUMNS_SQL = _columns_sql()


def _enum(values: pd.Series, mapping: dict[Any, str]) -> tuple[pd.Series, pd.Series]:
    """Normalise raw enum text with the generic parser's rule, one call per distinct value."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    pairs = [norm_enum(v, mapping) for v in uniques] + [("unknown", None)]
    canon = np.array([p[0] for p in pairs], dtype=object)
    raw = np.array([p[1] for p in pairs], dtype=object)
    return (
        pd.Series(canon[codes], index=values.index, dtype="str"),
        pd.Series(raw[codes], index=values.index, dtype="str"),
    )


def _fast_map(values: pd.Series, fn: Any) -> pd.Series:
    """Apply ``fn`` once per distinct non-null value (null stays null)."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    table = np.array([fn(v) for v in uniques] + [None], dtype=object)
    return pd.Series(table[codes], index=values.index, dtype=object)


# Set by ingest.files, which can undo a file's staged rows when Reparse is raised mid-file; the
# streamed whole-array path (graph_array_frames) is used only then.
WHOLE_ARRAY: ContextVar[bool] = ContextVar("WHOLE_ARRAY", default=False)


class Reparse(Exception):
    """The fast path met something it does not reproduce; parse the input the generic way."""


def graph_lines_to_frames(data: bytes | bytearray, origin: str) -> Frames | None:
    """Return frames for the JSON Lines records in ``data``, or None (see module doc)."""
    import duckdb

    con = _connection()
    fd, tmp = tempfile.mkstemp(prefix="provlens-", suffix=".jsonl")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        try:
            tbl = con.sql(_query(tmp, "newline_delimited")).to_arrow_table()
        except duckdb.Error:
            return None
    finally:
        with contextlib.suppress(FileNotFoundError):
            Path(tmp).unlink()
    return _record_frames(tbl, origin)


# DuckDB holds what it has read of one query's input until the query ends, so a large array is
# read as several queries over segments of about this many bytes.
SEGMENT_BYTES = 256 << 20
# Where a new record starts in compact Graph output (records lead with their id). This text
# cannot occur inside a JSON string; at a nested array element the segments do not parse and
# the caller falls back, so a wrong cut can cost time, never data.
_RECORD_START = b'},{"id":"'


def segments(path: Path, start: int, end: int, size: int = SEGMENT_BYTES) -> list[tuple[int, int]]:
    """Split the array at ``[start, end)`` into ``(from, to)`` runs of whole records."""
    import mmap

    cuts = [start]
    with path.open("rb") as fh:
        if end - start > size:
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                pos = start + size
                while pos < end:
                    hit = mm.find(_RECORD_START, pos, end)
                    if hit < 0:
                        break
                    cuts.append(hit + 2)
                    pos = hit + 2 + size
    cuts.append(end)
    return list(itertools.pairwise(cuts))


def graph_array_frames(
    path: Path,
    start: int,
    end: int,
    origin: str,
    batch_rows: int = 50_000,
    report: Callable[[int], None] | None = None,
) -> Iterator[Frames]:
    """Yield frames for the JSON array of records at bytes ``[start, end)`` of ``path``.

    DuckDB reads the array itself (through a named pipe fed from the file, one segment of
    whole records per query, so memory stays bounded) and streams one row per record. Raises
    :class:`Reparse` as soon as a batch holds a record this path does not reproduce or the JSON
    does not parse; frames yielded before that must then be discarded by the caller.
    """
    parts = segments(path, start, end)
    for i, (a, b) in enumerate(parts):
        first, last = i == 0, i == len(parts) - 1
        yield from _segment_frames(
            path,
            a,
            b if last else b - 1,  # drop the comma before the next segment's first record
            b"" if first else b"[",
            b"" if last else b"]",
            origin,
            batch_rows,
            report,
        )


def _segment_frames(
    path: Path,
    start: int,
    end: int,
    prefix: bytes,
    suffix: bytes,
    origin: str,
    batch_rows: int,
    report: Callable[[int], None] | None,
) -> Iterator[Frames]:
    import duckdb

    con = _connection()
    with tempfile.TemporaryDirectory(prefix="provlens-") as tmp:
        fifo = os.path.join(tmp, "records.json")
        os.mkfifo(fifo)
        feeder = _Feeder(path, start, end, fifo, prefix, suffix)
        feeder.start()
        try:
            try:
                reader = con.sql(_query(fifo, "array")).to_arrow_reader(batch_rows)
                for batch in reader:
                    frames = _record_frames(pa.Table.from_batches([batch]), origin)
                    if frames is None:
                        raise Reparse("a record the columnar path does not reproduce")
                    yield frames
                    if report is not None:
                        report(feeder.sent)
            except duckdb.Error as exc:
                raise Reparse(str(exc)) from None
        finally:
            feeder.stop()


class _Feeder(threading.Thread):
    """Copies a byte range of a file into a named pipe (DuckDB reads the other end)."""

    def __init__(
        self, path: Path, start: int, end: int, fifo: str, prefix: bytes = b"", suffix: bytes = b""
    ) -> None:
        super().__init__(daemon=True)
        self.path, self.start_at, self.end, self.fifo = path, start, end, fifo
        self.prefix, self.suffix = prefix, suffix
        self.sent = start
        self._stop_flag = threading.Event()

    def run(self) -> None:
        try:
            with self.path.open("rb") as src, open(self.fifo, "wb") as dst:
                src.seek(self.start_at)
                dst.write(self.prefix)
                left = self.end - self.start_at
                while left > 0 and not self._stop_flag.is_set():
                    block = src.read(min(left, 4 << 20))
                    if not block:
                        break
                    dst.write(block)
                    left -= len(block)
                    self.sent += len(block)
                if left <= 0:
                    dst.write(self.suffix)
        except (BrokenPipeError, OSError):
            pass

    def stop(self) -> None:
        self._stop_flag.set()
        if self.is_alive():
            # Unblock an open() still waiting for a reader, or a write to a full pipe.
            with contextlib.suppress(OSError):
                fd = os.open(self.fifo, os.O_RDONLY | os.O_NONBLOCK)
                try:
                    while self.is_alive():
                        with contextlib.suppress(BlockingIOError):
                            if not os.read(fd, 1 << 20):
                                self.join(0.05)
                finally:
                    os.close(fd)
        self.join(5)


def _record_frames(tbl: pa.Table, origin: str) -> Frames | None:
    """Frames from the per-record rows of :func:`_query`, or None if any row is flagged bad."""
    import pyarrow.compute as pc

    if tbl.num_rows == 0:
        return _frames(tbl, _children(tbl, "steps"), _children(tbl, "props"), origin)
    if pc.any(tbl.column("bad")).as_py():
        return None
    return _frames(tbl, _children(tbl, "steps"), _children(tbl, "props"), origin)


def _children(tbl: pa.Table, column: str) -> pa.Table:
    """Flatten a list-of-struct column into rows carrying their event's id and change id."""
    import pyarrow.compute as pc

    lists = tbl.column(column).combine_chunks()
    flat = pc.list_flatten(lists)
    parent = pc.list_parent_indices(lists)
    fields = {f.name: flat.field(i) for i, f in enumerate(flat.type)}
    out = {
        "event_id": pc.take(tbl.column("id"), parent),
        "change_id": pc.take(tbl.column("change_id"), parent),
    }
    if column == "steps":
        offsets = np.asarray(lists.offsets)[:-1]
        par = np.asarray(parent)
        position = np.arange(len(par)) - offsets[par] if len(par) else []
        out["position"] = pa.array(position, pa.int64())
    out.update(fields)
    return pa.table(out)


def _frames(ev: pa.Table, st: pa.Table, mp: pa.Table, origin: str) -> Frames | None:
    # Only the event columns: converting the steps/props list columns would build a Python dict
    # per step (they were flattened into their own tables already).
    e = ev.select([c for c in ev.column_names if c not in ("steps", "props", "bad")]).to_pandas()
    times = parse_times(e["ts"].astype(object))
    if times.isna().any():
        return None
    out = pd.DataFrame({"id": e["id"], "activity_at": times})
    for col in ("tenant_id", "job_id", "cycle_id", "change_id"):
        out[col] = e[col]
    out["service_principal_id"] = e["service_principal_id"]
    out["service_principal_name"] = e["service_principal_name"]
    out["action"], out["action_raw"] = _enum(e["action_in"], ACTION)
    out["status"], out["status_raw"] = _enum(e["status_in"], STATUS)
    code = e["error_code"].where(~e["error_code"].isin(["", "None", "0"]), None)
    out["error_code"] = code
    cat = e["category_in"].where(e["category_in"] != "", None)
    cat_canon, cat_raw = _enum(cat, ERROR_CATEGORY)
    out["error_category"] = cat_canon.where(cat.notna(), None)
    out["error_category_raw"] = cat_raw.where(cat.notna(), None)
    out["error_reason"] = e["error_reason"]
    out["error_additional_details"] = e["error_additional_details"]
    out["recommended_action"] = e["recommended_action"]
    skip = _fast_map(e["skip_details"], _skip_reason)
    skipped_reason = e["error_reason"].where(out["status"] == "skipped", None)
    out["skip_reason"] = skip.where(skip.notna(), skipped_reason)
    out["failed_step"] = e["failed_step"]
    out["duration_ms"] = _fast_map(e["duration_in"], _duration).astype("Int64")
    init = e["initiator_in"]
    init_canon, init_raw = _enum(init, INITIATOR)
    out["initiator_type"] = init_canon.where(init.notna(), None)
    out["initiator_type_raw"] = init_raw.where(init.notna(), None)
    for col in ("initiator_name", "source_system", "target_system", "source_id", "source_name"):
        out[col] = e[col]
    out["source_upn"] = e["source_upn"]
    out["source_type"] = _fast_map(e["source_type_in"], identity_type)
    out["target_id"] = e["target_id"]
    out["target_name"] = e["target_name"]
    out["target_type"] = _fast_map(e["target_type_in"], identity_type)
    out["origin"] = origin

    s = st.to_pandas()
    steps = pd.DataFrame(
        {"event_id": s["event_id"], "change_id": s["change_id"], "position": s["position"]}
    )
    steps["name"] = s["name"]
    steps["step_type"], steps["step_type_raw"] = _enum(s["step_type_in"], STEP_TYPE)
    steps["status"], steps["status_raw"] = _enum(s["status_in"], STATUS)
    steps["description"] = s["description"]
    steps["details"] = s["details"]
    return {
        "events": schema.conform("events", out),
        "steps": schema.conform("steps", steps),
        "modified_properties": schema.conform("modified_properties", mp.to_pandas()),
    }


def _skip_reason(details: str) -> str | None:
    import orjson

    from ingest.records import _SKIP_KEYS

    d = {k.lower(): v for k, v in reversed(list(orjson.loads(details).items()))}
    for key in _SKIP_KEYS:
        if d.get(key):
            return str(d[key])
    return None


def _duration(text: str) -> int | None:
    import re

    t = text.strip()
    return int(float(t)) if re.fullmatch(r"-?\d+(\.\d+)?", t) else None
