"""The Log Analytics client: credential, ``LogsQueryClient``, timeouts, retries, error mapping."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import pandas as pd

from ingest import settings
from ingest.errors import RemoteError, UsageError

log = logging.getLogger(__name__)

DEFAULT_ROOT = "https://api.loganalytics.azure.com"
API_VERSION = "v1"
TABLE = "AADProvisioningLogs"
# What a 401/403 answer means the identity lacks, named in errors and by `provlens doctor`.
ROLE = (
    "the Log Analytics Reader role on the workspace (or any role granting "
    "Microsoft.OperationalInsights/workspaces/query/read)"
)
RETRYABLE = frozenset({429, 500, 502, 503, 504})
# Inner-error text of a PartialError caused by the per-query result limits (rows or size).
TOO_LARGE_MARKERS = ("E_QUERY_RESULT_SET_TOO_LARGE", "record count limit", "data size limit")


@dataclass
class LaConfig:
    """Tunables of a workspace pull or query; defaults suit the real service, tests shrink them."""

    slice: pd.Timedelta = field(default_factory=lambda: pd.Timedelta(days=1))
    min_slice: pd.Timedelta = field(default_factory=lambda: pd.Timedelta(milliseconds=1))
    # Rows reach a workspace minutes to hours after TimeGenerated: re-read that much next time.
    overlap: pd.Timedelta = field(default_factory=lambda: pd.Timedelta(hours=6))
    default_days: int = 30  # first run without --since
    rows_per_batch: int = 50_000  # commit when this many rows are buffered
    server_timeout_s: int = 600  # Prefer: wait=N (the service's maximum)
    read_timeout_s: float = 660.0  # longer than the server's own timeout
    connect_timeout_s: float = 10.0
    give_up_after_s: float = 300.0  # per query, from its first failure
    max_attempts: int = 8
    backoff_base_s: float = 2.0
    backoff_max_s: float = 60.0
    max_retry_after_s: float = 600.0


class LaHTTPError(RemoteError):
    """The workspace answered with an error status (after retries, when retryable)."""

    def __init__(self, message: str, status: int | None) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class QueryResult:
    """One query's primary table (datetimes as ISO strings) and its partial error, if any."""

    columns: list[str]
    types: list[str]
    rows: list[list[Any]]
    partial_code: str | None = None
    partial_message: str | None = None

    @property
    def too_large(self) -> bool:
        """True when the partial error is the per-query row / size limit."""
        text = self.partial_message or ""
        return self.partial_code is not None and any(m in text for m in TOO_LARGE_MARKERS)

    def records(self) -> list[dict[str, Any]]:
        """Return the rows as ``{column: value}`` dicts."""
        cols = self.columns
        return [dict(zip(cols, row, strict=True)) for row in self.rows]


def la_root(url: str | None = None) -> str:
    """Return the query API root (``https://api.loganalytics.azure.com``) from ``--la-url``/env."""
    raw = (url or settings.get(settings.LA_URL) or DEFAULT_ROOT).strip().rstrip("/")
    if raw.endswith(f"/{API_VERSION}"):
        raw = raw[: -len(API_VERSION) - 1]
    parts = urlsplit(raw)
    loopback = parts.hostname in ("localhost", "127.0.0.1", "::1")
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UsageError(f"--la-url {raw!r} is not a URL; give the API root, e.g. {DEFAULT_ROOT}")
    if parts.scheme == "http" and not loopback:
        raise UsageError(f"--la-url {raw!r} must use https (http only for localhost)")
    if parts.path not in ("", "/"):
        raise UsageError(
            f"--la-url {raw!r} has a path; give the API root only (provlens adds "
            f"/{API_VERSION}/workspaces/ID/query)"
        )
    return raw


def workspace_id(value: str | None) -> str:
    """Return the workspace id from ``--workspace-id`` or ``PROVLENS_LA_WORKSPACE_ID``."""
    raw = (value or settings.get(settings.LA_WORKSPACE) or "").strip().lower()
    if not raw:
        raise UsageError(
            f"no Log Analytics workspace given: pass --workspace-id ID or set "
            f"{settings.LA_WORKSPACE} (the Workspace ID, a GUID, on the workspace's Overview page)"
        )
    parts = raw.split("-")
    if [len(p) for p in parts] != [8, 4, 4, 4, 12] or any(
        c not in "0123456789abcdef" for p in parts for c in p
    ):
        raise UsageError(
            f"workspace id {raw!r} is not a GUID; use the Workspace ID from the Log Analytics "
            "workspace's Overview page"
        )
    return raw


