"""The wiki's SCIM side: the state pull (`GET /Users`, `GET /Groups`) and SCIM request parsing.

Fetching and parsing are kept apart, dlt-style: :func:`build_client` is the one place the SCIM
HTTP client is made (timeouts, bounded retries on 429/5xx, status checks), :func:`list_resources`
pages through one endpoint, and the pure functions (:func:`resources_frame`,
:func:`classify_path`, :func:`request_row`) turn SCIM JSON into canonical rows, so the file
formats (`scim_list`, `scim_audit`, `access_log`) share them.

The token lives only in the client's ``Authorization`` header: it is never logged, never put in
an error message, and httpx masks it in reprs.
"""

from __future__ import annotations

import email.utils
import hashlib
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import pandas as pd

from ingest.errors import RemoteError
from ingest.net import CONNECT_TIMEOUT_S, unreachable
from ingest.pipeline import Commit, Frames, Item
from ingest.schema import conform

if TYPE_CHECKING:
    from ingest.store import Store

log = logging.getLogger(__name__)

LIST_RESPONSE: Final = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
ERROR_SCHEMA: Final = "urn:ietf:params:scim:api:messages:2.0:Error"
USER_SCHEMA: Final = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA: Final = "urn:ietf:params:scim:schemas:core:2.0:Group"

# Endpoint segment (lower case) -> SCIM resource type name as in scim_requests.resource_type.
ENDPOINTS: Final[dict[str, str]] = {
    "users": "User",
    "groups": "Group",
    "schemas": "Schemas",
    "serviceproviderconfig": "ServiceProviderConfig",
    "serviceproviderconfigs": "ServiceProviderConfig",
    "resourcetypes": "ResourceTypes",
    "bulk": "Bulk",
}

DEFAULT_PAGE_SIZE: Final = 100
MAX_PAGES: Final = 100_000
MAX_RETRIES: Final = 5
MAX_RETRY_WAIT_S: Final = 60.0
TIMEOUT: Final = httpx.Timeout(30.0, connect=CONNECT_TIMEOUT_S)


# --------------------------------------------------------------------------- the HTTP client


