"""The wiki's SCIM audit records (JSON Lines, one object per request) -> ``scim_requests``.

The record format is documented for wiki operators in docs/scim-audit-format.md; the columns
are derived by :func:`ingest.scim.request_row`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import orjson
import pandas as pd

from ingest.errors import BadInput
from ingest.formats import FileFormat, Frames, Options, Source, register
from ingest.schema import conform
from ingest.scim import line_request_id, request_row
from ingest.times import parse_times

log = logging.getLogger(__name__)

CHUNK_ROWS = 50_000
REQUIRED = ("time", "method", "path")
REMEDY = "fix or remove that line (see docs/scim-audit-format.md); nothing was stored"


def _first_record(source: Source) -> dict[str, Any] | None:
    for line in source.head().split("\n"):  # not splitlines(): U+2028 may sit in a string
        if line.strip():
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                return None
            return obj if isinstance(obj, dict) else None
    return None


def sniff(source: Source) -> bool:
    """True when the first line is a JSON object with the audit record's time/method/path."""
    rec = _first_record(source)
    return rec is not None and all(k in rec for k in REQUIRED)


def _int_or_none(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _float_or_none(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def record_row(rec: dict[str, Any], where: str, line_number: int, line: str) -> dict[str, Any]:
    """Return the scim_requests row of one audit record (raises BadInput naming ``where``)."""
    missing = [k for k in REQUIRED if not rec.get(k)]
    if missing:
        raise BadInput(where, f"audit record without {', '.join(missing)}", REMEDY)
    method, path = rec["method"], rec["path"]
    if not isinstance(rec["time"], str):
        raise BadInput(where, f"`time` is not an ISO 8601 string: {rec['time']!r}", REMEDY)
    if not isinstance(method, str) or not isinstance(path, str):
        raise BadInput(where, "`method` and `path` must be strings", REMEDY)
    status_raw = rec.get("status")
    status = _int_or_none(status_raw)
    if status_raw is not None and status is None:
        raise BadInput(where, f"`status` is not an HTTP status code: {status_raw!r}", REMEDY)
    row = request_row(
        method=method,
        path=path,
        status=status,
        request=rec.get("request"),
        response=rec.get("response"),
        response_headers=rec.get("response_headers"),
    )
    rid = rec.get("request_id")
    row["request_id"] = (
        str(rid) if rid not in (None, "") else line_request_id("audit", line_number, line)
    )
    row["received_at"] = rec["time"]
    row["latency_ms"] = _float_or_none(rec.get("latency_ms"))
    client = rec.get("client")
    row["client"] = None if client is None else str(client)
    return row


def _frame(rows: list[dict[str, Any]], source: Source) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    times = parse_times(df["received_at"])
    bad = times.isna() & df["received_at"].notna()
    if bad.any():
        offset = int(bad.to_numpy().nonzero()[0][0])
        raise BadInput(
            f"{source.name}:{rows[offset]['_line']}",
            f"`time` is not an ISO 8601 time: {df['received_at'].iloc[offset]!r}",
            REMEDY,
        )
    df["received_at"] = times
    # pandas accepts year 0, which no Python datetime (reports, exports) can hold.
    years = df["received_at"].dt.year
    out_of_range = (years < 1) | (years > 9999)
    if out_of_range.any():
        offset = int(out_of_range.to_numpy().nonzero()[0][0])
        raise BadInput(
            f"{source.name}:{rows[offset]['_line']}",
            f"`time` is out of range: {rows[offset]['received_at']!r}",
            REMEDY,
        )
    return conform("scim_requests", df.drop(columns="_line"))


def parse(source: Source, options: Options) -> Iterator[Frames]:
    """Yield ``scim_requests`` frames, one per chunk of records."""
    rows: list[dict[str, Any]] = []
    for n, line in source.lines():
        if not line.strip():
            continue
        where = f"{source.name}:{n}"
        try:
            rec = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise BadInput(where, f"not valid JSON ({exc})", REMEDY) from None
        if not isinstance(rec, dict):
            raise BadInput(where, "an audit record must be a JSON object", REMEDY)
        row = record_row(rec, where, n, line)
        row["_line"] = n
        rows.append(row)
        if len(rows) >= CHUNK_ROWS:
            yield {"scim_requests": _frame(rows, source)}
            rows = []
    if rows:
        yield {"scim_requests": _frame(rows, source)}


FORMAT = register(
    FileFormat(
        kind="scim_audit",
        description="the wiki's SCIM audit records, JSON Lines (docs/scim-audit-format.md)",
        sniff=sniff,
        parse=parse,
        priority=20,
        tables=("scim_requests",),
    )
)
