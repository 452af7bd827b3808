"""A loopback HTTP server that speaks the Log Analytics query API's wire format, for tests.

``POST /v1/workspaces/{id}/query`` with ``{"query", "timespan", "workspaces"}`` answers
``{"tables": [{"name": "PrimaryResult", "columns": [...], "rows": [...]}]}``. The KQL is
EXECUTED for real: the ``duckdb-kql`` package translates it to SQL and DuckDB runs it over an
``AADProvisioningLogs`` table holding the rows the test put in (a temporary view per request cuts
that table to the body's ``timespan``, as the service intersects it with the query).

Service behaviour it reproduces (reference/azure/log-analytics-query-api.md):

* the per-query result limits: more than ``max_rows`` rows or ``max_bytes`` of row JSON gives a
  **200** carrying the truncated prefix and ``"error": {"code": "PartialError", ...}`` whose inner
  error is ``E_QUERY_RESULT_SET_TOO_LARGE`` (the limits are small in tests, so pulls must split);
* a bearer token to require (401 ``InvalidTokenError``), a denied identity (403
  ``InsufficientAccessError``), an unknown workspace (404 ``WorkspaceNotFoundError``), a KQL
  syntax error (400 ``BadArgumentError``), 204 for a workspace with no data when asked;
* scripted :class:`Fault`\\ s on matching queries: any status with an error body and an optional
  ``Retry-After`` (429, 504, ...), a partial error that is not about size, a slow answer;
* the ``Prefer: wait=N`` header is recorded, and each response's size is counted, so benchmarks
  can report bytes moved.

``with LaFixture() as la: la.add_rows([...])``; :func:`la_row` turns a Graph-shaped
provisioning record (``tests.support.graph_server.make_record``) into a table row: PascalCase
columns, object columns as JSON text with ``Id``/``Name`` casing, ``ResultType`` and friends.
"""

from __future__ import annotations

import contextlib
import functools
import re
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pandas as pd
import pytest

TABLE = "AADProvisioningLogs"
WORKSPACE = "11111111-2222-3333-4444-555555555555"
# The table's columns (Azure Monitor reference) and their KQL types.
COLUMNS: dict[str, str] = {
    "AADTenantId": "string",
    "Category": "string",
    "ChangeId": "string",
    "CorrelationId": "string",
    "CycleId": "string",
    "DurationMs": "long",
    "Id": "string",
    "InitiatedBy": "string",
    "JobId": "string",
    "ModifiedProperties": "string",
    "OperationName": "string",
    "OperationVersion": "string",
    "ProvisioningAction": "string",
    "ProvisioningStatusInfo": "string",
    "ProvisioningSteps": "string",
    "ResultDescription": "string",
    "ResultSignature": "string",
    "ResultType": "string",
    "ServicePrincipal": "string",
    "SourceIdentity": "string",
    "SourceSystem": "string",
    "TargetIdentity": "string",
    "TargetSystem": "string",
    "TenantId": "string",
    "TimeGenerated": "datetime",
    "Type": "string",
}
_SQL_TYPES = {"string": "VARCHAR", "long": "BIGINT", "datetime": "TIMESTAMPTZ"}
TOO_LARGE = "E_QUERY_RESULT_SET_TOO_LARGE"


@dataclass
class Fault:
    """A scripted answer for the next ``times`` queries whose text contains ``match``.

    ``kind``: ``status`` (answer ``status`` with an error body, plus ``Retry-After`` when set),
    ``partial`` (200 with the rows and a PartialError whose inner error is ``message``, not a
    size limit), ``slow`` (sleep ``delay`` s, then answer normally). ``skip`` lets that many
    matching queries through first.
    """

    kind: str
    match: str = ""
    times: int = 1
    status: int = 503
    retry_after: str | None = None
    delay: float = 0.0
    skip: int = 0
    code: str = ""
    message: str = "Query execution was cancelled by the engine (E_QUERY_CANCELLED)."


@dataclass
class Logged:
    """A query the server received and how it answered."""

    query: str
    timespan: str | None
    prefer: str | None
    status: int
    rows: int
    bytes: int
    authorization: str | None
    partial: str | None = None
    at: float = 0.0
    execute_s: float = 0.0  # running the translated SQL (not the KQL-to-SQL translation)