@dataclass
class ScimClient:
    """An httpx client for one SCIM base URL, with bounded retries and clear errors."""

    base_url: str
    http: httpx.Client
    max_retries: int = MAX_RETRIES
    max_wait_s: float = MAX_RETRY_WAIT_S
    sleep: Callable[[float], None] = time.sleep
    answered: bool = False  # the server has answered at least once (any HTTP status)

    def close(self) -> None:
        """Close the underlying connection pool."""
        self.http.close()

    def __enter__(self) -> ScimClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get_json(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """GET ``path`` (relative to the base URL) and return its JSON body.

        429 and 5xx answers and connection failures are retried up to ``max_retries`` times,
        waiting for ``Retry-After`` when given (capped at ``max_wait_s``), else 1, 2, 4 ... s.
        A server never reached (refused, unknown host, TLS failure on the first request) raises
        :class:`ingest.net.Unreachable` at once. 401/403 and any other error status raise
        :class:`RemoteError` with one clear line.
        """
        url = f"{self.base_url}/{path.lstrip('/')}"
        attempt = 0
        while True:
            try:
                resp = self.http.get(url, params=params)
            except httpx.TransportError as exc:
                if not self.answered:  # never reached: waiting will not help (ingest/net.py)
                    fatal = unreachable(
                        "the wiki's SCIM server",
                        self.base_url,
                        exc,
                        "check --scim-url (or PROVLENS_SCIM_URL) and the network",
                    )
                    if fatal is not None:
                        raise fatal from None
                if attempt >= self.max_retries:
                    raise RemoteError(
                        f"{url}: cannot reach the wiki's SCIM server ({type(exc).__name__}) "
                        f"after {attempt + 1} attempts; check --scim-url and the network"
                    ) from None
                wait = min(2.0**attempt, self.max_wait_s)
                log.warning("%s: %s; retrying in %.0f s", url, type(exc).__name__, wait)
            else:
                self.answered = True
                if resp.status_code == 429 or resp.status_code >= 500:
                    if attempt >= self.max_retries:
                        raise RemoteError(
                            f"{url}: the wiki's SCIM server answered {resp.status_code} "
                            f"{attempt + 1} times in a row; try again later"
                        )
                    wait = _retry_after(resp.headers.get("Retry-After"), attempt, self.max_wait_s)
                    log.warning(
                        "%s: %s from the wiki; retrying in %.1f s", url, resp.status_code, wait
                    )
                else:
                    _raise_for_status(resp, url)
                    try:
                        return resp.json()
                    except ValueError:
                        raise RemoteError(
                            f"{url}: the wiki's SCIM server answered {resp.status_code} with a "
                            "body that is not JSON; check that --scim-url is the SCIM base URL"
                        ) from None
            attempt += 1
            self.sleep(wait)


def build_client(base_url: str, token: str, *, timeout: httpx.Timeout = TIMEOUT) -> ScimClient:
    """Return the SCIM client for ``base_url`` authenticating with bearer ``token``."""
    base = base_url.rstrip("/")
    if not base.lower().startswith(("http://", "https://")):
        from ingest.errors import UsageError

        raise UsageError(f"--scim-url must be an http(s) URL, got {base_url!r}")
    http = httpx.Client(
        headers={
            "Authorization": f"Bearer {token}",
            "Accept": "application/scim+json, application/json",
            "User-Agent": "provlens",
        },
        timeout=timeout,
        follow_redirects=False,
    )
    return ScimClient(base, http)


def _retry_after(value: str | None, attempt: int, cap: float) -> float:
    """Seconds to wait: ``Retry-After`` (seconds or HTTP date), else exponential backoff."""
    wait: float | None = None
    if value:
        value = value.strip()
        try:
            wait = float(value)
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(value)
                wait = when.timestamp() - time.time()
            except (TypeError, ValueError):
                wait = None
    if wait is None:
        wait = 2.0**attempt
    return max(0.0, min(wait, cap))


def _raise_for_status(resp: httpx.Response, url: str) -> None:
    """Raise RemoteError for an error answer, saying what to do; never include the token."""
    code = resp.status_code
    if code < 400:
        return
    if code == 401:
        raise RemoteError(
            f"{url}: the wiki refused the SCIM token (401): the token in PROVLENS_SCIM_TOKEN is "
            "wrong or expired; create a new one in the wiki's SCIM settings"
        )
    if code == 403:
        raise RemoteError(
            f"{url}: the wiki accepted the SCIM token but it lacks rights to read this "
            "endpoint (403); use a token of the wiki's SCIM/provisioning service account"
        )
    detail = ""
    try:
        body = resp.json()
        if isinstance(body, dict) and body.get("detail"):
            detail = f" ({str(body['detail'])[:200]})"
    except ValueError:
        pass
    raise RemoteError(
        f"{url}: the wiki's SCIM server answered {code}{detail}; check --scim-url "
        "(the SCIM base URL, e.g. https://<subdomain>.theorgwiki.com/api/v2/scim/v2)"
    )


# --------------------------------------------------------------------------- the state pull


def list_resources(
    client: ScimClient, endpoint: str, *, page_size: int = DEFAULT_PAGE_SIZE
) -> Iterator[dict[str, Any]]:
    """Yield every resource of ``endpoint`` (`Users` or `Groups`), paging by startIndex/count.

    Robust to servers that ignore ``count`` (bigger or smaller pages), ignore ``startIndex``
    (same page again: stops, or fails if ``totalResults`` says resources are missing) and report
    ``totalResults`` wrongly (it is never trusted to stop early). Each id is yielded once.
    """
    seen: set[str] = set()
    start = 1
    total: int | None = None
    for _page in range(MAX_PAGES):
        body = client.get_json(endpoint, {"startIndex": start, "count": page_size})
        if not isinstance(body, dict):
            raise RemoteError(
                f"{client.base_url}/{endpoint}: the answer is not a SCIM ListResponse object"
            )
        resources = body.get("Resources") or body.get("resources") or []
        if not isinstance(resources, list):
            raise RemoteError(
                f"{client.base_url}/{endpoint}: `Resources` is not a list in the ListResponse"
            )
        raw_total = body.get("totalResults")
        if isinstance(raw_total, int) and not isinstance(raw_total, bool):
            total = raw_total
        new = 0
        for res in resources:
            if not isinstance(res, dict):
                continue
            rid = res.get("id")
            key = str(rid) if rid is not None else f"#{start}:{new}"
            if key in seen:
                continue
            seen.add(key)
            new += 1
            yield res
        if not resources or new == 0:
            # A repeated page means the server ignores startIndex. That is fine when it
            # returns everything each time; it loses data when it honours `count`.
            if resources and total is not None and len(seen) < total:
                raise RemoteError(
                    f"{client.base_url}/{endpoint}: the server returned the same page again for "
                    f"startIndex={start} with {len(seen)} of totalResults={total} read; it "
                    "does not page correctly, so nothing was stored"
                )
            if resources and total is None and len(resources) == page_size:
                raise RemoteError(
                    f"{client.base_url}/{endpoint}: the server returned the same full page again "
                    f"for startIndex={start} and gives no totalResults, so whether more exist "
                    "is unknown; nothing was stored (a larger --page-size may get them all)"
                )
            break
        start += len(resources)
    else:
        raise RemoteError(
            f"{client.base_url}/{endpoint}: more than {MAX_PAGES} pages; stopped, nothing stored"
        )
    if total is not None and total != len(seen):
        log.warning(
            "%s/%s: totalResults said %d but %d resources were listed; keeping what was listed",
            client.base_url,
            endpoint,
            total,
            len(seen),
        )


def pull_state(
    client: ScimClient, captured_at: pd.Timestamp, *, page_size: int = DEFAULT_PAGE_SIZE
) -> pd.DataFrame:
    """Return a ``scim_resources`` snapshot of every user and group the wiki lists."""
    users = list(list_resources(client, "Users", page_size=page_size))
    try:
        groups = list(list_resources(client, "Groups", page_size=page_size))
    except RemoteError as exc:
        if " answered 404" not in str(exc):
            raise
        log.warning("the wiki has no /Groups endpoint (404); storing users only")
        groups = []
    log.info("listed %d users and %d groups", len(users), len(groups))
    return pd.concat(
        [
            resources_frame(users, captured_at, default_type="User"),
            resources_frame(groups, captured_at, default_type="Group"),
        ],
        ignore_index=True,
    )


def scim_items(
    client: ScimClient, captured_at: pd.Timestamp, *, page_size: int = DEFAULT_PAGE_SIZE
) -> list[Item]:
    """Return the wiki's SCIM snapshot as one commit's pipeline items (the SCIM source)."""
    frame = pull_state(client, captured_at, page_size=page_size)
    return [Frames({"scim_resources": frame}), Commit(client.base_url)]


@dataclass
class ScimSnapshot:
    """What :func:`ingest_scim` stored."""

    base_url: str
    users: int
    inactive_users: int
    groups: int


def ingest_scim(
    store: Store,
    url: str,
    token: str,
    captured_at: pd.Timestamp,
    *,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> ScimSnapshot:
    """Snapshot the wiki's /Users and /Groups into ``scim_resources`` in one commit."""
    from ingest import pipeline

    with build_client(url, token) as client:
        items = scim_items(client, captured_at, page_size=page_size)
    pipeline.write(store, items, source="scim")
    frame = next(i for i in items if isinstance(i, Frames)).tables["scim_resources"]
    users = frame[frame["resource_type"] == "User"]
    return ScimSnapshot(
        base_url=client.base_url,
        users=len(users),
        inactive_users=int((users["active"] == False).sum()),  # noqa: E712 - nullable boolean
        groups=int((frame["resource_type"] == "Group").sum()),
    )


def probe(client: ScimClient) -> dict[str, Any]:
    """Return what a connection test needs: PATCH support and the user count.

    ``/ServiceProviderConfig`` needs no authentication (RFC 7644), so ``/Users?count=1`` is
    read too: a wrong token fails here with the 401/403 message of :func:`_raise_for_status`.
    """
    config = client.get_json("ServiceProviderConfig")
    users = client.get_json("Users", {"startIndex": 1, "count": 1})
    patch = config.get("patch") if isinstance(config, dict) else None
    total = users.get("totalResults") if isinstance(users, dict) else None
    return {
        "patch_supported": patch.get("supported") if isinstance(patch, dict) else None,
        "users": total if isinstance(total, int) and not isinstance(total, bool) else None,
    }


# --------------------------------------------------------------------------- pure parsing


def to_bool(value: Any) -> bool | None:
    """Return a SCIM boolean: JSON true/false or the strings "True"/"False" (any case)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        low = value.strip().lower()
        if low == "true":
            return True
        if low == "false":
            return False
    return None


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    text = str(value)
    return text if text != "" else None


def resource_type_of(res: Mapping[str, Any], default: str | None = None) -> str | None:
    """Return `User` or `Group` for a SCIM resource (meta.resourceType, schemas), else default."""
    meta = res.get("meta")
    rtype = meta.get("resourceType") if isinstance(meta, dict) else None
    if isinstance(rtype, str):
        low = rtype.strip().lower()
        if low in ("user", "users"):
            return "User"
        if low in ("group", "groups"):
            return "Group"
    schemas = res.get("schemas")
    if isinstance(schemas, list):
        lowered = {str(s).lower() for s in schemas}
        if USER_SCHEMA.lower() in lowered:
            return "User"
        if GROUP_SCHEMA.lower() in lowered:
            return "Group"
    if default:
        return default
    if "userName" in res:
        return "User"
    if "members" in res or "displayName" in res:
        return "Group"
    return None


def resources_frame(
    resources: Iterable[Mapping[str, Any]],
    captured_at: pd.Timestamp,
    *,
    default_type: str | None = None,
) -> pd.DataFrame:
    """Return conformed ``scim_resources`` rows for SCIM User/Group resources (others skipped)."""
    rows = []
    skipped = 0
    for res in resources:
        rtype = resource_type_of(res, default_type)
        rid = _text(res.get("id"))
        if rtype not in ("User", "Group") or rid is None:
            skipped += 1
            continue
        meta = res.get("meta") if isinstance(res.get("meta"), dict) else {}
        assert isinstance(meta, dict)
        rows.append(
            {
                "captured_at": captured_at,
                "resource_type": rtype,
                "id": rid,
                "external_id": _text(res.get("externalId")),
                "user_name": _text(res.get("userName")) if rtype == "User" else None,
                "display_name": _text(res.get("displayName")),
                "active": to_bool(res.get("active")) if rtype == "User" else None,
                "created_at": _time_or_none(meta.get("created")),
                "modified_at": _time_or_none(meta.get("lastModified")),
            }
        )
    if skipped:
        log.warning(
            "skipped %d SCIM resources that are not users or groups (or have no id)", skipped
        )
    return conform("scim_resources", pd.DataFrame(rows))


def _time_or_none(value: Any) -> pd.Timestamp | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError):
        return None
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


@dataclass(frozen=True)
class PathInfo:
    """What a SCIM request path addresses."""

    resource_type: str
    resource_id: str | None
    search: bool  # POST .../.search
    query: str  # the query string, without '?'


def classify_path(path: str) -> PathInfo:
    """Return the resource type, id and query string a SCIM request path addresses.

    The SCIM endpoint is found from the end of the path, so any base prefix works
    (`/api/v2/scim/v2/Users/42`, `/scim/Users`, `/Users`).
    """
    parts = urlsplit(path if path.startswith("/") or "://" in path else "/" + path)
    segs = [s for s in parts.path.split("/") if s]
    rtype, rid, search = "other", None, False
    if segs:
        last = segs[-1].lower()
        if last.endswith(".scim"):
            last = last[: -len(".scim")]
        if last in ENDPOINTS:
            rtype = ENDPOINTS[last]
        elif last == ".search":
            search = True
            if len(segs) >= 2 and segs[-2].lower() in ENDPOINTS:
                rtype = ENDPOINTS[segs[-2].lower()]
        elif len(segs) >= 2 and segs[-2].lower() in ENDPOINTS:
            rtype = ENDPOINTS[segs[-2].lower()]
            rid = unquote(segs[-1])
    return PathInfo(rtype, rid, search, parts.query)


def operation_of(method: str, info: PathInfo) -> str:
    """Return the scim_requests operation for an HTTP method on a classified path."""
    m = method.upper()
    if info.search:
        return "query" if m == "POST" else "other"
    if info.resource_type == "other" or info.resource_type == "Bulk":
        return "other"
    if m == "GET":
        if info.resource_id is not None or info.resource_type == "ServiceProviderConfig":
            return "read"
        return "query"
    if m == "POST":
        return "create" if info.resource_id is None else "other"
    return {"PUT": "replace", "PATCH": "patch", "DELETE": "delete"}.get(m, "other")


_FILTER_RE: Final = {
    attr: re.compile(
        rf'(?<![\w.:]){attr}\s+eq\s+(?:"((?:[^"\\]|\\.)*)"|([^\s()"]+))', re.IGNORECASE
    )
    for attr in ("userName", "externalId")
}


def filter_value(filter_text: str | None, attr: str) -> str | None:
    """Return the value compared with ``attr eq`` in a SCIM filter (quoted or bare), if any."""
    if not filter_text:
        return None
    m = _FILTER_RE[attr].search(filter_text)
    if not m:
        return None
    if m.group(1) is not None:
        return re.sub(r"\\(.)", r"\1", m.group(1))
    return m.group(2)


def query_filter(query: str) -> str | None:
    """Return the `filter` parameter of a query string, decoded."""
    if not query:
        return None
    values = parse_qs(query, keep_blank_values=True).get("filter")
    return values[0] if values else None


def _patch_sets(body: Mapping[str, Any]) -> dict[str, Any]:
    """Return {attribute (lower case): value} that a PatchOp's add/replace operations set."""
    out: dict[str, Any] = {}
    ops = body.get("Operations", body.get("operations"))
    if not isinstance(ops, list):
        return out
    for op in ops:
        if not isinstance(op, dict):
            continue
        kind = str(op.get("op", "")).strip().lower()
        if kind not in ("add", "replace"):
            continue
        path = op.get("path")
        value = op.get("value")
        if isinstance(path, str) and path.strip():
            out[path.strip().lower()] = value
        elif isinstance(value, dict):
            # Path-less add/replace: keys are attribute paths (dotted or URN-qualified).
            for key, val in value.items():
                out[str(key).strip().lower()] = val
    return out


def _single_resource(body: Any) -> dict[str, Any] | None:
    """Return ``body`` when it is one SCIM resource (not a ListResponse, error or PatchOp)."""
    if not isinstance(body, dict):
        return None
    schemas = body.get("schemas")
    if isinstance(schemas, list) and any(
        str(s).lower().startswith("urn:ietf:params:scim:api:messages:") for s in schemas
    ):
        return None
    return body


def created_id(resource: Mapping[str, Any] | None, headers: Any) -> str | None:
    """Return a created resource's id: the body's ``id``, else the ``Location`` header's end."""
    rid = _text(resource.get("id")) if resource else None
    if rid:
        return rid
    if not isinstance(headers, Mapping):
        return None
    location = next((v for k, v in headers.items() if str(k).lower() == "location"), None)
    if isinstance(location, list):  # a header given as a list of values
        location = location[0] if location else None
    text = _text(location)
    if not text:
        return None
    segment = urlsplit(text).path.rstrip("/").rsplit("/", 1)[-1]
    return unquote(segment) or None


def request_row(
    *,
    method: str,
    path: str,
    status: int | None,
    request: Any = None,
    response: Any = None,
    response_headers: Any = None,
) -> dict[str, Any]:
    """Return the derived scim_requests columns of one SCIM exchange (docs/scim-audit-format.md).

    ``resource_id`` of a successful create (2xx, usually 201) is the created id: the response
    body's ``id``, else the last segment of the ``Location`` response header (DESIGN.md).

    ``user_name``/``external_id`` come from the response resource, else from what the request
    set (body, PatchOp add/replace incl. path-less value dicts), else from an `eq` filter.
    ``active_set`` is what a POST/PUT/PATCH asked for, whatever the outcome.
    """
    info = classify_path(path)
    operation = operation_of(method, info)
    req = request if isinstance(request, dict) else None
    sent: dict[str, Any] = {}
    if req is not None and operation in ("create", "replace"):
        sent = {str(k).lower(): v for k, v in req.items()}
    elif req is not None and operation == "patch":
        sent = _patch_sets(req)
    active_set = to_bool(sent.get("active")) if "active" in sent else None

    filt = query_filter(info.query)
    if filt is None and info.search and req is not None:
        filt = _text(req.get("filter"))

    resp_res = _single_resource(response) if status is None or status < 400 else None
    user_name: str | None = None
    if info.resource_type != "Group":
        user_name = (
            (_text(resp_res.get("userName")) if resp_res else None)
            or _text(sent.get("username"))
            or filter_value(filt, "userName")
        )
    external_id = (
        (_text(resp_res.get("externalId")) if resp_res else None)
        or _text(sent.get("externalid"))
        or filter_value(filt, "externalId")
    )
    scim_type = detail = None
    if isinstance(response, dict) and (
        (status is not None and status >= 400) or ERROR_SCHEMA in (response.get("schemas") or [])
    ):
        scim_type = _text(response.get("scimType"))
        detail = _text(response.get("detail"))
    resource_id = info.resource_id
    if operation == "create" and resource_id is None and status is not None and 200 <= status < 300:
        resource_id = created_id(resp_res, response_headers)
    return {
        "method": method.upper(),
        "path": path,
        "resource_type": info.resource_type,
        "resource_id": resource_id,
        "operation": operation,
        "user_name": user_name,
        "external_id": external_id,
        "active_set": active_set,
        "status_code": status,
        "scim_type": scim_type,
        "detail": detail,
    }


def line_request_id(prefix: str, line_number: int, line: str) -> str:
    """Return a deterministic request id for a log line (same line, same place -> same id)."""
    digest = hashlib.sha256(f"{line_number}\x00{line.rstrip(chr(10)).rstrip(chr(13))}".encode())
    return f"{prefix}-{digest.hexdigest()[:24]}"