class StaticTokenCredential:
    """An azure-core TokenCredential handing out a ready bearer token (``PROVLENS_LA_TOKEN``)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        """Return the token as an ``AccessToken`` valid for the next hour."""
        from azure.core.credentials import AccessToken

        return AccessToken(self._token, int(time.time()) + 3600)

    def __repr__(self) -> str:  # never show the token
        return "StaticTokenCredential(<hidden>)"


def credential_source() -> str:
    """Describe (without secrets) which credential :func:`build_credential` will use."""
    if settings.get(settings.LA_TOKEN):
        return f"ready bearer token ({settings.LA_TOKEN})"
    from ingest.graph.client import credential_source as graph_source

    text: str = graph_source()
    return (
        text
        if not text.startswith("ready bearer")
        else ("DefaultAzureCredential (workload identity, managed identity, Azure CLI, ...)")
    )


def build_credential() -> Any:
    """Return the ready-token credential (``PROVLENS_LA_TOKEN``), else azure-identity's."""
    token = settings.get(settings.LA_TOKEN)
    if token:
        return StaticTokenCredential(token)
    from ingest.graph.client import build_credential as identity_credential

    return identity_credential()


def build_client(root: str, config: LaConfig, credential: Any = None) -> Any:
    """Return a ``LogsQueryClient`` on ``root`` with provlens' timeouts and no SDK retries.

    azure-core would retry a POST carrying ``Retry-After`` ten times on its own; provlens runs
    its own loop (:meth:`LaSession.query`) so waits are bounded, counted and reported.
    """
    from azure.monitor.query import LogsQueryClient

    return LogsQueryClient(
        credential or build_credential(),
        endpoint=root,
        retry_total=0,
        connection_timeout=config.connect_timeout_s,
        read_timeout=config.read_timeout_s,
    )


def _retry_after(headers: Any) -> float | None:
    from ingest.graph.client import _retry_after as parse

    value = headers.get("Retry-After") if headers is not None else None
    return parse(value)


def _first_line(text: str, limit: int = 240) -> str:
    text = (text or "").strip()
    return text.splitlines()[0][:limit] if text else ""


