"""Reachability: whether a failed first request means the service cannot be reached at all.

A service that answered before and then fails (429, 5xx, a reset mid-pull) is having a bad minute
and is retried with backoff. A host that refuses the connection, does not resolve, fails the TLS
handshake or never accepts the connection on the very FIRST request is not: waiting will not help,
so the Graph and SCIM clients raise :class:`Unreachable` at once (exit 4, one line naming the URL).
"""

from __future__ import annotations

import socket
import ssl

import httpx

from ingest.errors import RemoteError

# Seconds to wait for a TCP/TLS connection; keeps "unreachable" well inside 30 s.
CONNECT_TIMEOUT_S = 10.0


class Unreachable(RemoteError):
    """The first request to a service could not connect at all (exit 4)."""

    def __init__(self, message: str, url: str, reason: str) -> None:
        super().__init__(message)
        self.url = url
        self.reason = reason


def _chain(exc: BaseException) -> list[BaseException]:
    """Return ``exc`` and the exceptions it was raised from (httpx wraps httpcore wraps OSError)."""
    out: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in out and len(out) < 10:
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
    return out


def unreachable_reason(exc: BaseException) -> str | None:
    """Return why ``exc`` means the host cannot be reached (refused, unknown host, TLS, timeout).

    None for any other failure (a reset or timeout while reading an answer is retryable).
    """
    if not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return None
    chain = _chain(exc)
    text = " ".join(str(e) for e in chain).lower()
    if any(isinstance(e, ssl.SSLError) for e in chain) or "ssl" in text or "certificate" in text:
        first = next((str(e) for e in chain if isinstance(e, ssl.SSLError)), str(exc))
        return (
            f"TLS handshake failed ({' '.join(first.split())[:160]}); if a proxy inspects TLS, "
            "point SSL_CERT_FILE at its CA bundle"
        )
    if any(isinstance(e, socket.gaierror) for e in chain) or any(
        s in text
        for s in ("name or service not known", "nodename nor servname", "getaddrinfo", "resolve")
    ):
        return "unknown host (the name does not resolve)"
    if any(isinstance(e, ConnectionRefusedError) for e in chain) or "refused" in text:
        return "connection refused (nothing is listening there)"
    if isinstance(exc, httpx.ConnectTimeout):
        return "no connection within the connect timeout"
    return f"cannot connect ({' '.join(str(exc).split())[:160] or type(exc).__name__})"


def unreachable(service: str, url: str, exc: BaseException, hint: str) -> Unreachable | None:
    """Return the one-line :class:`Unreachable` for ``exc`` when it is a connect failure."""
    reason = unreachable_reason(exc)
    if reason is None:
        return None
    return Unreachable(
        f"cannot reach {service} at {url}: {reason}; {hint}; nothing was stored", url, reason
    )
