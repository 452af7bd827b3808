"""Write report frames and objects as CSV, JSON, XLSX or parquet (DESIGN "Output conventions").

JSON: timestamps are ISO 8601 UTC strings with milliseconds and a ``Z``, missing values ``null``,
booleans JSON booleans. CSV (UTF-8) and XLSX: a text cell starting with ``=``, ``+``, ``-``, ``@``,
tab or CR gets a leading ``'`` so a spreadsheet never runs it as a formula; numbers stay numbers.
Files are written atomically (a temporary file in the same directory, then ``os.replace``).
"""

from __future__ import annotations

import io
import math
import os
import re
import sys
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ingest.errors import UsageError
from ingest.kept import KEPT_TEXT_ROWS, Keeper, text_chunks, text_of, write_atomic, write_rows
from reports import ONE_USER_TABLES, Filters, Inputs, ReportResult
from reports.inputs import isin
from reports.users import timeline_frame, user_timeline, with_children_text

if TYPE_CHECKING:
    import duckdb

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
FORMATS = ("csv", "json", "xlsx", "parquet")


# --- values -------------------------------------------------------------------------------


def iso_z(values: pd.Series) -> pd.Series:
    """Return UTC timestamps as ISO 8601 strings with milliseconds and ``Z`` (null stays null)."""
    ts = pd.to_datetime(values, utc=True)
    naive = ts.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[ms]")
    text = np.char.add(np.datetime_as_string(naive, unit="ms"), "Z")
    return pd.Series(text, index=values.index, dtype="object").where(ts.notna(), None)


def _is_time(series: pd.Series) -> bool:
    return isinstance(series.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(
        series.dtype
    )


def _is_text(series: pd.Series) -> bool:
    return pd.api.types.is_string_dtype(series.dtype) or series.dtype == object


def jsonable(value: Any) -> Any:
    """Return ``value`` with timestamps as ISO Z strings, NaN/NA as None, numpy as Python."""
    if isinstance(value, pd.DataFrame):
        return records(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v) for v in value]
    if isinstance(value, (pd.Timestamp, datetime)):
        if pd.isna(value):
            return None
        ts = pd.Timestamp(value)
        ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
        return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"
    if isinstance(value, pd.Timedelta):
        return None if pd.isna(value) else value.total_seconds()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return value