def _kql_time(value: Any) -> str | None:
    """Return a datetime cell as the service writes it (ISO 8601, UTC, Z)."""
    if value is None:
        return None
    ts = pd.Timestamp(value)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _kql_type(sql_type: str) -> str:
    t = sql_type.upper()
    if t.startswith("TIMESTAMP") or t == "DATE":
        return "datetime"
    if t in ("BIGINT", "INTEGER", "HUGEINT", "SMALLINT", "TINYINT", "UBIGINT", "UINTEGER"):
        return "long"
    if t in ("DOUBLE", "FLOAT", "REAL") or t.startswith("DECIMAL"):
        return "real"
    if t == "BOOLEAN":
        return "bool"
    if t == "JSON" or t.endswith("[]") or t.startswith("STRUCT") or t.startswith("MAP"):
        return "dynamic"
    return "string"


_DURATION = re.compile(
    r"^P(?:T)?(?:(\d+(?:\.\d+)?)D)?(?:T)?(?:(\d+(?:\.\d+)?)H)?"
    r"(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?$"
)


def _parse_duration(text: str) -> timedelta:
    m = _DURATION.match(text.strip())
    if not m or not any(m.groups()):
        raise ValueError(f"not an ISO 8601 duration: {text!r}")
    d, h, mi, s = (float(g) if g else 0.0 for g in m.groups())
    return timedelta(days=d, hours=h, minutes=mi, seconds=s)


def _parse_instant(text: str) -> datetime:
    ts = pd.Timestamp(text)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.to_pydatetime()


def parse_timespan(text: str | None, now: datetime) -> tuple[datetime, datetime] | None:
    """Return ``[start, end)`` of a body ``timespan`` (``start/end``, ``start/PT..``, ``PT..``)."""
    if not text:
        return None
    if "/" in text:
        a, b = text.split("/", 1)
        start = _parse_instant(a)
        end = start + _parse_duration(b) if b.startswith("P") else _parse_instant(b)
        return start, end
    return now - _parse_duration(text), now


