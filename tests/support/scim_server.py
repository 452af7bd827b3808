"""A real SCIM 2.0 server (the `scim2-server` package) on loopback, for tests and benchmarks.

:class:`ScimServer` runs scim2-server's in-memory application with bearer-token auth in a
thread. Optional WSGI middlewares in front of it imitate misbehaving wikis (page size forced,
``totalResults`` misreported, 429 with Retry-After) and record every exchange as a wiki SCIM
audit record (the format of docs/scim-audit-format.md).
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode
from wsgiref.simple_server import WSGIRequestHandler, make_server

import httpx
import pandas as pd
from scim2_models import ScimProvider
from scim2_server.memory import InMemoryStorage
from scim2_server.service import ScimService
from scim2_server.testserver.application import BEARER_TOKEN_SCHEME, BearerTokenApplication
from scim2_server.testserver.cli import ThreadingWSGIServer
from scim2_server.utils import (
    load_default_resource_types,
    load_default_schemas,
    load_default_service_provider_config,
)

TOKEN = "test-scim-token-7f3c9d"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
USER_SCHEMAS = [
    "urn:ietf:params:scim:schemas:core:2.0:User",
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
]
GROUP_SCHEMAS = ["urn:ietf:params:scim:schemas:core:2.0:Group"]

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output clean."""


@dataclass
class Misbehaviour:
    """How the server in front of scim2-server deviates from the standard (all off by default)."""

    force_count: int | None = None  # ignore the client's `count`, serve pages of this size
    ignore_start_index: bool = False  # always serve from the first resource
    total_results_delta: int = 0  # add this to every ListResponse's totalResults
    drop_total_results: bool = False  # omit totalResults
    throttle_first: int = 0  # answer `throttle_status` to the first N GET requests
    throttle_status: int = 429
    retry_after: str = "1"
    fail_status: int | None = None  # answer every request with this status (401, 403, 500 ...)
    fail_path_prefix: str = ""  # ... only requests whose path starts with this
    gets_seen: int = 0  # GET requests served since this misbehaviour was installed


@dataclass
class ScimServer:
    """A running loopback SCIM server; ``base_url`` ends in `/v2`."""

    base_url: str
    token: str
    storage: InMemoryStorage
    audit: list[dict[str, Any]] = field(default_factory=list)
    requests_seen: list[str] = field(default_factory=list)
    misbehaviour: Misbehaviour = field(default_factory=Misbehaviour)

    def client(self, token: str | None = None) -> httpx.Client:
        """Return an httpx client that talks to the server as Entra would."""
        return httpx.Client(
            base_url=self.base_url,
            headers={
                "Authorization": f"Bearer {token or self.token}",
                "Content-Type": "application/scim+json",
            },
            timeout=10.0,
        )

    def write_audit(self, path: str) -> None:
        """Write the recorded exchanges as audit JSON Lines to ``path``."""
        with open(path, "w", encoding="utf-8") as fh:
            for rec in self.audit:
                fh.write(json.dumps(rec) + "\n")


def _provider() -> ScimProvider:
    config = load_default_service_provider_config()
    config.authentication_schemes = [*(config.authentication_schemes or []), BEARER_TOKEN_SCHEME]
    return ScimProvider.from_discovery(
        load_default_schemas().values(), load_default_resource_types().values(), config=config
    )


def _wrap(app: WSGIApp, server: ScimServer) -> WSGIApp:
    """Put the misbehaviour and audit-recording middleware in front of ``app``."""
    lock = threading.Lock()

    def middleware(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        mis = server.misbehaviour
        started = time.perf_counter()
        at = pd.Timestamp.now(tz="UTC")
        query = environ.get("QUERY_STRING", "")
        method = environ["REQUEST_METHOD"]
        server.requests_seen.append(f"{method} {environ.get('PATH_INFO', '')}?{query}")
        size = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(size) if size else b""
        environ["wsgi.input"] = io.BytesIO(body)
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured["status"], captured["headers"] = status, headers
            return lambda _data: None

        with lock:
            throttled = method == "GET" and mis.gets_seen < mis.throttle_first
            if method == "GET":
                mis.gets_seen += 1
        failing = mis.fail_status is not None and environ.get("PATH_INFO", "").startswith(
            mis.fail_path_prefix
        )
        if failing or throttled:
            code = mis.throttle_status if throttled else int(mis.fail_status or 500)
            payload = {
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
                "status": str(code),
                "detail": "Too many requests" if throttled else "Refused by the test server",
            }
            out = json.dumps(payload).encode()
            headers = [("Content-Type", "application/scim+json")]
            if throttled:
                headers.append(("Retry-After", mis.retry_after))
            captured["status"], captured["headers"] = f"{code} Error", headers
            chunks: list[bytes] = [out]
        else:
            if method == "GET" and (mis.force_count is not None or mis.ignore_start_index):
                params = parse_qsl(query)
                if mis.force_count is not None:
                    params = [(k, v) for k, v in params if k != "count"]
                    params.append(("count", str(mis.force_count)))
                if mis.ignore_start_index:
                    params = [(k, v) for k, v in params if k != "startIndex"]
                environ["QUERY_STRING"] = urlencode(params)
            chunks = list(app(environ, capture))
            out = b"".join(chunks)
            if out and (mis.total_results_delta or mis.drop_total_results):
                doc = json.loads(out)
                if isinstance(doc, dict) and "totalResults" in doc:
                    if mis.drop_total_results:
                        del doc["totalResults"]
                    else:
                        doc["totalResults"] += mis.total_results_delta
                    out = json.dumps(doc).encode()
            chunks = [out]
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(out))))
        start_response(captured["status"], headers)
        full_path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        if query:
            full_path += "?" + query
        record: dict[str, Any] = {
            "time": at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "request_id": f"srv-{len(server.audit) + 1:05d}",
            "method": method,
            "path": full_path,
            "status": int(captured["status"].split(" ", 1)[0]),
            "latency_ms": round((time.perf_counter() - started) * 1000, 3),
            "client": environ.get("REMOTE_ADDR"),
        }
        if body:
            record["request"] = json.loads(body)
        if out:
            record["response"] = json.loads(out)
        location = [v for k, v in captured["headers"] if k.lower() == "location"]
        if location:  # what a wiki's audit log carries for a create (docs/scim-audit-format.md)
            record["response_headers"] = {"Location": location[0]}
        server.audit.append(record)
        return chunks

    return middleware