def _json_columns(frame: pd.DataFrame) -> dict[str, list[Any]]:
    """Return each column as a list of JSON-ready Python values."""
    cols: dict[str, list[Any]] = {}
    for name in frame.columns:
        s = frame[name]
        if _is_time(s):
            cols[str(name)] = iso_z(s).tolist()
        elif pd.api.types.is_bool_dtype(s.dtype) or pd.api.types.is_integer_dtype(s.dtype):
            cols[str(name)] = [None if v is pd.NA else v for v in s.astype("object").tolist()]
        elif pd.api.types.is_float_dtype(s.dtype):
            f = s.astype("float64")
            cols[str(name)] = f.astype("object").where(np.isfinite(f), None).tolist()
        elif isinstance(s.dtype, pd.StringDtype):
            cols[str(name)] = s.astype("object").where(s.notna(), None).tolist()
        else:
            cols[str(name)] = [jsonable(v) for v in s.astype("object").tolist()]
    return cols


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Return the rows of ``frame`` as JSON-ready dicts (keys = column names)."""
    cols = _json_columns(frame)
    names = list(cols)
    return [dict(zip(names, row)) for row in zip(*cols.values())] if names else []


def json_bytes(obj: pd.DataFrame | Mapping[str, Any]) -> bytes:
    """Return a frame (as an array of rows) or an object as one JSON document."""
    if isinstance(obj, pd.DataFrame):
        # One row per line: compact, yet readable and line-diffable.
        chunks = _json_line_chunks(obj)
        if chunks is not None:  # one copy out of Arrow's buffers
            return b"".join([b"[\n", *chunks, b"\n]\n"])
        rows = [orjson.dumps(r) for r in records(obj)]
        return b"[\n" + b",\n".join(rows) + b"\n]\n" if rows else b"[]\n"
    return orjson.dumps(jsonable(obj), option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)


# Doubles DuckDB writes exactly as orjson does (from 1e16 up it writes every digit, where orjson
# writes 1e+16): a frame with larger values goes the per-row way.
_EXACT_DOUBLE = 1e16


def _largest_finite(column: pa.ChunkedArray) -> float:
    """Return the largest absolute finite value of a floating column (0 when none)."""
    values = pc.abs(pc.cast(column, pa.float64()))
    finite = pc.filter(values, pc.is_finite(values))
    top = pc.max(finite).as_py() if len(finite) else None
    return 0.0 if top is None else float(top)


def _json_value_sql(name: str, series: pd.Series | None, column: pa.ChunkedArray) -> str | None:
    """Return the SQL of one column's JSON value (as json_bytes' rows have it), None: can't.

    ``series``: the frame's column the Arrow ``column`` was made from (None: rows given as
    Arrow, where a time is a timestamp column)."""
    ident = '"' + name.replace('"', '""') + '"'
    kind = column.type
    if _is_time(series) if series is not None else pa.types.is_timestamp(kind):
        if pa.types.is_timestamp(kind) and kind.unit == "us":
            # Formatted as a naive UTC time: the same text, without a time zone's conversion
            # per value (half the cost).
            return f"strftime(make_timestamp(epoch_us({ident})), '%Y-%m-%dT%H:%M:%S.%gZ')"
        return f"strftime({ident}, '%Y-%m-%dT%H:%M:%S.%gZ')"
    if pa.types.is_floating(kind):
        if series is not None:
            values = np.asarray(series.astype("float64"), dtype="float64")
            finite = values[np.isfinite(values)]
            top = float(np.abs(finite).max()) if len(finite) else 0.0
        else:
            top = _largest_finite(column)
        if top >= _EXACT_DOUBLE:
            return None
        return f"CASE WHEN isfinite({ident}) THEN {ident} END"
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        kind = kind.value_type
    simple = (
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_integer(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_null(kind)
    )
    return ident if simple else None


def _json_rows_sql(frame: Any) -> tuple[str, pa.Table | None] | None:
    """Return (the SQL of ``frame``'s rows as JSON objects, each after its ``,\\n``
    separator, in column ``j``; the Arrow table to register as ``frame``, None for rows kept
    in a file), or None for a frame DuckDB cannot write as json_bytes does."""
    from reports.sql import StoredRows

    stored = frame if isinstance(frame, StoredRows) else None
    if stored is not None:
        frame = _stored_schema(stored)
        if frame is None:
            return None
    if isinstance(frame, pa.Table):
        if (frame.num_rows == 0 and stored is None) or not frame.num_columns:
            return None
        names = list(frame.column_names)
        if len(set(names)) != len(names):
            return None
        table = frame
    else:
        if len(frame) == 0 or not len(frame.columns) or not frame.columns.is_unique:
            return None
        names = [str(c) for c in frame.columns]
    if len({n.lower() for n in names}) != len(names):  # struct keys are case-blind
        return None
    if not isinstance(frame, pa.Table):
        try:
            table = pa.Table.from_pandas(frame.set_axis(names, axis=1), preserve_index=False)
        except (pa.ArrowException, TypeError, ValueError):
            return None
    fields = []
    for name in names:
        series = None if isinstance(frame, pa.Table) else frame[name]
        value = _json_value_sql(name, series, table.column(name))
        if value is None:
            return None
        fields.append("'" + name.replace("'", "''") + "': " + value)
    # Each row after its separator: the lines' text, end to end, is the rows joined, once the
    # first separator is dropped. Column names are quoted identifiers and literals, the source
    # a quoted path; no value is spliced in.
    source = "frame" if stored is None else f"({stored.sql()})"
    sql = "SELECT ',\n' || to_json({" + ", ".join(fields) + f"}})::VARCHAR AS j FROM {source}"  # noqa: S608
    return sql, (None if stored is not None else table)


def _json_connection() -> duckdb.DuckDBPyConnection:
    import duckdb

    con = duckdb.connect(config={"threads": 2})
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    return con


def _json_line_chunks(frame: Any, rows: int = 100_000) -> Iterator[memoryview] | None:
    """Return pieces of ``frame``'s rows as JSON objects joined by ``,\\n`` (the pieces
    joined as they are); None for a frame DuckDB cannot write as json_bytes does.

    ``frame`` may be the rows a frame is made from (ReportResult.rows_source: Arrow, or rows
    kept in a file, scanned in place): the same JSON, without the frame. Rows kept in a file
    whose JSON text is kept beside it (:func:`keep_json_text`) are written from that text."""
    from reports.sql import StoredRows

    if isinstance(frame, StoredRows):
        kept = kept_text_source(frame)
        if kept is not None:
            return text_chunks(kept[0], kept[1], rows)
    plan = _json_rows_sql(frame)
    if plan is None:
        return None
    sql, table = plan

    def batches() -> Iterator[memoryview]:
        con = _json_connection()
        try:
            if table is not None:
                con.register("frame", table)
            skip = 2
            for batch in con.sql(sql).to_arrow_reader(rows):
                lines = batch.column(0)
                if len(lines) == 0:
                    continue
                text = text_of(lines)
                yield text[skip:]
                skip = 0
        finally:
            con.close()

    return batches()


# Kept JSON text: each row's JSON (as _json_rows_sql writes it) computed once with the rows a
# store version keeps (reports.query, the model's ROW_PARTS) and written LZ4-compressed beside
# them; an answer from those rows is then written by reading the text back (Arrow's Parquet
# reader: a fraction of formatting a million rows again). Changing how a row's JSON is written
# changes what the kept model holds: bump reports.model.MODEL_FORMAT.
# Row groups (and batches read) of 16,384 rows: a few MB of text at a time, read from the cache
# (a million rows in batches of 100,000 took twice the CPU time and twice the memory). LZ4: the
# text reads back in about 0.5 CPU s per 580 MB where zstd took 0.8-1.0 s, for 1.8 times the disk.
KEPT_TEXT_PARQUET: Final = f"FORMAT parquet, COMPRESSION lz4_raw, ROW_GROUP_SIZE {KEPT_TEXT_ROWS}"
# Kept for files of at most this many rows (~0.5 GB of text per million rows at 1M events; a
# 10M-event store would keep ~5 GB): beyond, the rows are formatted when asked, as before.
KEPT_TEXT_MAX_ROWS: Final = 2_000_000


def keep_json_text(stored: Any, subset: bool = False) -> bool:
    """Write the JSON text of every row of ``stored``'s file (reports.sql.StoredRows: its
    ``columns`` and ``values``, whatever its condition; ``subset``: of the rows its condition
    holds) to its ``text_path()``, in file order; False when its rows are not written so (e.g.
    floats: their largest value decides) or the file holds more than ``KEPT_TEXT_MAX_ROWS``
    rows."""
    from dataclasses import replace

    import pyarrow.parquet as pq

    if pq.ParquetFile(stored.path).metadata.num_rows > KEPT_TEXT_MAX_ROWS:
        return False
    every = stored if subset else replace(stored, where="TRUE")
    plan = _json_rows_sql(every)
    if plan is None:
        return False
    sql, _ = plan
    target = stored.subset_text_path() if subset else every.text_path()
    tmp = f"{target}.{os.getpid()}.tmp"
    con = _json_connection()
    try:
        con.execute("SET preserve_insertion_order = true")  # file order: rows match by position
        literal = "'" + tmp.replace("'", "''") + "'"
        con.execute(f"COPY ({sql}) TO {literal} ({KEPT_TEXT_PARQUET})")
        os.replace(tmp, target)
    finally:
        con.close()
        Path(tmp).unlink(missing_ok=True)
    return True


def kept_text_source(stored: Any) -> tuple[str, pa.Array | None] | None:
    """Return (the kept JSON text of ``stored``'s rows, which of its rows ``stored``'s condition
    holds: None for all) when text is kept for its columns and holds the file's rows, else None
    (reports.sql.StoredRows; the text written by :func:`keep_json_text`). The text of the rows
    the condition holds, when the model keeps it (correlation without noise), is read first."""
    import pyarrow.parquet as pq

    own = stored.subset_text_path()
    if stored.where.strip().upper() != "TRUE" and os.path.exists(own):
        return own, None  # written with the model from the same file (atomically)
    path = stored.text_path()
    if not os.path.exists(path):
        return None
    rows = pq.ParquetFile(path).metadata.num_rows
    if rows != pq.ParquetFile(stored.path).metadata.num_rows:
        return None
    keep = None
    if stored.where.strip().upper() != "TRUE":
        # Which rows the condition holds, in file order (DuckDB keeps the file's order).
        con = _json_connection()
        try:
            source = "read_parquet('" + stored.path.replace("'", "''") + "')"
            sql = f"SELECT coalesce(({stored.where}), false) AS k FROM {source}"  # noqa: S608
            keep = con.sql(sql).to_arrow_table().column(0).combine_chunks()
        finally:
            con.close()
        if len(keep) != rows:
            return None
        if keep.true_count == rows:
            keep = None  # every row: no mask to apply (nor to keep)
    return path, keep


def _stored_schema(stored: Any) -> pa.Table | None:
    """Return no rows of ``stored`` (reports.sql.StoredRows) with its columns' types, for
    _json_value_sql; None when it holds floats (their largest value decides the writing)."""
    schema = stored.table_of(0)
    if any(pa.types.is_floating(f.type) for f in schema.schema):
        return None
    return schema


def write_json_rows(frame: Any, out: str | Path | None, keeper: Keeper | None = None) -> bool:
    """Write json_bytes(frame) to ``out`` batch by batch (atomically; None: to stdout); False:
    not written (a frame DuckDB cannot write so; the caller renders it whole). ``frame`` may be
    a result's rows (ReportResult.rows_source): the JSON its frame would give. ``keeper``
    keeps the answer too (ingest.kept.Keeper; rows from kept JSON text: a note naming it)."""
    from reports.sql import StoredRows

    kept = kept_text_source(frame) if isinstance(frame, StoredRows) else None
    if kept is not None:
        chunks: Iterator[memoryview] | None = text_chunks(kept[0], kept[1], 100_000)
        if keeper is not None:
            keeper.text(*kept)
    else:
        chunks = _json_line_chunks(frame)
    if chunks is None:
        return False
    given = chunks

    def write(fh: IO[bytes]) -> None:
        write_rows(fh if keeper is None else keeper.tee(fh), given)

    if out is None:
        write(sys.stdout.buffer)
        sys.stdout.buffer.flush()
    else:
        write_atomic(out, write)
    return True


# --- spreadsheets -------------------------------------------------------------------------


def neutralise(frame: pd.DataFrame) -> pd.DataFrame:
    """Return a copy whose text cells starting with a formula trigger get a leading ``'``."""
    out = frame.copy()
    for name in out.columns:
        s = out[name]
        if _is_text(s) and not _is_time(s):
            text = s.astype("str")
            risky = text.str.startswith(FORMULA_TRIGGERS).fillna(False).astype(bool)
            if risky.any():
                out[name] = text.where(~risky, "'" + text)
    return out