@dataclass
class LaFixture:
    """The workspace's state and controls; start with ``start()`` or as a context manager."""

    workspace_id: str = WORKSPACE
    token: str | None = "la-test-token"  # None: accept any request
    max_rows: int = 500_000
    max_bytes: int = 64 * 1024 * 1024
    denied: str | None = None  # a 403 message: the identity lacks access to the workspace
    legacy_action: bool = False  # the old column `Action` instead of `ProvisioningAction`
    empty_is_204: bool = False
    faults: list[Fault] = field(default_factory=list)
    log: list[Logged] = field(default_factory=list)

    def __post_init__(self) -> None:
        import duckdb_kql

        self._lock = threading.Lock()
        self._db_lock = threading.Lock()
        self._con = duckdb_kql.connect()
        cols = dict(COLUMNS)
        if self.legacy_action:
            cols = {("Action" if k == "ProvisioningAction" else k): v for k, v in cols.items()}
        self.columns = cols
        ddl = ", ".join(f'"{k}" {_SQL_TYPES[v]}' for k, v in cols.items())
        self._con.execute(f"CREATE TABLE _rows ({ddl})")
        self._server: ThreadingHTTPServer | None = None
        self._last_execute_s = 0.0
        self.port = 0

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> LaFixture:
        """Serve on a free loopback port in a daemon thread; return self."""
        handler = type("Handler", (_Handler,), {"fixture": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> LaFixture:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The API root to pass as ``--la-url``."""
        return f"http://127.0.0.1:{self.port}"

    # --- data -----------------------------------------------------------------------------------

    def add_rows(self, rows: Iterable[dict[str, Any]]) -> int:
        """Append table rows (dicts keyed by column name); return how many."""
        frame = pd.DataFrame(list(rows))
        if frame.empty:
            return 0
        for name, kind in self.columns.items():
            if name not in frame.columns:
                frame[name] = None
            if kind == "datetime":
                frame[name] = pd.to_datetime(frame[name], utc=True, format="ISO8601")
            elif kind == "long":
                frame[name] = pd.to_numeric(frame[name]).astype("Int64")
            else:
                frame[name] = frame[name].astype("object")
        frame = frame[list(self.columns)]
        with self._db_lock:
            self._con.register("_incoming", frame)
            self._con.execute("INSERT INTO _rows SELECT * FROM _incoming")
            self._con.unregister("_incoming")
        return len(frame)

    def add_parquet(self, path: str) -> int:
        """Append rows from a Parquet file with the table's columns (benchmarks); return count."""
        cols = ", ".join(f'"{c}"' for c in self.columns)
        with self._db_lock:
            before = self.count()
            self._con.execute(f"INSERT INTO _rows SELECT {cols} FROM read_parquet(?)", [path])
            return self.count() - before

    def replicate(self, copies: int, shift: timedelta) -> int:
        """Add ``copies`` shifted copies of the rows with new ids (benchmarks)."""
        with self._db_lock:
            cols = [c for c in self.columns]
            for k in range(1, copies + 1):
                exprs = []
                for c in cols:
                    if c in ("Id", "ChangeId", "CorrelationId", "CycleId"):
                        exprs.append(f"\"{c}\" || '~{k}'")
                    elif c == "TimeGenerated":
                        exprs.append(f'"{c}" + INTERVAL {int(shift.total_seconds()) * k} SECOND')
                    else:
                        exprs.append(f'"{c}"')
                self._con.execute(
                    f"INSERT INTO _rows SELECT {', '.join(exprs)} FROM _rows "
                    "WHERE NOT contains(Id, '~')"
                )
        return self.count()

    def count(self) -> int:
        """Rows in the table."""
        row = self._con.cursor().execute("SELECT count(*) FROM _rows").fetchone()
        return int(row[0]) if row else 0

    # --- faults ---------------------------------------------------------------------------------

    def _take_fault(self, query: str) -> Fault | None:
        with self._lock:
            for f in self.faults:
                if f.times > 0 and f.match in query:
                    if f.skip > 0:
                        f.skip -= 1
                        return None
                    f.times -= 1
                    return f
        return None

    # --- execution ------------------------------------------------------------------------------

    def execute(self, query: str, span: tuple[datetime, datetime] | None) -> dict[str, Any]:
        """Run ``query`` over the rows inside ``span``; return the response's table object."""
        cur = self._con.cursor()
        try:
            where = ""
            params: list[Any] = []
            if span is not None:
                where = " WHERE TimeGenerated >= ? AND TimeGenerated < ?"
                params = [span[0], span[1]]
            view = f"CREATE OR REPLACE TEMP VIEW {TABLE} AS SELECT * FROM main._rows{where}"
            # A view cannot take parameters: inline the two instants as literals.
            for p in params:
                view = view.replace("?", f"TIMESTAMPTZ '{p.isoformat()}'", 1)
            cur.execute(view)
            sql = _to_sql(query)
            t0 = time.perf_counter()
            rel = cur.sql(sql)
            names = list(rel.columns)
            kinds = [_kql_type(str(t)) for t in rel.types]
            rows = rel.fetchall()
            self._last_execute_s = time.perf_counter() - t0
        finally:
            cur.close()
        out_rows = []
        for row in rows:
            cells: list[Any] = []
            for kind, v in zip(kinds, row, strict=True):
                if kind == "datetime":
                    cells.append(_kql_time(v))
                elif kind == "dynamic" and isinstance(v, str):
                    cells.append(orjson.loads(v))
                elif kind == "real" and v is not None:
                    cells.append(float(v))
                elif kind == "long" and v is not None:
                    cells.append(int(v))
                else:
                    cells.append(v)
            out_rows.append(cells)
        return {
            "name": "PrimaryResult",
            "columns": [{"name": n, "type": k} for n, k in zip(names, kinds, strict=True)],
            "rows": out_rows,
        }


@functools.lru_cache(maxsize=256)
def _to_sql(query: str) -> str:
    """Translate KQL to DuckDB SQL with duckdb-kql (its ANTLR parser takes ~1 s on a long query,
    so a query asked again is translated once)."""
    import duckdb_kql

    return str(duckdb_kql.to_sql(query))


def _error(code: str, message: str, inner: dict[str, Any] | None = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message, "details": []}
    if inner:
        err["innererror"] = inner
    return {"error": err}


def _partial(inner_message: str, inner_code: str = "-2133196797") -> dict[str, Any]:
    return {
        "code": "PartialError",
        "message": "There were some errors when processing your query.",
        "details": [
            {
                "code": "EngineError",
                "message": "Something went wrong processing your query on the server.",
                "innererror": {"code": inner_code, "message": inner_message, "severity": 2},
            }
        ],
    }


_STATUS_CODES = {
    400: "BadArgumentError",
    401: "InvalidTokenError",
    403: "InsufficientAccessError",
    404: "WorkspaceNotFoundError",
    429: "TooManyRequests",
    500: "InternalServerError",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}


class _Handler(BaseHTTPRequestHandler):
    fixture: LaFixture
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()

    def _send(
        self,
        status: int,
        doc: dict[str, Any] | None,
        *,
        query: str = "",
        timespan: str | None = None,
        headers: dict[str, str] | None = None,
        rows: int = 0,
        partial: str | None = None,
    ) -> None:
        body = b"" if doc is None else orjson.dumps(doc)
        g = self.fixture
        with g._lock:
            g.log.append(
                Logged(
                    query,
                    timespan,
                    self.headers.get("Prefer"),
                    status,
                    rows,
                    len(body),
                    self.headers.get("Authorization"),
                    partial,
                    time.monotonic(),
                    g._last_execute_s if status == 200 else 0.0,
                )
            )
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-ms-request-id", str(uuid.uuid4()))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        g = self.fixture
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        m = re.fullmatch(r"/v1/workspaces/([^/]+)/query", self.path.split("?")[0])
        if not m:
            self._send(
                404, _error("PathNotFoundError", f"The requested path {self.path} does not exist")
            )
            return
        try:
            body = orjson.loads(raw)
            query = str(body["query"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            self._send(400, _error("BadArgumentError", "The request had some invalid properties"))
            return
        timespan = body.get("timespan")
        if g.token is not None and self.headers.get("Authorization") != f"Bearer {g.token}":
            self._send(
                401,
                _error(
                    "InvalidTokenError",
                    "The provided authentication is not valid for this resource",
                ),
                query=query,
                timespan=timespan,
            )
            return
        if m.group(1) != g.workspace_id:
            self._send(
                404,
                _error("WorkspaceNotFoundError", f"Workspace {m.group(1)} not found"),
                query=query,
                timespan=timespan,
            )
            return
        if g.denied is not None:
            self._send(
                403, _error("InsufficientAccessError", g.denied), query=query, timespan=timespan
            )
            return
        fault = g._take_fault(query)
        if fault and fault.kind == "slow":
            time.sleep(fault.delay)
            fault = None
        if fault and fault.kind == "status":
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            code = fault.code or _STATUS_CODES.get(fault.status, "Error")
            self._send(
                fault.status,
                _error(code, f"scripted {fault.status}"),
                query=query,
                timespan=timespan,
                headers=headers,
            )
            return
        try:
            span = parse_timespan(timespan, datetime.now(UTC))
        except ValueError as exc:
            self._send(400, _error("BadArgumentError", str(exc)), query=query, timespan=timespan)
            return
        try:
            table = g.execute(query, span)
        except Exception as exc:  # a KQL the translator or DuckDB rejects: the service's 400
            first = (
                str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            )
            self._send(
                400,
                _error(
                    "BadArgumentError",
                    "The request had some invalid properties",
                    {"code": "SyntaxError", "message": first},
                ),
                query=query,
                timespan=timespan,
            )
            return
        rows = table["rows"]
        if not rows and g.empty_is_204 and g.count() == 0:
            self._send(204, None, query=query, timespan=timespan)
            return
        doc: dict[str, Any] = {"tables": [table]}
        partial: str | None = None
        if len(rows) > g.max_rows:
            table["rows"] = rows[: g.max_rows]
            partial = "rows"
            doc["error"] = _partial(
                f"Query result set has exceeded the internal record count limit {g.max_rows} "
                f"({TOO_LARGE}; see https://aka.ms/kustoquerylimits)"
            )
        size = 0
        for i, row in enumerate(table["rows"]):
            size += len(orjson.dumps(row))
            if size > g.max_bytes:
                table["rows"] = table["rows"][:i]
                partial = "bytes"
                doc["error"] = _partial(
                    f"Query result set has exceeded the internal data size limit {g.max_bytes} "
                    f"({TOO_LARGE}; see https://aka.ms/kustoquerylimits)"
                )
                break
        if fault and fault.kind == "partial":
            partial = "other"
            doc["error"] = _partial(fault.message, "-2133196801")
        self._send(
            200, doc, query=query, timespan=timespan, rows=len(table["rows"]), partial=partial
        )


# --- rows -----------------------------------------------------------------------------------------


def _pascal(obj: Any) -> Any:
    """Rename ``id``/``displayName`` to ``Id``/``Name`` (the stream's casing) at this level."""
    if not isinstance(obj, dict):
        return obj
    out = {}
    for k, v in obj.items():
        key = {"id": "Id", "displayName": "Name"}.get(k, k)
        out[key] = v
    return out


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def la_row(rec: dict[str, Any], workspace_id: str = WORKSPACE) -> dict[str, Any]:
    """Return the ``AADProvisioningLogs`` row Entra writes for a Graph-shaped record."""
    psi = rec.get("provisioningStatusInfo") or {}
    status = str(psi.get("status") or "")
    err = psi.get("errorInformation") or {}
    steps = [{**s, "details": s.get("details") or {}} for s in rec.get("provisioningSteps") or []]
    props = [
        {"Name": p.get("displayName"), "oldValue": p.get("oldValue"), "newValue": p.get("newValue")}
        for p in rec.get("modifiedProperties") or []
    ]
    return {
        "AADTenantId": rec.get("tenantId"),
        "Category": "ProvisioningLogs",
        "ChangeId": rec.get("changeId"),
        "CorrelationId": rec.get("changeId"),
        "CycleId": rec.get("cycleId"),
        "DurationMs": rec.get("durationInMilliseconds"),
        "Id": rec["id"],
        "InitiatedBy": _json(_pascal(rec.get("initiatedBy"))),
        "JobId": rec.get("jobId"),
        "ModifiedProperties": _json(props),
        "OperationName": "Provisioning activity",
        "OperationVersion": "1.0",
        "ProvisioningAction": str(rec.get("provisioningAction") or "").capitalize() or None,
        "ProvisioningStatusInfo": _json(psi),
        "ProvisioningSteps": _json(steps),
        "ResultDescription": err.get("reason") or "",
        "ResultSignature": err.get("errorCode") or "None",
        "ResultType": status.capitalize(),
        "ServicePrincipal": _json(_pascal(rec.get("servicePrincipal"))),
        "SourceIdentity": _json(_pascal(rec.get("sourceIdentity"))),
        "SourceSystem": _json(_pascal(rec.get("sourceSystem"))),
        "TargetIdentity": _json(_pascal(rec.get("targetIdentity"))),
        "TargetSystem": _json(_pascal(rec.get("targetSystem"))),
        "TenantId": workspace_id,
        "TimeGenerated": rec["activityDateTime"],
        "Type": TABLE,
    }


def make_rows(
    n: int,
    start: datetime,
    span: timedelta,
    *,
    seed: int = 7,
    service_principals: int = 2,
    cycles_per_job: int = 3,
) -> list[dict[str, Any]]:
    """Return ``n`` reproducible rows spread evenly over ``[start, start + span)``.

    Records come from graph_server.make_record, then share cycle ids per job and get some skips
    with out-of-scope or real skip reasons, so every report has something to group.
    """
    import random

    from tests.support.graph_server import make_record

    rng = random.Random(seed)
    sps = [
        (str(uuid.UUID(int=rng.getrandbits(128), version=4)), f"TheOrgWiki {i + 1}")
        for i in range(service_principals)
    ]
    cycles = {
        sp: [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(cycles_per_job)]
        for sp, _ in sps
    }
    step = span / max(1, n)
    out = []
    for i in range(n):
        sp, name = sps[i % len(sps)]
        rec = make_record(rng, start + step * i, sp, name)
        cyc = cycles[sp]
        rec["cycleId"] = cyc[min(len(cyc) - 1, i * len(cyc) // max(1, n))]
        status = rec["provisioningStatusInfo"]["status"]
        if status == "skipped":
            reason = rng.choice(
                ["NotEffectivelyEntitled", "RedundantExport", "ScopingFilterNotSatisfied"]
            )
            rec["provisioningSteps"][0]["details"] = {
                **rec["provisioningSteps"][0]["details"],
                "SkipReason": reason,
            }
        if status == "failure" and i % 3 == 0:
            rec["provisioningStatusInfo"]["errorInformation"]["errorCode"] = (
                "SystemForCrossDomainIdentityManagementServiceIncompatible"
            )
        if i % 17 == 0:
            rec["sourceIdentity"]["id"] = ""  # falls back to the UPN as the object key
        out.append(la_row(rec))
    return out


@pytest.fixture
def la_server() -> Iterator[LaFixture]:
    """A running :class:`LaFixture` (token ``la-test-token``, no data)."""
    with LaFixture() as la:
        yield la


__all__ = [
    "COLUMNS",
    "TABLE",
    "TOO_LARGE",
    "WORKSPACE",
    "Fault",
    "LaFixture",
    "Logged",
    "la_row",
    "la_server",
    "make_rows",
    "parse_timespan",
]
