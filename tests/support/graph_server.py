"""A loopback HTTP server that speaks Microsoft Graph's wire format, for tests and benchmarks.

It serves what provlens reads (paths under ``/v1.0``; a doubled ``//`` is tolerated like Graph):

* ``GET /auditLogs/provisioning`` with ``$filter`` (``activityDateTime ge|gt|lt|le|eq <time>``,
  ``servicePrincipal/id eq '<id>'``, joined by ``and``), ``$top`` and absolute ``@odata.nextLink``
  URLs carrying every original option plus an opaque ``$skiptoken``; newest records first.
* ``GET /auditLogs/directoryAudits`` with ``$filter`` (``activityDateTime ge|le|eq``,
  ``activityDisplayName eq '<name>'``), ``$top`` and next links, newest first
  (:func:`membership_audit` builds a group membership record).
* ``GET /servicePrincipals`` and ``/servicePrincipals/{id}``, ``.../synchronization/jobs``,
  ``.../appRoleAssignedTo``, ``GET /groups/{id}/members`` and ``/groups/{id}/transitiveMembers``.
* ``POST /users/{id or UPN}/sendMail``: 202 with an empty body; the parsed request lands in
  ``mail`` (``{"sender": ..., "body": {...}}``); faults and 403s apply as to GETs.

Optional behaviour: a bearer token to require, per-path 403s (missing permission), the reporting
API's throttle (N requests per window on ``/auditLogs``: 429 ``TooManyRequests`` with
``Retry-After``), empty pages, and scripted :class:`Fault`\\ s — 4xx/5xx with or without
``Retry-After``, a connection reset mid-page, a truncated body, a slow response, a malformed page.

Use :class:`GraphFixture` directly (``with GraphFixture() as g: ...``, e.g. in a benchmark) or
the ``graph_server`` pytest fixture below (``from tests.support.graph_server import
graph_server``). ``g.seed(n)`` fills a reproducible dataset; faults match the URL decoded, so
``Fault("reset", match="activityDateTime gt 2026-11-01T23:59:59Z")`` hits one time slice.
"""

from __future__ import annotations

import base64
import contextlib
import json
import random
import re
import socket
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import pytest

JSON_TYPE = "application/json;odata.metadata=minimal;odata.streaming=true;charset=utf-8"
DEFAULT_ACCESS = "00000000-0000-0000-0000-000000000000"


@dataclass
class Fault:
    """A scripted misbehaviour for the next ``times`` requests whose URL contains ``match``.

    ``kind``: ``status`` (answer ``status`` with a Graph error body and, when ``retry_after`` is
    not None, a ``Retry-After`` header), ``reset`` (send half the page, then a TCP reset),
    ``truncate`` (send half the page, then close cleanly), ``slow`` (sleep ``delay`` seconds, then
    answer normally), ``malformed`` (200 with broken JSON), ``no_value`` (200 JSON without
    ``value``). ``skip`` lets that many matching requests through first.
    """

    kind: str
    match: str = "/auditLogs/provisioning"
    times: int = 1
    status: int = 503
    retry_after: str | None = None
    delay: float = 0.0
    skip: int = 0
    code: str = ""


@dataclass
class Logged:
    """A request the server received and how it answered."""

    method: str
    path: str
    query: dict[str, str]
    status: int
    at: float
    authorization: str | None
    fault: str | None = None