def _csv_ready(frame: pd.DataFrame) -> pd.DataFrame:
    out = neutralise(frame)
    for name in out.columns:
        s = out[name]
        if _is_time(s):
            out[name] = iso_z(s)
        elif pd.api.types.is_bool_dtype(s.dtype):
            out[name] = s.map({True: "true", False: "false"}).astype("object")
    return out


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """Return ``frame`` as UTF-8 CSV: ISO Z times, ``true``/``false``, empty for null."""
    ready = _csv_ready(frame)
    buf = io.StringIO()
    ready.to_csv(buf, index=False, lineterminator="\n")
    text = buf.getvalue()
    if "\r" in text:
        # The csv writer quotes only fields holding a line-terminator character, so with "\n" a
        # bare CR stays unquoted and spreadsheets start a new row there (and a formula with it).
        # RFC 4180's CRLF makes every field holding CR or LF quoted.
        buf = io.StringIO()
        ready.to_csv(buf, index=False, lineterminator="\r\n")
        text = buf.getvalue()
    return text.encode("utf-8")


def read_csv(source: str | Path | IO[bytes], like: pd.DataFrame) -> pd.DataFrame:
    """Return a CSV written by :func:`csv_bytes` read back with the dtypes of ``like``.

    Neutralised cells lose their leading ``'`` again.
    """
    raw = pd.read_csv(source, dtype="str", keep_default_na=False, na_values=[""])
    out: dict[str, pd.Series] = {}
    for name in like.columns:
        s = raw[name] if name in raw.columns else pd.Series(pd.NA, index=raw.index, dtype="str")
        dtype = like[name].dtype
        if _is_time(like[name]):
            out[name] = pd.to_datetime(s, utc=True, format="ISO8601").astype(dtype)
        elif pd.api.types.is_bool_dtype(dtype):
            out[name] = s.map({"true": True, "false": False}).astype(dtype)
        elif pd.api.types.is_numeric_dtype(dtype):
            out[name] = pd.to_numeric(s).astype(dtype)
        else:
            quoted = s.str.startswith(tuple("'" + t for t in FORMULA_TRIGGERS)).fillna(False)
            out[name] = s.where(~quoted.astype(bool), s.str.slice(1)).astype(dtype)
    return pd.DataFrame(out)


