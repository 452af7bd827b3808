"""The Graph client: credential, msgraph-sdk client, pacing and the retry loop (GraphSession)."""

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
from ingest.errors import RemoteError, UsageError
from ingest.net import CONNECT_TIMEOUT_S, unreachable

if TYPE_CHECKING:
    from msgraph import GraphServiceClient


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
    notice_wait_s: float = 1.0  # retry waits this long or longer are logged at WARNING

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
            base_url=base,
            timeout=httpx.Timeout(cfg.timeout_s, connect=min(CONNECT_TIMEOUT_S, cfg.timeout_s)),
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


def query_config(builder: Any, **params: Any) -> Any:
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
        self.answered = False  # Graph has answered at least once (any HTTP status)

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
                if not self.answered:  # never reached: waiting will not help (ingest/net.py)
                    fatal = unreachable(
                        "Microsoft Graph",
                        self.base_url,
                        exc,
                        "check --graph-url (or PROVLENS_GRAPH_URL), the proxy and the network",
                    )
                    if fatal is not None:
                        raise fatal from None
                problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            except Exception as exc:
                mapped = _credential_error(exc)
                if mapped is exc:
                    raise
                raise mapped from exc
            else:
                self.answered = True
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
            # A long wait gets one line at default verbosity, so it never looks like a hang.
            level = logging.WARNING if delay >= c.notice_wait_s else logging.INFO
            why = "as Retry-After asks" if retry_after is not None else "backing off"
            log.log(
                level,
                "GET %s: %s; waiting %.1f s %s (attempt %d)",
                url,
                problem,
                delay,
                why,
                attempt,
            )
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
