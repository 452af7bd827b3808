"""Live ingest from Microsoft Graph: provisioning logs, synchronization job status and scope.

The one place that builds the Graph credential and the ``GraphServiceClient`` (msgraph-sdk over
azure-identity). Responses are taken as raw JSON through kiota's ``NativeResponseHandler``: the
SDK's typed models silently lose the ``import`` step type, ``stagedDelete`` and array service
principals (reference/graph/msgraph-sdk.md section 5), so every record goes through
``ingest.records.records_to_frames`` exactly as a file would.

Reliability, in one place (:class:`GraphSession`):

* a sliding-window pacer keeps the reporting endpoints (``/auditLogs``) under 5 requests per
  10 s, so a healthy run provokes no 429 and still runs close to that floor;
* ``Retry-After`` is honoured on 429/503/504; other 5xx, dropped connections and timeouts back
  off exponentially; a request gives up after ``give_up_after_s`` with one clear message.
  kiota's own RetryHandler is switched off per request because it neither retries dropped
  connections nor lets the pacer see its attempts;
* 401 is retried once (a fresh token), then 401/403 name the permission the call needs.

Incremental and resumable (:func:`pull_logs`): the window is cut into time slices (a day by
default), pages are committed in batches of ``pages_per_batch`` pages, and the watermark
(``graph:<spId>`` or ``graph:*``) moves to a slice's end only once that slice and every slice
before it are stored. The next run starts at the watermark minus ``overlap`` (records can arrive
up to two hours late); the store keeps the last write per ``events.id``, so a run killed at any
point and run again ends with every record exactly once.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import orjson
import pandas as pd
from kiota_abstractions.authentication import (
    AccessTokenProvider,
    AllowedHostsValidator,
    AuthenticationProvider,
    BaseBearerTokenAuthenticationProvider,
)
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_abstractions.native_response_handler import NativeResponseHandler
from kiota_http.middleware.options import ResponseHandlerOption, RetryHandlerOption

from ingest import settings
from ingest.errors import BadInput, RemoteError, UsageError
from ingest.formats.graph_objects import (
    assignments_frame,
    group_members_frame,
    sync_jobs_frame,
)

if TYPE_CHECKING:
    from msgraph import GraphServiceClient

    from ingest.store import Store

log = logging.getLogger(__name__)

DEFAULT_ROOT = "https://graph.microsoft.com"
API_VERSION = "v1.0"
# Settings read through ingest.settings (env, NAME_FILE, st.secrets).
DEVICE_CODE = "PROVLENS_GRAPH_DEVICE_CODE"  # "1": sign in interactively with a device code
RATE = "PROVLENS_GRAPH_RATE"  # "requests/seconds" on /auditLogs; default 5/10 (Graph's limit)
AZURE_CLI_CLIENT_ID = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"  # public client for device code

# What each endpoint needs, named in 401/403 errors and by `provlens doctor`.
PERMISSIONS: dict[str, str] = {
    "logs": "AuditLog.Read.All and Directory.Read.All (application permissions, admin-consented;"
    " a signed-in user also needs a role such as Reports Reader or Security Reader)",
    "jobs": "Synchronization.Read.All (a signed-in user also needs the Application Administrator"
    " or Cloud Application Administrator role)",
    "assignments": "Application.Read.All (or Directory.Read.All)",
    "members": "Directory.Read.All (or GroupMember.Read.All)",
    "service_principals": "Application.Read.All (or Directory.Read.All)",
}
RETRYABLE = frozenset({429, 500, 502, 503, 504})


@dataclass
class PullConfig:
    """Tunables of a Graph pull; defaults suit the real service, tests shrink the waits."""

    rate: tuple[int, float] = (5, 10.0)  # requests per seconds on /auditLogs
    pace_margin_s: float = 0.05  # added to each window so clock skew never crosses the limit
    top: int = 500  # records per page on /auditLogs/provisioning
    list_top: int = 999  # objects per page on directory lists
    slice: pd.Timedelta = field(default_factory=lambda: pd.Timedelta(days=1))
    overlap: pd.Timedelta = field(default_factory=lambda: pd.Timedelta(hours=2))
    default_days: int = 30  # first run without --since: Entra keeps 30 days (P1/P2)
    pages_per_batch: int = 10
    give_up_after_s: float = 300.0  # per request, from its first failure
    max_attempts: int = 12
    malformed_attempts: int = 3  # a page that is not JSON is fetched this often before failing
    backoff_base_s: float = 2.0
    backoff_max_s: float = 60.0
    max_retry_after_s: float = 600.0
    timeout_s: float = 100.0
    max_failed_slices_in_a_row: int = 2  # then stop: the service is down, not one slice

    @classmethod
    def from_settings(cls) -> PullConfig:
        """Return the defaults, with ``PROVLENS_GRAPH_RATE`` (``5/10``) applied when set."""
        cfg = cls()
        raw = settings.get(RATE)
        if raw:
            try:
                n, _, secs = raw.partition("/")
                cfg.rate = (int(n), float(secs))
                if cfg.rate[0] < 1 or cfg.rate[1] < 0:
                    raise ValueError(raw)
            except ValueError:
                raise UsageError(
                    f"{RATE}={raw!r} is not requests/seconds (e.g. 5/10); fix or unset it"
                ) from None
        return cfg


@dataclass
class Stats:
    """Counters a progress bar shows."""

    requests: int = 0
    pages: int = 0
    records: int = 0
    throttled: int = 0  # 429 answers
    retries: int = 0
    paced_s: float = 0.0  # time spent keeping under the rate limit
    waited_s: float = 0.0  # time spent waiting on Retry-After / back-off


class GraphHTTPError(RemoteError):
    """Graph answered with an error status (after retries, when retryable)."""

    def __init__(self, message: str, status: int | None, url: str) -> None:
        super().__init__(message)
        self.status = status
        self.url = url


class MalformedPage(RemoteError):
    """Graph answered 200 with a body that is not the expected JSON."""


# --- credentials and client ----------------------------------------------------------------------


def graph_root(url: str | None = None) -> str:
    """Return the Graph host root (``https://graph.microsoft.us``) from ``--graph-url`` or env."""
    raw = (url or settings.get(settings.GRAPH_URL) or DEFAULT_ROOT).strip().rstrip("/")
    for suffix in ("/v1.0", "/beta"):
        if raw.endswith(suffix):
            raw = raw[: -len(suffix)]
    parts = urlsplit(raw)
    loopback = parts.hostname in ("localhost", "127.0.0.1", "::1")
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UsageError(
            f"--graph-url {raw!r} is not a URL; give the host root, e.g. {DEFAULT_ROOT}"
        )
    if parts.scheme == "http" and not loopback:
        raise UsageError(f"--graph-url {raw!r} must use https (http only for localhost)")
    if parts.path not in ("", "/"):
        raise UsageError(
            f"--graph-url {raw!r} has a path; give the host root only "
            f"(provlens adds /{API_VERSION})"
        )
    return raw


class StaticTokenProvider(AccessTokenProvider):
    """Hands out a ready bearer token (``PROVLENS_GRAPH_TOKEN``), to the Graph host only."""

    def __init__(self, token: str, host: str) -> None:
        self._token = token
        self._hosts = AllowedHostsValidator([host])

    async def get_authorization_token(
        self, uri: str, additional_authentication_context: dict[str, Any] | None = None
    ) -> str:
        """Return the token when ``uri`` is on the Graph host, else an empty string."""
        return self._token if self._hosts.is_url_host_valid(uri) else ""

    def get_allowed_hosts_validator(self) -> AllowedHostsValidator:
        """Return the validator limiting the token to the Graph host."""
        return self._hosts


def credential_source() -> str:
    """Describe (without secrets) which credential :func:`build_credential` will use."""
    if settings.get(settings.GRAPH_TOKEN):
        return f"ready bearer token ({settings.GRAPH_TOKEN})"
    if (settings.get(DEVICE_CODE) or "").lower() in ("1", "true", "yes"):
        return f"device code sign-in ({DEVICE_CODE}=1)"
    if settings.get("AZURE_CLIENT_ID") and (
        settings.get("AZURE_CLIENT_SECRET") or settings.get("AZURE_CLIENT_CERTIFICATE_PATH")
    ):
        return (
            "service principal from AZURE_TENANT_ID / AZURE_CLIENT_ID and its secret or certificate"
        )
    return "DefaultAzureCredential (workload identity, managed identity, Azure CLI, ...)"


def _device_code_prompt(verification_uri: str, user_code: str, expires_on: Any) -> None:
    """Show the sign-in instruction on stderr (stdout carries the command's output)."""
    sys.stderr.write(
        f"provlens: to sign in to Microsoft Graph, open {verification_uri} and enter the code "
        f"{user_code}\n"
    )
    sys.stderr.flush()


def build_credential() -> Any:
    """Return an azure-identity credential: device code when asked, else the default chain."""
    from azure.identity import DefaultAzureCredential, DeviceCodeCredential

    if (settings.get(DEVICE_CODE) or "").lower() in ("1", "true", "yes"):
        return DeviceCodeCredential(
            client_id=settings.get("AZURE_CLIENT_ID") or AZURE_CLI_CLIENT_ID,
            tenant_id=settings.get("AZURE_TENANT_ID") or "organizations",
            prompt_callback=_device_code_prompt,
        )
    # EnvironmentCredential (secret / certificate) -> workload identity -> managed identity ->
    # Azure CLI ...; the interactive browser is left out so cron jobs never hang on a prompt.
    return DefaultAzureCredential(exclude_interactive_browser_credential=True)


def build_auth_provider(root: str, credential: Any = None) -> AuthenticationProvider:
    """Return the kiota auth provider: ``credential``, else the ready token, else the default."""
    host = urlsplit(root).hostname or ""
    token = settings.get(settings.GRAPH_TOKEN)
    if token and credential is None:
        return BaseBearerTokenAuthenticationProvider(StaticTokenProvider(token, host))
    from kiota_authentication_azure.azure_identity_authentication_provider import (
        AzureIdentityAuthenticationProvider,
    )

    return AzureIdentityAuthenticationProvider(
        credential or build_credential(), scopes=[f"{root}/.default"], allowed_hosts=[host]
    )


def build_client(
    root: str, config: PullConfig | None = None, credential: Any = None
) -> tuple[GraphServiceClient, httpx.AsyncClient]:
    """Return a GraphServiceClient bound to ``<root>/v1.0`` and the httpx client to close after.

    ``credential`` (any azure-identity credential) overrides the settings, e.g. a
    ``ManagedIdentityCredential(client_id=...)`` for a user-assigned identity.
    """
    from msgraph import GraphServiceClient
    from msgraph.graph_request_adapter import GraphRequestAdapter
    from msgraph_core import GraphClientFactory

    cfg = config or PullConfig()
    base = f"{root}/{API_VERSION}"
    http = GraphClientFactory.create_with_default_middleware(
        client=httpx.AsyncClient(
            base_url=base, timeout=httpx.Timeout(cfg.timeout_s, connect=min(30.0, cfg.timeout_s))
        )
    )
    adapter = GraphRequestAdapter(build_auth_provider(root, credential), http)
    adapter.base_url = base  # without the trailing slash httpx adds (msgraph-sdk.md section 3)
    return GraphServiceClient(request_adapter=adapter), http


# --- pacing and the retry loop -------------------------------------------------------------------


class SlidingWindowPacer:
    """Lets at most ``limit`` requests start in any ``window`` seconds (the reporting API rule)."""

    def __init__(
        self,
        limit: int,
        window: float,
        margin: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit, self.window, self.margin, self.clock = limit, window, margin, clock
        self._sent: list[float] = []

    def delay(self) -> float:
        """Return how long the next request must wait (0 when it may go now)."""
        if self.window <= 0:
            return 0.0
        now = self.clock()
        self._sent = [t for t in self._sent if now - t < self.window + self.margin]
        if len(self._sent) < self.limit:
            return 0.0
        return max(0.0, self._sent[-self.limit] + self.window + self.margin - now)

    def record(self) -> None:
        """Note that a request starts now."""
        self._sent.append(self.clock())

    def mark_done(self) -> None:
        """Move the latest request's time to now, when its answer (or failure) came back.

        The server counts a request when it arrives, which is somewhere between the client's
        send and the answer; only the answer's time is sure not to be early, so windows are
        measured from it (costing one round trip per window, not per request).
        """
        if self._sent:
            self._sent[-1] = self.clock()

    async def acquire(self) -> float:
        """Wait until a request may start, record it, and return the seconds waited."""
        waited = 0.0
        while (d := self.delay()) > 0:
            await asyncio.sleep(d)
            waited += d
        self.record()
        return waited


def _retry_after(value: str | None) -> float | None:
    """Return a ``Retry-After`` header (seconds or HTTP date) in seconds; None when absent/zero."""
    if not value:
        return None
    try:
        secs = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        secs = (when - pd.Timestamp.now(tz="UTC").to_pydatetime()).total_seconds()
    return secs if secs > 0 else None


def _graph_error(resp: httpx.Response) -> tuple[str, str]:
    """Return Graph's error ``(code, message)`` from an error body, as far as it can be read."""
    try:
        err = orjson.loads(resp.content).get("error") or {}
        return str(err.get("code") or ""), str(err.get("message") or "").strip()
    except (orjson.JSONDecodeError, AttributeError):
        return "", ""


def _query(builder: Any, **params: Any) -> Any:
    """Return the builder's generated ``...GetQueryParameters`` filled with ``params``."""
    cls = getattr(type(builder), f"{type(builder).__name__}GetQueryParameters")
    return cls(**params)


class GraphSession:
    """A GraphServiceClient plus pacing, retries, error mapping and progress counters."""

    def __init__(
        self,
        client: GraphServiceClient,
        config: PullConfig,
        *,
        base_url: str,
        on_progress: Callable[[Stats], None] | None = None,
    ) -> None:
        self.client = client
        self.config = config
        self.base_url = base_url.rstrip("/")
        self.pacer = SlidingWindowPacer(config.rate[0], config.rate[1], config.pace_margin_s)
        self.stats = Stats()
        self._on_progress = on_progress

    def progress(self) -> None:
        """Report the counters to the progress callback, if any."""
        if self._on_progress is not None:
            self._on_progress(self.stats)

    def _backoff(self, attempt: int) -> float:
        c = self.config
        return min(c.backoff_max_s, c.backoff_base_s * 2 ** (attempt - 1)) * (
            0.5 + random.random() / 2
        )

    def _denied(self, status: int, code: str, message: str, url: str, need: str) -> GraphHTTPError:
        what = "authentication failed" if status == 401 else "access denied"
        text = (
            f"Graph {what} (HTTP {status} {code or ''}".rstrip()
            + f") for GET {url}: the identity provlens signs in with needs {PERMISSIONS[need]}"
        )
        if status == 401:
            text += "; check the token or credential (PROVLENS_GRAPH_TOKEN, AZURE_* variables)"
        if message:
            text += f". Graph said: {message.splitlines()[0][:200]}"
        return GraphHTTPError(text, status, url)

    async def get_json(
        self, builder: Any, url: str, need: str, *, paced: bool, query: Any = None
    ) -> dict[str, Any]:
        """GET through ``builder`` and return the JSON object, retrying what is worth retrying."""
        c = self.config
        options = [
            ResponseHandlerOption(NativeResponseHandler()),
            RetryHandlerOption(delay=0, max_retries=0, should_retry=False),
        ]
        cfg: RequestConfiguration[Any] = RequestConfiguration(
            query_parameters=query, options=options
        )
        attempt = 0
        malformed = 0
        first_failure: float | None = None
        reauthenticated = False
        while True:
            attempt += 1
            if paced:
                self.stats.paced_s += await self.pacer.acquire()
            self.stats.requests += 1
            retry_after: float | None = None
            try:
                try:
                    resp = await builder.get(request_configuration=cfg)
                finally:
                    if paced:
                        self.pacer.mark_done()
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            except Exception as exc:
                mapped = _credential_error(exc)
                if mapped is exc:
                    raise
                raise mapped from exc
            else:
                status = resp.status_code
                if 200 <= status < 300:
                    try:
                        doc = orjson.loads(resp.content)
                        if not isinstance(doc, dict):
                            raise ValueError("not a JSON object")
                        return doc
                    except (orjson.JSONDecodeError, ValueError) as exc:
                        malformed += 1
                        problem = f"a page that is not valid JSON ({exc})"
                        if malformed >= c.malformed_attempts:
                            raise MalformedPage(
                                f"Graph returned {problem} for GET {url} "
                                f"{malformed} times; nothing from that page was stored; "
                                "run again later"
                            ) from None
                else:
                    code, message = _graph_error(resp)
                    if status == 401 and not reauthenticated:
                        reauthenticated = True  # an expired token: the provider fetches a new one
                        log.info("Graph answered 401 for %s; retrying once with a new token", url)
                        self.stats.retries += 1
                        continue
                    if status in (401, 403):
                        raise self._denied(status, code, message, url, need)
                    if status == 429:
                        self.stats.throttled += 1
                    if status not in RETRYABLE:
                        detail = f": {message.splitlines()[0][:300]}" if message else ""
                        raise GraphHTTPError(
                            f"Graph answered HTTP {status} {code}{detail} for GET {url}",
                            status,
                            url,
                        )
                    problem = f"HTTP {status} {code}".rstrip()
                    if status in (429, 503, 504):
                        retry_after = _retry_after(resp.headers.get("Retry-After"))
            now = time.monotonic()
            first_failure = first_failure if first_failure is not None else now
            elapsed = now - first_failure
            delay = retry_after if retry_after is not None else self._backoff(attempt)
            give_up = (
                attempt >= c.max_attempts
                or elapsed + delay > c.give_up_after_s
                or delay > c.max_retry_after_s
            )
            if give_up:
                raise GraphHTTPError(
                    f"Graph kept failing for GET {url} ({problem}) after {attempt} attempts over "
                    f"{elapsed:.0f} s; nothing from that request was stored; run again later",
                    None,
                    url,
                )
            log.info("GET %s: %s; retrying in %.1f s (attempt %d)", url, problem, delay, attempt)
            self.stats.retries += 1
            self.stats.waited_s += delay
            self.progress()
            await asyncio.sleep(delay)

    async def pages(
        self, builder: Any, url: str, need: str, *, paced: bool, query: Any = None
    ) -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
        """Yield ``(url, items)`` for every page, following ``@odata.nextLink`` until absent."""
        doc = await self.get_json(builder, url, need, paced=paced, query=query)
        while True:
            value = doc.get("value")
            if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
                raise MalformedPage(
                    f"Graph returned a page without a 'value' array of objects for GET {url}; "
                    "nothing from that page was stored; run again later"
                )
            self.stats.pages += 1
            yield url, value
            link = doc.get("@odata.nextLink")
            if not link:
                return
            if not isinstance(link, str) or urlsplit(link).scheme not in ("http", "https"):
                raise MalformedPage(
                    f"Graph returned a nextLink that is not a URL ({link!r}) for GET {url}"
                )
            url = link
            doc = await self.get_json(builder.with_url(link), link, need, paced=paced)

    async def collect(
        self, builder: Any, url: str, need: str, *, query: Any = None
    ) -> list[dict[str, Any]]:
        """Return every item of a (directory, unpaced) list."""
        out: list[dict[str, Any]] = []
        async for _, items in self.pages(builder, url, need, paced=False, query=query):
            out.extend(items)
        return out


def _credential_error(exc: Exception) -> Exception:
    """Map azure-identity failures to UsageError (nothing configured) or RemoteError (refused)."""
    try:
        from azure.core.exceptions import ClientAuthenticationError
        from azure.identity import CredentialUnavailableError
    except ImportError:  # pragma: no cover - azure-identity is a dependency
        return exc
    first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, CredentialUnavailableError):
        return UsageError(
            f"no Graph credential is available ({first}); set AZURE_TENANT_ID, AZURE_CLIENT_ID and "
            f"AZURE_CLIENT_SECRET (or AZURE_CLIENT_CERTIFICATE_PATH), run `az login`, set "
            f"{DEVICE_CODE}=1 to sign in with a device code, or set {settings.GRAPH_TOKEN}"
        )
    if isinstance(exc, ClientAuthenticationError):
        return RemoteError(
            f"Entra ID refused to issue a Graph token ({first}); check the tenant, client id and "
            "secret or certificate"
        )
    return exc


# --- provisioning logs ---------------------------------------------------------------------------


def _odata_time(ts: pd.Timestamp) -> str:
    return ts.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def log_filter(start: pd.Timestamp, end: pd.Timestamp, service_principal_id: str | None) -> str:
    """Return the server-side ``$filter`` for the slice ``[start, end)`` (and one app when given).

    Graph documents ``eq``, ``gt`` and ``lt`` on activityDateTime (not ``ge``), so the slice asks
    for ``gt start - 1 s``; the store de-duplicates that second of overlap.
    """
    after = start - pd.Timedelta(seconds=1)
    expr = f"activityDateTime gt {_odata_time(after)} and activityDateTime lt {_odata_time(end)}"
    if service_principal_id:
        quoted = service_principal_id.replace("'", "''")  # OData string literal escaping
        expr += f" and servicePrincipal/id eq '{quoted}'"
    return expr


def time_slices(
    start: pd.Timestamp, end: pd.Timestamp, size: pd.Timedelta
) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """Return consecutive ``[a, b)`` slices covering ``[start, end)``, oldest first."""
    start = start.tz_convert("UTC").floor("s")
    end = end.tz_convert("UTC").ceil("s")
    out = []
    a = start
    while a < end:
        b = min(a + size, end)
        out.append((a, b))
        a = b
    return out


def watermark_key(service_principal_id: str | None) -> str:
    """Return the store key of the log watermark: ``graph:<spId>`` or ``graph:*`` for all apps."""
    return f"graph:{service_principal_id or '*'}"


def log_window_start(
    store: Store,
    service_principal_id: str | None,
    since: pd.Timestamp | None,
    now: pd.Timestamp,
    config: PullConfig,
) -> pd.Timestamp:
    """Return where a pull starts: ``since``, else the watermark minus the overlap, else N days."""
    if since is not None:
        return since
    marks = [store.watermark(watermark_key(service_principal_id))]
    if service_principal_id:
        marks.append(store.watermark(watermark_key(None)))  # an all-apps pull covers this app too
    known = [m for m in marks if m is not None]
    if known:
        return max(known) - config.overlap
    return now - pd.Timedelta(days=config.default_days)


@dataclass
class LogPull:
    """What :func:`pull_logs` did."""

    key: str
    start: pd.Timestamp
    end: pd.Timestamp
    records: int = 0
    pages: int = 0
    slices: int = 0
    failed: list[str] = field(default_factory=list)
    watermark: pd.Timestamp | None = None
    service_principals: set[str] = field(default_factory=set)


class _Committer:
    """Buffers converted pages and commits them, with the watermark of finished slices, in batches.

    Pages are converted as they arrive (the work overlaps the pacing waits); a batch is committed
    every ``pages_per_batch`` pages (empty ones count: each is a request) and at the end. A
    finished slice's watermark is only ever written in the same batch as its records, or after.
    """

    def __init__(
        self,
        store: Store,
        key: str,
        to_frames: Callable[..., dict[str, pd.DataFrame]],
        pages_per_batch: int,
    ) -> None:
        self.store, self.key, self.to_frames = store, key, to_frames
        self.pages_per_batch = max(1, pages_per_batch)
        self.stored = store.watermark(key)
        self.pending: pd.Timestamp | None = None
        self.frames: list[dict[str, pd.DataFrame]] = []
        self.pages = 0
        self._mark = 0
        self.service_principals: set[str] = set()

    def slice_started(self) -> None:
        """Remember where the current slice's pages begin in the buffer."""
        self._mark = len(self.frames)

    def slice_failed(self) -> None:
        """Drop the buffered pages of the slice that failed (earlier slices stay buffered)."""
        del self.frames[self._mark :]

    def add_page(self, items: list[dict[str, Any]], span: str, where: str) -> None:
        """Convert one page and buffer it; commit when the batch is full."""
        if items:
            try:
                frames = self.to_frames(
                    items, origin="graph", locate=lambda i: f"{span} record {i + 1}"
                )
            except BadInput as exc:
                raise MalformedPage(
                    f"Graph returned a record provlens cannot read ({exc}) in GET {where}; "
                    "nothing from that time slice was stored"
                ) from None
            self.frames.append(frames)
            ev = frames.get("events")
            if ev is not None and "service_principal_id" in ev:
                self.service_principals |= {str(v) for v in ev["service_principal_id"].dropna()}
        self.pages += 1
        if self.pages >= self.pages_per_batch:
            self.flush(span)

    def advance(self, ts: pd.Timestamp) -> None:
        """Mark everything before ``ts`` as read (written with the next commit)."""
        if self.stored is None or ts > self.stored:
            self.pending = ts

    def flush(self, detail: str) -> None:
        """Commit the buffered pages and any pending watermark in one all-or-nothing batch."""
        if self.frames or self.pending is not None:
            with self.store.batch(source="graph", detail=f"logs {detail}") as bt:
                for frames in _last_version_only(self.frames):
                    bt.add(frames)
                if self.pending is not None:
                    bt.set_watermark(self.key, self.pending)
            if self.pending is not None:
                self.stored, self.pending = self.pending, None
        self.frames, self.pages, self._mark = [], 0, 0


def _last_version_only(pages: list[dict[str, pd.DataFrame]]) -> list[dict[str, pd.DataFrame]]:
    """Drop earlier copies of a record read twice in one batch (slice overlap, re-read slice).

    The store keeps the last event per id across batches; inside one batch its steps and
    modified properties would otherwise be added once per copy.
    """
    seen: set[str] = set()
    out: list[dict[str, pd.DataFrame]] = []
    for frames in reversed(pages):
        ev = frames.get("events")
        if ev is None or ev.empty:
            out.append(frames)
            continue
        again = ev["id"].isin(seen)
        if again.any():
            drop = set(ev.loc[again, "id"])
            frames = {
                table: df[~df["id" if table == "events" else "event_id"].isin(drop)]
                for table, df in frames.items()
            }
        seen.update(ev["id"])
        out.append(frames)
    out.reverse()
    return out


async def pull_logs(
    session: GraphSession,
    store: Store,
    *,
    service_principal_id: str | None,
    since: pd.Timestamp | None,
    now: pd.Timestamp,
) -> LogPull:
    """Pull provisioning logs into the store slice by slice; RemoteError if any slice failed."""
    from ingest.records import records_to_frames

    c = session.config
    key = watermark_key(service_principal_id)
    start = log_window_start(store, service_principal_id, since, now, c)
    result = LogPull(key, start, now)
    committer = _Committer(store, key, records_to_frames, c.pages_per_batch)
    # A --since later than the watermark leaves a gap before it: keep the watermark where it is.
    may_advance = committer.stored is None or start <= committer.stored
    if not may_advance:
        log.info("%s starts after the watermark %s; the watermark stays", key, committer.stored)
    slices = time_slices(start, now, c.slice)
    contiguous = True
    failed_in_a_row = 0
    stopped = ""
    builder = session.client.audit_logs.provisioning
    log.info("provisioning logs %s from %s to %s in %d slices", key, start, now, len(slices))
    for n, (a, b) in enumerate(slices, start=1):
        expr = log_filter(a, b, service_principal_id)
        query = _query(builder, filter=expr, top=c.top)
        url = f"{session.base_url}/auditLogs/provisioning?$filter={expr}&$top={c.top}"
        span = f"{_odata_time(a)}..{_odata_time(b)}"
        result.slices += 1
        try:
            records, pages = await _pull_slice(session, committer, builder, query, url, span)
        except (GraphHTTPError, MalformedPage) as exc:
            committer.slice_failed()
            if isinstance(exc, GraphHTTPError) and exc.status in (400, 401, 403):
                committer.flush(f"{key} before a refused request")
                raise  # no other slice can do better
            # INFO, not WARNING: a failed run prints one error line (DESIGN.md); -v shows these.
            log.info("provisioning logs %s failed: %s", span, exc)
            result.failed.append(f"{span}: {exc}")
            contiguous = False
            failed_in_a_row += 1
            if failed_in_a_row >= c.max_failed_slices_in_a_row and n < len(slices):
                stopped = f"stopped after {failed_in_a_row} failed time slices in a row, "
                break
        except BaseException:
            committer.slice_failed()
            raise
        else:
            failed_in_a_row = 0
            result.records += records
            result.pages += pages
            if contiguous and may_advance:
                committer.advance(b)
    committer.flush(f"{key} to {_odata_time(now)}")
    result.watermark = committer.stored
    result.service_principals = committer.service_principals
    if result.failed:
        mark = _odata_time(result.watermark) if result.watermark is not None else "unset"
        raise RemoteError(
            f"provisioning logs: {stopped}{len(result.failed)} failed time slice(s), first "
            f"{result.failed[0]}; "
            f"{result.records} records from the other slices were stored and the watermark "
            f"{key} stays at {mark}, so the next run retries the rest"
        )
    return result


async def _pull_slice(
    session: GraphSession,
    committer: _Committer,
    builder: Any,
    query: Any,
    url: str,
    span: str,
) -> tuple[int, int]:
    """Pull one slice page by page into the committer; restart once on an expired next link."""
    for restart in (False, True):
        records = pages = 0
        committer.slice_started()
        try:
            async for page_url, items in session.pages(
                builder, url, "logs", paced=True, query=query
            ):
                committer.add_page(items, span, page_url)
                pages += 1
                records += len(items)
                session.stats.records += len(items)
                session.progress()
            return records, pages
        except GraphHTTPError as exc:
            # A nextLink can expire (404): re-read the slice once from its start (the store
            # de-duplicates whatever of it was already committed).
            if exc.status == 404 and exc.url != url and not restart:
                log.info("the next-page link of %s expired; re-reading the slice", span)
                committer.slice_failed()
                continue
            raise
    raise AssertionError("unreachable")  # pragma: no cover


# --- job status and scope ------------------------------------------------------------------------


@dataclass
class StatePull:
    """What :func:`pull_state` stored for one service principal."""

    service_principal_id: str
    jobs: int = 0
    assignments: int = 0
    groups: int = 0
    members: int = 0


async def fetch_state(
    session: GraphSession, service_principal_id: str, captured_at: pd.Timestamp
) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """Return sync_jobs/assignments/group_members frames for one app and its assigned groups."""
    sp = service_principal_id
    base = session.base_url
    sp_builder = session.client.service_principals.by_service_principal_id(sp)
    jobs = await session.collect(
        sp_builder.synchronization.jobs,
        f"{base}/servicePrincipals/{sp}/synchronization/jobs",
        "jobs",
    )
    assigned_b = sp_builder.app_role_assigned_to
    assigned = await session.collect(
        assigned_b,
        f"{base}/servicePrincipals/{sp}/appRoleAssignedTo",
        "assignments",
        query=_query(assigned_b, top=session.config.list_top),
    )
    try:
        assignments = assignments_frame(assigned, sp)
    except ValueError as exc:
        raise MalformedPage(
            f"Graph returned an app role assignment with {exc} for service principal {sp}; "
            "its scope was not stored"
        ) from None
    groups = sorted(
        {
            str(a["principalId"])
            for a in assigned
            if str(a.get("principalType", "")).lower() == "group"
        }
    )
    member_frames = []
    for gid in groups:
        # transitiveMembers gives everyone; members gives the direct list, which decides `direct`
        # exactly (DESIGN.md: nested members are not provisioned) in one more call per group.
        g_builder = session.client.groups.by_group_id(gid)
        transitive = await session.collect(
            g_builder.transitive_members,
            f"{base}/groups/{gid}/transitiveMembers",
            "members",
            query=_query(g_builder.transitive_members, top=session.config.list_top),
        )
        direct = await session.collect(
            g_builder.members,
            f"{base}/groups/{gid}/members",
            "members",
            query=_query(g_builder.members, top=session.config.list_top),
        )
        known = {gid: {str(m.get("id")) for m in direct}}
        member_frames.append(group_members_frame(gid, transitive + direct, known))
    try:
        frames = {"sync_jobs": sync_jobs_frame(jobs, sp, captured_at), "assignments": assignments}
    except ValueError as exc:
        raise MalformedPage(
            f"Graph returned a synchronization job with {exc} for service principal {sp}; "
            "its job status was not stored"
        ) from None
    if member_frames:
        frames["group_members"] = pd.concat(member_frames, ignore_index=True)
    return frames, groups


async def pull_state(
    session: GraphSession, store: Store, service_principal_id: str, captured_at: pd.Timestamp
) -> StatePull:
    """Pull one app's job status and scope and store them in one batch."""
    frames, groups = await fetch_state(session, service_principal_id, captured_at)
    with store.batch(source="graph", detail=f"jobs and scope {service_principal_id}") as bt:
        bt.add(frames)
        bt.replace_groups("assignments", [service_principal_id])
        if groups:
            bt.replace_groups("group_members", groups)
    gm = frames.get("group_members")
    return StatePull(
        service_principal_id,
        jobs=len(frames["sync_jobs"]),
        assignments=len(frames["assignments"]),
        groups=len(groups),
        members=0 if gm is None else len(gm),
    )


def discover_service_principals(store: Store, since: pd.Timestamp) -> list[str]:
    """Return the service principals named by stored events since ``since``."""
    ev = store.read("events", columns=["service_principal_id"], since=since)
    return sorted(str(s) for s in ev["service_principal_id"].dropna().unique() if str(s))


def run(coro_factory: Callable[[], Any]) -> Any:
    """Run an async Graph job to completion (one event loop per CLI command)."""
    return asyncio.run(coro_factory())


__all__ = [
    "PERMISSIONS",
    "GraphHTTPError",
    "GraphSession",
    "LogPull",
    "MalformedPage",
    "PullConfig",
    "SlidingWindowPacer",
    "StatePull",
    "Stats",
    "build_client",
    "build_credential",
    "credential_source",
    "discover_service_principals",
    "fetch_state",
    "graph_root",
    "log_filter",
    "pull_logs",
    "pull_state",
    "run",
    "time_slices",
    "watermark_key",
]