_SHEET_BAD = re.compile(r"[\[\]:*?/\\]")


def _sheet_name(name: str, used: set[str]) -> str:
    base = _SHEET_BAD.sub("_", name)[:31] or "sheet"
    candidate, n = base, 1
    while candidate.lower() in used:
        n += 1
        candidate = f"{base[: 31 - len(str(n)) - 1]}_{n}"
    used.add(candidate.lower())
    return candidate


def xlsx_bytes(sheets: Mapping[str, pd.DataFrame]) -> bytes:
    """Return an XLSX workbook with one sheet per frame; text is never a formula or a link."""
    buf = io.BytesIO()
    used: set[str] = set()
    with pd.ExcelWriter(
        buf,
        engine="xlsxwriter",
        datetime_format="yyyy-mm-dd hh:mm:ss.000",
        engine_kwargs={
            "options": {
                "strings_to_formulas": False,
                "strings_to_urls": False,
                "strings_to_numbers": False,
                "nan_inf_to_errors": False,
            }
        },
    ) as writer:
        for name, frame in sheets.items():
            out = neutralise(frame)
            for col in out.columns:
                s = out[col]
                if isinstance(s.dtype, pd.DatetimeTZDtype):
                    # Excel has no time zones: cells hold UTC wall time.
                    out[col] = s.dt.tz_convert("UTC").dt.tz_localize(None)
                elif _is_text(s):
                    out[col] = s.astype("object").where(s.notna(), None)
            out.to_excel(writer, sheet_name=_sheet_name(name, used), index=False)
    return buf.getvalue()


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    """Return ``frame`` as parquet (types kept exactly)."""
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return buf.getvalue()