class LaSession:
    """A LogsQueryClient plus the retry loop, error mapping and counters of one command."""

    def __init__(
        self,
        client: Any,
        config: LaConfig,
        *,
        root: str,
        workspace: str,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.config = config
        self.root = root
        self.workspace = workspace
        self.url = f"{root}/{API_VERSION}/workspaces/{workspace}/query"
        self.requests = 0
        self.throttled = 0
        self.retries = 0
        self.waited_s = 0.0
        self._answered = False  # has the service answered anything yet?
        self._sleep = sleep

    def _backoff(self, attempt: int) -> float:
        c = self.config
        return min(c.backoff_max_s, c.backoff_base_s * 2 ** (attempt - 1)) * (
            0.5 + random.random() / 2
        )

    def _denied(self, status: int, message: str) -> LaHTTPError:
        what = "authentication failed" if status == 401 else "access denied"
        text = (
            f"Log Analytics {what} (HTTP {status}) for POST {self.url}: the identity provlens "
            f"signs in with needs {ROLE}"
        )
        if status == 401:
            text += f"; check the token or credential ({settings.LA_TOKEN}, AZURE_* variables)"
        if message:
            text += f". The service said: {_first_line(message, 200)}"
        return LaHTTPError(text, status)

    def query(self, kql: str, timespan: tuple[datetime, datetime] | None = None) -> QueryResult:
        """Run ``kql`` and return its primary table; retry 429/5xx/timeouts; map the rest."""
        from azure.core.exceptions import (
            ClientAuthenticationError,
            HttpResponseError,
            ServiceRequestError,
            ServiceResponseError,
        )
        from azure.monitor.query import LogsQueryStatus

        c = self.config
        extra: dict[str, Any] = {}
        if self.root.startswith("http://"):
            extra["enforce_https"] = False  # loopback test servers only (la_root enforces it)
        attempt = 0
        first_failure: float | None = None
        reauthenticated = False
        while True:
            attempt += 1
            self.requests += 1
            retry_after: float | None = None
            try:
                result = self.client.query_workspace(
                    self.workspace,
                    kql,
                    timespan=timespan,
                    server_timeout=c.server_timeout_s,
                    **extra,
                )
            except ClientAuthenticationError as exc:
                raise _credential_error(exc) from None
            except HttpResponseError as exc:
                status = exc.status_code
                message = str(getattr(exc, "message", "") or exc)
                if status is None:
                    # No HTTP answer: the SDK re-raises a failed sign-in as a bare
                    # HttpResponseError (its ClientAuthenticationError type is lost).
                    raise _credential_error(exc) from None
                self._answered = True
                if status == 401 and not reauthenticated:
                    reauthenticated = True
                    self.retries += 1
                    continue
                if status in (401, 403):
                    raise self._denied(status, message) from None
                if status == 404:
                    raise LaHTTPError(
                        f"Log Analytics answered 404 for POST {self.url}: no workspace with id "
                        f"{self.workspace} there; check --workspace-id (the Workspace ID on the "
                        "workspace's Overview page) and --la-url",
                        status,
                    ) from None
                if status not in RETRYABLE:
                    raise LaHTTPError(
                        f"Log Analytics answered HTTP {status} for POST {self.url}: "
                        f"{_first_line(message, 300)}",
                        status,
                    ) from None
                if status == 429:
                    self.throttled += 1
                response = getattr(exc, "response", None)
                retry_after = _retry_after(getattr(response, "headers", None))
                problem = f"HTTP {status}"
            except ServiceRequestError as exc:
                if not self._answered:
                    # Never reached: wrong URL, DNS, refused, TLS. Say so now, don't retry.
                    from ingest.net import Unreachable

                    reason = _first_line(str(exc), 160) or type(exc).__name__
                    raise Unreachable(
                        f"cannot reach the Log Analytics query API at {self.url}: {reason}; "
                        "check --la-url and the network; nothing was stored",
                        self.url,
                        reason,
                    ) from None
                problem = f"{type(exc).__name__}: {_first_line(str(exc), 160)}"
            except ServiceResponseError as exc:  # reset or read timeout mid-answer
                self._answered = True
                problem = f"{type(exc).__name__}: {_first_line(str(exc), 160)}"
            else:
                self._answered = True
                if result.status == LogsQueryStatus.PARTIAL:
                    tables = result.partial_data or []
                    err = result.partial_error
                    code = str(getattr(err, "code", "") or "PartialError")
                    message = str(getattr(err, "message", "") or "")
                    if getattr(err, "details", None):
                        message = f"{message} {getattr(err, 'details', '')}"
                else:
                    tables = result.tables or []
                    code, message = None, None  # type: ignore[assignment]
                return _result(tables, code, message)
            now = time.monotonic()
            first_failure = first_failure if first_failure is not None else now
            elapsed = now - first_failure
            delay = retry_after if retry_after is not None else self._backoff(attempt)
            if (
                attempt >= c.max_attempts
                or elapsed + delay > c.give_up_after_s
                or delay > c.max_retry_after_s
            ):
                raise LaHTTPError(
                    f"Log Analytics kept failing for POST {self.url} ({problem}) after {attempt} "
                    f"attempts over {elapsed:.0f} s; nothing from that query was stored; run "
                    "again later",
                    None,
                )
            log.info(
                "POST %s: %s; retrying in %.1f s (attempt %d)", self.url, problem, delay, attempt
            )
            self.retries += 1
            self.waited_s += delay
            self._sleep(delay)


def _credential_error(exc: Exception) -> RemoteError | UsageError:
    """Map azure-identity failures: nothing configured (exit 2) or a refused sign-in (exit 4)."""
    from azure.identity import CredentialUnavailableError

    first = _first_line(str(exc), 300) or type(exc).__name__
    unavailable = "failed to retrieve a token from the included credentials" in str(exc)
    if isinstance(exc, CredentialUnavailableError) or unavailable:
        return UsageError(
            f"no Log Analytics credential is available ({first}); set AZURE_TENANT_ID, "
            "AZURE_CLIENT_ID and AZURE_CLIENT_SECRET (or AZURE_CLIENT_CERTIFICATE_PATH), run "
            f"`az login`, or set {settings.LA_TOKEN}"
        )
    return RemoteError(
        f"Entra ID refused to issue a Log Analytics token ({first}); check the tenant, client id "
        "and secret or certificate"
    )


def _cell(kind: str, value: Any) -> Any:
    if kind == "datetime" and isinstance(value, datetime):
        ts = pd.Timestamp(value)
        ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
        return ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return value


def _result(tables: list[Any], code: str | None, message: str | None) -> QueryResult:
    if not tables:
        return QueryResult([], [], [], code, message)
    t = tables[0]
    cols = list(t.columns)
    types = list(t.columns_types)
    dt = [i for i, k in enumerate(types) if k == "datetime"]
    rows = []
    for row in t.rows:
        values = list(row)
        for i in dt:
            values[i] = _cell("datetime", values[i])
        rows.append(values)
    return QueryResult(cols, types, rows, code, message)