@dataclass
class GraphFixture:
    """The server's state and controls; start it with ``start()`` or as a context manager."""

    token: str | None = "test-token"  # None: accept any request
    rate_limit: tuple[int, float] | None = None  # (requests, seconds) on /auditLogs
    rate_retry_after: bool = True  # send Retry-After with the throttle's 429s
    default_top: int = 100
    max_top: int = 1000
    empty_pages: set[int] = field(default_factory=set)  # 1-based page numbers served empty
    denied: dict[str, str] = field(default_factory=dict)  # path fragment -> 403 message
    records: list[dict[str, Any]] = field(default_factory=list)
    jobs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    service_principals: dict[str, str] = field(default_factory=dict)  # id -> displayName
    assignments: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    directory: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> user/group object
    group_members: dict[str, list[str]] = field(default_factory=dict)  # group -> direct member ids
    audits: list[dict[str, Any]] = field(default_factory=list)  # directoryAudit records
    log: list[Logged] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    mail: list[dict[str, Any]] = field(default_factory=list)  # sendMail requests accepted

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._window: deque[float] = deque()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> GraphFixture:
        """Start serving on a free loopback port (in a daemon thread); return self."""
        handler = type("Handler", (_Handler,), {"fixture": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the server."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> GraphFixture:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def root(self) -> str:
        """Host root, what ``--graph-url`` takes (provlens adds ``/v1.0``)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base(self) -> str:
        """Service root including ``/v1.0``."""
        return f"{self.root}/v1.0"

    # --- scripting and inspection ---------------------------------------------------------------

    def script(self, *faults: Fault) -> None:
        """Queue faults; each applies in order to the requests it matches."""
        with self._lock:
            self.faults.extend(faults)

    def requests(self, fragment: str = "") -> list[Logged]:
        """Return the logged requests whose path contains ``fragment``."""
        with self._lock:
            return [r for r in self.log if fragment in r.path]

    def count(self, status: int, fragment: str = "") -> int:
        """Return how many requests (matching ``fragment``) were answered with ``status``."""
        return sum(1 for r in self.requests(fragment) if r.status == status)

    # --- data -----------------------------------------------------------------------------------

    def seed(
        self,
        n: int,
        *,
        start: datetime | str = "2026-11-01T00:00:00Z",
        end: datetime | str = "2026-11-08T00:00:00Z",
        service_principals: Iterable[str] = ("6f1c1e5a-1111-4b7e-9d2a-0c5a1b2c3d4e",),
        seed: int = 7,
    ) -> list[dict[str, Any]]:
        """Add ``n`` reproducible provisioning records spread evenly over ``[start, end)``."""
        t0, t1 = _as_dt(start), _as_dt(end)
        sps = list(service_principals)
        for sp in sps:
            self.service_principals.setdefault(sp, f"TheOrgWiki {sp[:4]}")
        rng = random.Random(seed)
        step = (t1 - t0) / max(n, 1)
        out = [
            make_record(
                rng,
                t0 + step * i,
                sps[i % len(sps)],
                self.service_principals[sps[i % len(sps)]],
            )
            for i in range(n)
        ]
        with self._lock:
            self.records.extend(out)
        return out

    def add_group(self, group_id: str, name: str, members: Iterable[str]) -> None:
        """Add a group with these direct member ids (users or groups already in ``directory``)."""
        self.directory[group_id] = {
            "@odata.type": "#microsoft.graph.group",
            "id": group_id,
            "displayName": name,
        }
        self.group_members[group_id] = list(members)

    def add_user(self, user_id: str, upn: str, name: str | None = None) -> None:
        """Add a user object to the directory."""
        self.directory[user_id] = {
            "@odata.type": "#microsoft.graph.user",
            "id": user_id,
            "displayName": name or upn.split("@")[0],
            "userPrincipalName": upn,
        }

    def assign(self, sp_id: str, principal_id: str, app_role_id: str = DEFAULT_ACCESS) -> None:
        """Assign a user or group (from ``directory``) to the service principal."""
        obj = self.directory[principal_id]
        kind = "Group" if obj["@odata.type"].endswith("group") else "User"
        self.assignments.setdefault(sp_id, []).append(
            {
                "id": base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="),
                "deletedDateTime": None,
                "appRoleId": app_role_id,
                "createdDateTime": "2026-10-01T08:00:00.1234567Z",
                "principalDisplayName": obj["displayName"],
                "principalId": principal_id,
                "principalType": kind,
                "resourceDisplayName": self.service_principals.get(sp_id, "TheOrgWiki"),
                "resourceId": sp_id,
            }
        )

    def transitive(self, group_id: str) -> list[str]:
        """Return the transitive member ids of a group (nested groups included, cycles safe)."""
        seen: list[str] = []
        todo = list(self.group_members.get(group_id, []))
        while todo:
            mid = todo.pop(0)
            if mid in seen or mid == group_id:
                continue
            seen.append(mid)
            todo.extend(self.group_members.get(mid, []))
        return seen

    # --- request handling -----------------------------------------------------------------------

    def _take_fault(self, url: str) -> Fault | None:
        with self._lock:
            for f in self.faults:
                if f.match in url:
                    if f.skip > 0:
                        f.skip -= 1
                        return None
                    f.times -= 1
                    if f.times <= 0:
                        self.faults.remove(f)
                    return f
        return None

    def _throttle(self) -> float | None:
        """Count a reporting-API request; return seconds to wait when over the limit, else None."""
        if self.rate_limit is None:
            return None
        limit, window = self.rate_limit
        now = time.monotonic()
        with self._lock:
            while self._window and now - self._window[0] >= window:
                self._window.popleft()
            if len(self._window) >= limit:
                return self._window[0] + window - now
            self._window.append(now)
        return None


def _as_dt(value: datetime | str) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def make_record(rng: random.Random, at: datetime, sp_id: str, sp_name: str) -> dict[str, Any]:
    """Return one provisioningObjectSummary in Graph v1.0's shape (camelCase, lower-case enums)."""
    rid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    user = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    action = rng.choice(["create", "update", "update", "disable", "delete"])
    status = rng.choices(["success", "failure", "skipped"], weights=[8, 1, 1])[0]
    upn = f"user{rng.randrange(10_000)}@contoso.example"
    error = None
    if status == "failure":
        error = {
            "errorCode": "TheOrgWikiEntryConflict",
            "errorCategory": "nonServiceFailure",
            "reason": "The wiki rejected the request: userName already exists (HTTP 409).",
            "additionalDetails": "",
            "recommendedAction": "Match the existing wiki user or change the attribute mapping.",
        }
    return {
        "id": rid,
        "activityDateTime": _iso(at),
        "tenantId": "74beb175-3b80-4b63-b9d5-6f0b76082b16",
        "jobId": f"scim.{sp_id.replace('-', '')}.{sp_id}",
        "cycleId": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "changeId": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "provisioningAction": action,
        "durationInMilliseconds": rng.randrange(50, 5000),
        "provisioningStatusInfo": {"status": status, "errorInformation": error},
        "provisioningSteps": [
            {
                "name": "EntryImportAdd",
                "provisioningStepType": "import",
                "status": "success",
                "description": f"Received User '{upn}' change of type (Add) from Entra ID",
                "details": {"objectId": user},
            },
            {
                "name": "EntryExportAdd",
                "provisioningStepType": "export",
                "status": status,
                "description": "Exported the user to TheOrgWiki",
                "details": {},
            },
        ],
        "modifiedProperties": [
            {"displayName": "userName", "oldValue": None, "newValue": upn},
            {"displayName": "active", "oldValue": None, "newValue": "True"},
        ],
        "servicePrincipal": {"id": sp_id, "displayName": sp_name},
        "sourceSystem": {
            "id": str(uuid.uuid5(uuid.NAMESPACE_DNS, "entra")),
            "displayName": "Entra ID",
            "details": {},
        },
        "targetSystem": {
            "id": str(uuid.uuid5(uuid.NAMESPACE_DNS, "wiki")),
            "displayName": "TheOrgWiki",
            "details": {},
        },
        "initiatedBy": {
            "id": "",
            "displayName": "Azure AD Provisioning Service",
            "initiatorType": "system",
        },
        "sourceIdentity": {
            "id": user,
            "displayName": upn.split("@")[0],
            "identityType": "User",
            "details": {"UserPrincipalName": upn},
        },
        "targetIdentity": {"id": "", "displayName": "", "identityType": "User", "details": {}},
    }


# --- $filter -------------------------------------------------------------------------------------

_CLAUSE = re.compile(
    r"^\(*\s*(?P<field>activityDateTime|servicePrincipal/id|activityDisplayName)\s+"
    r"(?P<op>eq|ne|ge|gt|le|lt)\s+"
    r"(?P<value>'[^']*'|[0-9T:.\-+Z]+)\s*\)*$"
)
_OPS = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "ge": lambda a, b: a >= b,
    "gt": lambda a, b: a > b,
    "le": lambda a, b: a <= b,
    "lt": lambda a, b: a < b,
}


class FilterError(ValueError):
    """The $filter expression is not one this server (or Graph) accepts."""


def compile_filter(expr: str) -> list[tuple[str, str, Any]]:
    """Parse a ``$filter`` of ``and``-joined clauses into ``(field, op, value)`` triples."""
    clauses = []
    for part in re.split(r"\s+and\s+", expr.strip()):
        m = _CLAUSE.match(part.strip())
        if not m:
            raise FilterError(f"Invalid filter clause: {part.strip()!r}")
        value: Any = m["value"]
        if m["field"] == "activityDateTime":
            try:
                value = _as_dt(value)
            except ValueError:
                raise FilterError(f"Invalid DateTimeOffset: {value!r}") from None
        else:
            if not value.startswith("'"):
                raise FilterError("servicePrincipal/id needs a quoted string")
            value = value.strip("'")
            if m["op"] not in ("eq", "ne"):
                raise FilterError(f"{m['field']} supports eq only")
            value = value.replace("''", "'")
        clauses.append((m["field"], m["op"], value))
    return clauses


def _matches(rec: dict[str, Any], clauses: list[tuple[str, str, Any]]) -> bool:
    for fld, op, value in clauses:
        if fld == "activityDateTime":
            actual: Any = _as_dt(rec["activityDateTime"])
        elif fld == "activityDisplayName":
            actual = rec.get("activityDisplayName")
        else:
            actual = (rec.get("servicePrincipal") or {}).get("id")
        if not _OPS[op](actual, value):
            return False
    return True


# --- HTTP ----------------------------------------------------------------------------------------


def _error_body(code: str, message: str) -> bytes:
    return json.dumps(
        {
            "error": {
                "code": code,
                "message": message,
                "innerError": {
                    "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                    "request-id": str(uuid.uuid4()),
                    "client-request-id": str(uuid.uuid4()),
                },
            }
        }
    ).encode()


_STATUS_CODES = {
    400: "BadRequest",
    401: "InvalidAuthenticationToken",
    403: "Authorization_RequestDenied",
    404: "Request_ResourceNotFound",
    429: "TooManyRequests",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}


class _Handler(BaseHTTPRequestHandler):
    fixture: GraphFixture
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()

    # -- helpers --

    def _send(
        self,
        status: int,
        body: bytes,
        headers: dict[str, str] | None = None,
        *,
        fault: Fault | None = None,
    ) -> None:
        g = self.fixture
        with g._lock:
            g.log.append(
                Logged(
                    self.command,
                    self._path,
                    self._query,
                    status,
                    time.monotonic(),
                    self.headers.get("Authorization"),
                    fault.kind if fault else None,
                )
            )
        self.send_response(status)
        self.send_header("Content-Type", JSON_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("request-id", str(uuid.uuid4()))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if fault and fault.kind in ("reset", "truncate"):
            self.wfile.write(body[: max(1, len(body) // 2)])
            self.wfile.flush()
            if fault.kind == "reset":
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
            self.connection.close()
            self.close_connection = True
            return
        self.wfile.write(body)

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self._send(status, _error_body(_STATUS_CODES.get(status, "Error"), message), headers)

    def _json(self, status: int, doc: dict[str, Any], fault: Fault | None = None) -> None:
        body = json.dumps(doc).encode()
        if fault and fault.kind == "malformed":
            body = body[: max(1, len(body) * 2 // 3)]  # valid HTTP, broken JSON
        if fault and fault.kind == "no_value":
            body = json.dumps({"@odata.context": doc.get("@odata.context"), "error": None}).encode()
        self._send(status, body, fault=fault)

    # -- dispatch --

    def _gate(self, url: str) -> tuple[Fault | None, bool]:
        """Apply the token check, scripted faults and denials; return (fault, answered)."""
        g = self.fixture
        if g.token is not None and self.headers.get("Authorization") != f"Bearer {g.token}":
            self._error(401, "Access token is empty or invalid.")
            return None, True
        fault = g._take_fault(url)
        if fault and fault.kind == "slow":
            time.sleep(fault.delay)
            fault = None
        if fault and fault.kind == "status":
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            self._send(
                fault.status,
                _error_body(fault.code or _STATUS_CODES.get(fault.status, "Error"), "Scripted."),
                headers,
                fault=fault,
            )
            return fault, True
        for fragment, message in g.denied.items():
            if fragment in self._path:
                self._error(403, message or "Insufficient privileges to complete the operation.")
                return fault, True
        return fault, False

    def do_GET(self) -> None:
        g = self.fixture
        split = urlsplit(self.path)
        path = re.sub(r"/{2,}", "/", split.path)
        self._path = path
        self._query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        if not path.startswith("/v1.0/"):
            self._error(404, f"Resource not found for the segment '{path}'.")
            return
        fault, answered = self._gate(unquote(path + "?" + split.query))
        if answered:
            return
        rest = path[len("/v1.0") :]
        if rest.startswith("/auditLogs/"):
            wait = g._throttle()
            if wait is not None:
                headers = (
                    {"Retry-After": str(max(1, int(wait + 0.999)))} if g.rate_retry_after else {}
                )
                self._send(
                    429,
                    _error_body("TooManyRequests", "Too many requests."),
                    headers,
                )
                return
        try:
            self._route(rest, fault)
        except FilterError as exc:
            self._error(400, str(exc))

    def _body(self) -> bytes:
        """Return the request body (Content-Length or chunked, as httpx may send either)."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_POST(self) -> None:
        g = self.fixture
        split = urlsplit(self.path)
        path = re.sub(r"/{2,}", "/", split.path)
        self._path, self._query = path, {}
        raw = self._body()
        if self._gate(unquote(path))[1]:
            return
        m = re.fullmatch(r"/v1\.0/users/([^/]+)/sendMail", path)
        if not m:
            self._error(404, f"Resource not found for the segment '{path}'.")
            return
        try:
            body = json.loads(raw)
        except ValueError:
            self._error(400, "Unable to read JSON request payload.")
            return
        # Graph binds property names case-insensitively (msgraph-sdk sends `Message`).
        names = {"message": "message", "savetosentitems": "saveToSentItems"}
        if isinstance(body, dict):
            body = {names.get(k.lower(), k): v for k, v in body.items()}
        if not isinstance(body, dict) or not isinstance(body.get("message"), dict):
            self._error(400, "Required property 'message' is missing.")
            return
        with g._lock:
            g.mail.append({"sender": unquote(m.group(1)), "body": body})
        self._send(202, b"")

    def _route(self, rest: str, fault: Fault | None) -> None:
        g = self.fixture
        if rest == "/auditLogs/provisioning":
            self._provisioning(fault)
            return
        if rest == "/auditLogs/directoryAudits":
            self._directory_audits(fault)
            return
        m = re.fullmatch(r"/servicePrincipals(?:/([^/]+))?(/.*)?", rest)
        if m:
            sp, sub = m.group(1), m.group(2) or ""
            if sp is None:
                items = [{"id": k, "displayName": v} for k, v in g.service_principals.items()]
                self._list(items, "servicePrincipals", fault)
                return
            if sp not in g.service_principals:
                self._error(
                    404,
                    f"Resource '{sp}' does not exist or one of its queried "
                    "reference-property objects are not present.",
                )
                return
            if sub == "":
                self._json(
                    200,
                    {
                        "@odata.context": f"{g.base}/$metadata#servicePrincipals/$entity",
                        "id": sp,
                        "displayName": g.service_principals[sp],
                    },
                    fault,
                )
            elif sub == "/synchronization/jobs":
                self._list(
                    g.jobs.get(sp, []), f"servicePrincipals('{sp}')/synchronization/jobs", fault
                )
            elif sub == "/appRoleAssignedTo":
                self._list(
                    g.assignments.get(sp, []), f"servicePrincipals('{sp}')/appRoleAssignedTo", fault
                )
            else:
                self._error(404, f"Resource not found for the segment '{sub}'.")
            return
        m = re.fullmatch(r"/groups/([^/]+)/(members|transitiveMembers)", rest)
        if m:
            gid, which = m.groups()
            if gid not in g.group_members:
                self._error(404, f"Resource '{gid}' does not exist.")
                return
            ids = g.group_members[gid] if which == "members" else g.transitive(gid)
            self._list([g.directory[i] for i in ids], "directoryObjects", fault)
            return
        self._error(404, f"Resource not found for the segment '{rest}'.")

    def _page_params(self) -> tuple[int, int, int]:
        g = self.fixture
        top = int(self._query.get("$top") or g.default_top)
        top = max(1, min(top, g.max_top))
        token = self._query.get("$skiptoken")
        offset, page = 0, 1
        if token:
            state = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            offset, page = int(state["o"]), int(state["p"])
        return top, offset, page

    def _next_link(self, offset: int, page: int) -> str:
        token = base64.urlsafe_b64encode(json.dumps({"o": offset, "p": page}).encode()).decode()
        keep = [(k, v) for k, v in self._query.items() if k != "$skiptoken"]
        keep.append(("$skiptoken", token.rstrip("=")))
        query = "&".join(f"{k}={quote(v, safe=':,/')}" for k, v in keep)
        return f"{self.fixture.base}{self._path[len('/v1.0') :]}?{query}"

    def _paged(
        self,
        items: list[dict[str, Any]],
        context: str,
        fault: Fault | None,
        *,
        trailing_empty: bool,
    ) -> None:
        g = self.fixture
        top, offset, page = self._page_params()
        doc: dict[str, Any] = {"@odata.context": f"{g.base}/$metadata#{context}"}
        if page in g.empty_pages:
            doc["value"] = []
            doc["@odata.nextLink"] = self._next_link(offset, page + 1)
            self._json(200, doc, fault)
            return
        chunk = items[offset : offset + top]
        doc["value"] = chunk
        end = offset + len(chunk)
        more = end < len(items) or (
            trailing_empty and chunk and end == len(items) and len(chunk) == top
        )
        if more:
            doc["@odata.nextLink"] = self._next_link(end, page + 1)
        self._json(200, doc, fault)

    def _list(self, items: list[dict[str, Any]], context: str, fault: Fault | None) -> None:
        self._paged(items, context, fault, trailing_empty=False)

    def _provisioning(self, fault: Fault | None) -> None:
        g = self.fixture
        expr = self._query.get("$filter")
        clauses = compile_filter(expr) if expr else []
        with g._lock:
            matched = [r for r in g.records if _matches(r, clauses)]
        matched.sort(key=lambda r: (r["activityDateTime"], r["id"]), reverse=True)
        self._paged(matched, "auditLogs/provisioning", fault, trailing_empty=True)

    def _directory_audits(self, fault: Fault | None) -> None:
        g = self.fixture
        expr = self._query.get("$filter")
        clauses = compile_filter(expr) if expr else []
        if any(f == "servicePrincipal/id" for f, _, _ in clauses):
            raise FilterError("Invalid filter clause: servicePrincipal/id on directoryAudits")
        if any(f == "activityDateTime" and op in ("gt", "lt") for f, op, _ in clauses):
            raise FilterError("activityDateTime supports eq, ge and le on directoryAudits")
        with g._lock:
            matched = [r for r in g.audits if _matches(r, clauses)]
        matched.sort(key=lambda r: (r["activityDateTime"], r["id"]), reverse=True)
        self._paged(matched, "auditLogs/directoryAudits", fault, trailing_empty=False)


def membership_audit(
    audit_id: str,
    at: datetime | str,
    group_id: str,
    member_id: str,
    *,
    added: bool = True,
    upn: str | None = None,
    group_name: str = "Group",
    by: str = "admin@contoso.example",
) -> dict[str, Any]:
    """Return an "Add member to group" / "Remove member from group" directoryAudit (v1.0 shape)."""
    from demo.payloads import directory_audit

    return directory_audit(
        audit_id,
        _iso(_as_dt(at)),
        group_id,
        member_id=member_id,
        group_name=group_name,
        upn=upn,
        added=added,
        correlation_id=str(uuid.uuid5(uuid.NAMESPACE_URL, audit_id)),
        initiator_id=str(uuid.uuid5(uuid.NAMESPACE_DNS, by)),
        initiator_upn=by,
    )


def sync_job(
    job_id: str,
    *,
    code: str = "Active",
    interval: str = "PT40M",
    state: str = "Active",
    steady_first: str = "2026-10-02T09:00:00.1234567Z",
    last_began: str = "2026-11-20T10:00:00.7957721Z",
    last_ended: str = "2026-11-20T10:03:12.1234567Z",
    quarantine: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Return a synchronizationJob in Graph's shape (defaults: an active SCIM job)."""
    return {
        "id": job_id,
        "templateId": "scim",
        "schedule": {"expiration": None, "interval": interval, "state": state},
        "status": {
            "code": code,
            "countSuccessiveCompleteFailures": 0,
            "escrowsPruned": False,
            "lastExecution": {
                "activityIdentifier": "2dea06a7-2960-420d-931e-f6c807ebda24",
                "countEntitled": 120,
                "countEntitledForProvisioning": 120,
                "countEscrowed": 3,
                "countEscrowedRaw": 3,
                "countExported": 17,
                "countExports": 17,
                "countImported": 120,
                "countImportedDeltas": 4,
                "countImportedReferenceDeltas": 0,
                "state": "Succeeded",
                "error": None,
                "timeBegan": last_began,
                "timeEnded": last_ended,
            },
            "lastSuccessfulExecution": None,
            "lastSuccessfulExecutionWithExports": None,
            "progress": [],
            "quarantine": quarantine,
            "steadyStateFirstAchievedTime": steady_first,
            "steadyStateLastAchievedTime": "0001-01-01T00:00:00Z",
            "synchronizedEntryCountByType": [{"key": "user to User", "value": 120}],
            "troubleshootingUrl": "",
        },
        "synchronizationJobSettings": [
            {"name": "QuarantineTooManyDeletesThreshold", "value": "500"}
        ],
    }


@pytest.fixture
def graph_server() -> Iterator[GraphFixture]:
    """A running :class:`GraphFixture` (token ``test-token``, no throttle, no data)."""
    with GraphFixture() as g:
        yield g


def timestamps(records: Iterable[dict[str, Any]]) -> list[datetime]:
    """Return the activity times of ``records`` (helper for assertions)."""
    return [_as_dt(r["activityDateTime"]) for r in records]


__all__ = [
    "DEFAULT_ACCESS",
    "Fault",
    "GraphFixture",
    "Logged",
    "compile_filter",
    "graph_server",
    "make_record",
    "sync_job",
    "timestamps",
]