# --- objects as tables --------------------------------------------------------------------


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Return a nested object as ``{"a.b.c": value}`` (lists become JSON text)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            out[name] = orjson.dumps(jsonable(value)).decode()
        else:
            out[name] = value
    return out


def object_frame(data: Mapping[str, Any]) -> pd.DataFrame:
    """Return an object as a two-column ``key``/``value`` frame (times as ISO Z text)."""
    flat = flatten(data)
    values = [jsonable(v) for v in flat.values()]
    return pd.DataFrame(
        {"key": pd.Series(list(flat), dtype="str"), "value": pd.Series(values, dtype="object")}
    )


def result_sheets(name: str, result: ReportResult) -> dict[str, pd.DataFrame]:
    """Return a result as named tables: its rows, and its object as key/value pairs."""
    sheets: dict[str, pd.DataFrame] = {}
    if result.frame is not None:
        sheets[name] = result.frame
    if result.data:
        sheets[name if result.frame is None else f"{name} info"] = object_frame(result.data)
    return sheets


def render(name: str, result: ReportResult, fmt: str, shape: str = "rows") -> bytes:
    """Return a report result in ``fmt`` (csv, json, xlsx, parquet)."""
    if fmt == "json":
        if shape == "object" or result.frame is None:
            return json_bytes(result.data or {})
        return json_bytes(result.frame)
    if fmt == "xlsx":
        return xlsx_bytes(result_sheets(name, result))
    table = result.frame if result.frame is not None else object_frame(result.data or {})
    if fmt == "csv":
        return csv_bytes(table)
    if fmt == "parquet":
        return parquet_bytes(table)
    raise UsageError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")


def frame_bytes(frame: pd.DataFrame, fmt: str, sheet: str = "data") -> bytes:
    """Return a plain frame (an exported table) in ``fmt``."""
    return render(sheet, ReportResult(frame=frame), fmt)


# --- files --------------------------------------------------------------------------------


def write_output(data: bytes, out: str | Path | None, stream: IO[bytes] | None = None) -> None:
    """Write ``data`` to ``out`` (atomically) or, when None, to ``stream`` (default stdout)."""
    if out is not None:
        write_atomic(out, data)
        return
    if stream is None:
        import sys

        stream = sys.stdout.buffer
    stream.write(data)
    stream.flush()


# --- composite exports --------------------------------------------------------------------


def flat_events(inputs: Inputs) -> pd.DataFrame:
    """Return events with their steps and modified properties as text columns (one file)."""
    return with_children_text(inputs.events, inputs.steps, inputs.modified_properties).reset_index(
        drop=True
    )


# --- support pack -------------------------------------------------------------------------


# What a support pack and the flat events export read (reports.service loads just these).
SUPPORT_PACK_TABLES = ONE_USER_TABLES
FLAT_TABLES = ("events", "steps", "modified_properties")


