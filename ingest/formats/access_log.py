"""Web-server access logs (combined log format) of the wiki's SCIM path -> ``scim_requests``.

Accepted lines: Common or Combined Log Format, possibly with more fields after it; when the last
field is a number (`... "referer" "user-agent" 0.041`, or `rt=0.041`) it is the request time: a
number with a decimal point is seconds (nginx ``$request_time``), a whole number is microseconds
(Apache ``%D``). Only requests whose path
contains ``/scim/`` are kept; other requests are skipped. A line that is not in the format is bad
input. Access logs carry no request id, so ``request_id`` is a hash of the line's number and
content: re-ingesting the same file adds nothing.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any, Final

import pandas as pd

from ingest.errors import BadInput
from ingest.formats import FileFormat, Frames, Options, Source, register
from ingest.schema import conform

log = logging.getLogger(__name__)

CHUNK_ROWS: Final = 100_000
SCIM_MARK: Final = "/scim/"
REMEDY: Final = "only Common/Combined Log Format lines are read; nothing was stored"

LINE_RE: Final = re.compile(
    r"^(?P<client>\S+) \S+ \S+ \[(?P<time>[^\]]+)\] "
    r'"(?P<request>(?:[^"\\]|\\.)*)" (?P<status>\d{3}) (?:\d+|-)'
    r"(?P<rest>(?: .*)?)$"
)
# The request time, when logged, is the line's last field: `0.041`, `35000`, `rt=0.041`.
RT_RE: Final = re.compile(r"(?:^|\s)(?:[A-Za-z_]+=)?(?P<rt>\d+(?:\.\d+)?)$")
TIME_FORMAT: Final = "%d/%b/%Y:%H:%M:%S %z"


def sniff(source: Source) -> bool:
    """True when the first non-empty line is a Common/Combined Log Format line."""
    for line in source.head().splitlines()[:1] or []:
        return bool(LINE_RE.match(line))
    return False


def _latency_ms(rt: str | None) -> float | None:
    if not rt:
        return None
    if "." in rt:
        return float(rt) * 1000.0
    return int(rt) / 1000.0


def line_row(line: str, where: str, line_number: int) -> dict[str, Any] | None:
    """Return the scim_requests row of one log line, None for a non-SCIM request."""
    m = LINE_RE.match(line.rstrip("\r\n"))
    if not m:
        raise BadInput(where, "not a Common/Combined Log Format line", REMEDY)
    parts = m.group("request").split(" ")
    if len(parts) < 2:  # "-" or a garbled request line: not a SCIM request
        return None
    method, path = parts[0], parts[1]
    if SCIM_MARK not in path.lower():
        return None
    # The SCIM module (its HTTP client) is imported only when a log is read.
    from ingest.scim import line_request_id, request_row

    row = request_row(method=method, path=path, status=int(m.group("status")))
    row["request_id"] = line_request_id("log", line_number, line)
    row["received_at"] = m.group("time")
    rt = RT_RE.search(m.group("rest").rstrip())
    row["latency_ms"] = _latency_ms(rt.group("rt") if rt else None)
    row["client"] = m.group("client")
    row["_line"] = line_number
    return row


def _frame(rows: list[dict[str, Any]], source: Source) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    times = pd.to_datetime(df["received_at"], format=TIME_FORMAT, utc=True, errors="coerce")
    bad = times.isna()
    if bad.any():
        first = df.loc[bad, "_line"].iloc[0]
        value = df.loc[bad, "received_at"].iloc[0]
        raise BadInput(f"{source.name}:{first}", f"bad time [{value}]", REMEDY)
    df["received_at"] = times
    return conform("scim_requests", df.drop(columns="_line"))


def parse(source: Source, options: Options) -> Iterator[Frames]:
    """Yield ``scim_requests`` frames for the SCIM requests in an access log."""
    rows: list[dict[str, Any]] = []
    skipped = 0
    for n, line in source.lines():
        if not line.strip():
            continue
        row = line_row(line, f"{source.name}:{n}", n)
        if row is None:
            skipped += 1
            continue
        rows.append(row)
        if len(rows) >= CHUNK_ROWS:
            yield {"scim_requests": _frame(rows, source)}
            rows = []
    if rows:
        yield {"scim_requests": _frame(rows, source)}
    if skipped:
        log.info("%s: skipped %d requests outside the SCIM path", source.name, skipped)


FORMAT = register(
    FileFormat(
        kind="access_log",
        description="web-server access log (Common/Combined Log Format) of the SCIM path",
        sniff=sniff,
        parse=parse,
        priority=40,
        tables=("scim_requests",),
    )
)