@contextmanager
def running_scim_server(
    token: str = TOKEN, misbehaviour: Misbehaviour | None = None
) -> Iterator[ScimServer]:
    """Start a loopback scim2-server with bearer-token auth; stop it on exit."""
    storage = InMemoryStorage()
    provider = _provider()
    app = BearerTokenApplication(
        storage, provider, service=ScimService(provider, secret="s" * 32), bearer_tokens=[token]
    )
    state = ScimServer("", token, storage, misbehaviour=misbehaviour or Misbehaviour())
    httpd = make_server(
        "127.0.0.1",
        0,
        _wrap(app, state),  # type: ignore[arg-type]
        server_class=ThreadingWSGIServer,
        handler_class=_QuietHandler,
    )
    state.base_url = f"http://127.0.0.1:{httpd.server_port}/v2"
    thread = threading.Thread(target=httpd.serve_forever, name="scim2-server", daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@dataclass
class Seeded:
    """What :func:`seed_walkthrough` created: SCIM ids by userName / group name."""

    users: dict[str, dict[str, Any]]
    groups: dict[str, dict[str, Any]]
    deactivated: str  # userName of the user PATCHed active=false


def _user(user_name: str, external_id: str, given: str, family: str) -> dict[str, Any]:
    # Modelled on the walkthrough's "Create User" body (Entra's attribute mapping).
    return {
        "schemas": USER_SCHEMAS,
        "externalId": external_id,
        "userName": user_name,
        "active": True,
        "displayName": f"{given} {family}",
        "emails": [{"primary": True, "type": "work", "value": user_name}],
        "meta": {"resourceType": "User"},
        "name": {"formatted": f"{given} {family}", "familyName": family, "givenName": given},
        "roles": [],
    }


def seed_walkthrough(server: ScimServer) -> Seeded:
    """Provision users and a group the way Entra does (walkthrough exchanges); return their ids.

    Query by userName first (zero results), POST three users, disable one with the
    without-flag PATCH (`"Replace"`, `"False"`), create a group with one member, then add the
    other with the walkthrough's `Add members` PATCH.
    """
    people = [
        ("alice@contoso.example", "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef", "Alice", "Liddell"),
        ("bob@contoso.example", "58342554-38d6-4ec8-948c-50044d0a33fd", "Bob", "Builder"),
        ("carol@contoso.example", "7fce0092-d52e-4f76-b727-3955bd72c939", "Carol", "Danvers"),
    ]
    users: dict[str, dict[str, Any]] = {}
    with server.client() as c:
        for upn, ext, given, family in people:
            r = c.get("/Users", params={"filter": f'userName eq "{upn}"'})
            assert r.status_code == 200 and r.json()["totalResults"] == 0, r.text
            r = c.post("/Users", json=_user(upn, ext, given, family))
            assert r.status_code == 201, r.text
            users[upn] = r.json()
        bob = users["bob@contoso.example"]
        r = c.patch(
            f"/Users/{bob['id']}",
            json={
                "schemas": [PATCH_OP],
                "Operations": [{"op": "Replace", "path": "active", "value": "False"}],
            },
        )
        assert r.status_code in (200, 204), r.text
        r = c.get(f"/Users/{bob['id']}")
        users["bob@contoso.example"] = r.json()
        alice, carol = users["alice@contoso.example"], users["carol@contoso.example"]
        r = c.post(
            "/Groups",
            json={
                "schemas": GROUP_SCHEMAS,
                "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
                "displayName": "Wiki Editors",
                "meta": {"resourceType": "Group"},
                "members": [{"value": alice["id"]}],
            },
        )
        assert r.status_code == 201, r.text
        group = r.json()
        r = c.patch(
            f"/Groups/{group['id']}",
            json={
                "schemas": [PATCH_OP],
                "Operations": [
                    {
                        "op": "Add",
                        "path": "members",
                        "value": [{"$ref": None, "value": carol["id"]}],
                    }
                ],
            },
        )
        assert r.status_code in (200, 204), r.text
        group = c.get(f"/Groups/{group['id']}").json()
    return Seeded(users=users, groups={"Wiki Editors": group}, deactivated="bob@contoso.example")