def wiki_requests_for(
    inputs: Inputs, events: pd.DataFrame, filters: Filters | None = None
) -> pd.DataFrame:
    """Return the wiki's SCIM requests about the objects of ``events`` (any time in
    ``inputs``' requests), oldest first.

    A request is about the object when its path id is a target id, its externalId a source id,
    or its userName a UPN (case-insensitively). ``event_id`` is the Entra event the request
    answers (the model's nearest-within-±120 s match, as in correlation and failures; null when
    no event explains it). Over one user's rows, derived once per those ids and ``filters`` (the
    requests read): the diagnosis and the wiki-requests answer share it (Model.of_rows).
    """
    from reports.model import model_of

    model = model_of(inputs)
    # All the rule reads of the events: their target ids, source ids and UPNs.
    targets = tuple(events["target_id"].dropna().unique())
    sources = tuple(events["source_id"].dropna().unique())
    upns = tuple(events["source_upn"].dropna().str.lower().unique())

    def compute() -> pd.DataFrame:
        req = inputs.scim_requests
        about = (
            isin(req["resource_id"], targets)
            | isin(req["external_id"], sources)
            | isin(req["user_name"].str.lower(), upns)
        )
        out = req.loc[about].sort_values("received_at", kind="stable").reset_index(drop=True)
        matches = model.matches.drop_duplicates("request_id", keep="last")
        answered = matches.set_index("request_id")["event_id"]
        out.insert(0, "event_id", answered.reindex(out["request_id"].to_numpy()).to_numpy())
        out["event_id"] = out["event_id"].astype("str")
        return out

    key = ("wiki-requests", targets, sources, upns, filters or Filters())
    return model.of_rows(key, compute)


def support_pack(
    inputs: Inputs,
    user: str,
    filters: Filters | None = None,
    now: pd.Timestamp | None = None,
) -> dict[str, pd.DataFrame]:
    """Return one user's support pack as named tables.

    ``user``: ids, scope, wiki state, verdict, when it will be provisioned and the recommended
    fix with its owner; then ``events`` (with steps and modified properties as text), ``steps``,
    ``modified_properties`` and ``wiki_requests`` (each with the event it answers).
    """
    from reports.diagnosis import user_summary

    tl = user_timeline(inputs, user, filters)
    summary = user_summary(inputs, user, filters, now, tl.events)
    return {
        "user": object_frame(summary),
        "events": timeline_frame(tl),
        "steps": tl.steps,
        "modified_properties": tl.modified_properties,
        "wiki_requests": wiki_requests_for(inputs, tl.events, filters),
    }


def support_pack_zip(pack: Mapping[str, pd.DataFrame]) -> bytes:
    """Return a support pack as a zip: one CSV and one JSON file per table."""
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, frame in pack.items():
            zf.writestr(f"{name}.csv", csv_bytes(frame))
            zf.writestr(f"{name}.json", json_bytes(frame))
    return buf.getvalue()


def rounded(frame: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """Return ``frame`` with float cells rounded to ``digits`` decimals (text and ints untouched).

    Also rounds floats held in object columns (an object's key/value frame), so 48.4952399999
    reads 48.495 in a preview and a download.
    """
    out = frame.copy()
    for name in out.columns:
        s = out[name]
        if pd.api.types.is_float_dtype(s.dtype):
            out[name] = s.round(digits)
        elif s.dtype == object:
            out[name] = s.map(
                lambda v: round(v, digits) if isinstance(v, float) and math.isfinite(v) else v
            )
    return out


def rounded_result(result: ReportResult, digits: int = 3) -> ReportResult:
    """Return a result whose frame and object have their floats rounded to ``digits``."""

    def walk(value: Any) -> Any:
        if isinstance(value, float) and math.isfinite(value):
            return round(value, digits)
        if isinstance(value, Mapping):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    return ReportResult(
        frame=None if result.frame is None else rounded(result.frame, digits),
        data=None if result.data is None else walk(result.data),
        hidden_noise=result.hidden_noise,
    )


def display_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Return ``frame`` safe for an Arrow-backed table view: mixed object columns become text."""
    out = frame.copy()
    for name in out.columns:
        s = out[name]
        if s.dtype == object:
            kinds = {type(v) for v in s.dropna()}
            if len(kinds) > 1 or (kinds and not kinds <= {str}):
                out[name] = s.map(
                    lambda v: (
                        None
                        if v is None or (isinstance(v, float) and not math.isfinite(v))
                        else (
                            orjson.dumps(jsonable(v)).decode()
                            if isinstance(v, (list, dict, tuple))
                            else str(v)
                        )
                    )
                ).astype("object")
    return out
