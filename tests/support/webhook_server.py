"""A loopback HTTP receiver for alert webhooks: records every request, can fail N times first.

``with WebhookReceiver() as hook: ...`` serves on a free port; ``hook.url(path)`` is a URL to
post to; ``hook.fail(n, status=503, retry_after=None)`` answers the next ``n`` requests with that
status; ``hook.received`` lists :class:`Received` (path, query, headers, parsed JSON body) of the
requests answered 2xx, ``hook.log`` every request with its answer.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest


@dataclass
class Received:
    """One request the receiver got."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any
    status: int


@dataclass
class WebhookReceiver:
    """The receiver's state and controls."""

    status: int = 202  # what a Teams Workflows webhook answers
    log: list[Received] = field(default_factory=list)
    _failures: list[tuple[int, str | None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.port = 0

    def start(self) -> WebhookReceiver:
        """Serve on a free loopback port in a daemon thread; return self."""
        handler = type("Handler", (_Handler,), {"receiver": self})
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

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def url(self, path: str = "/hook") -> str:
        """Return a URL on this receiver."""
        return f"http://127.0.0.1:{self.port}{path}"

    def fail(self, times: int, status: int = 503, retry_after: str | None = None) -> None:
        """Answer the next ``times`` requests with ``status`` (and ``Retry-After``)."""
        with self._lock:
            self._failures.extend([(status, retry_after)] * times)

    @property
    def received(self) -> list[Received]:
        """Return the requests answered with success."""
        with self._lock:
            return [r for r in self.log if 200 <= r.status < 300]

    def _answer(self) -> tuple[int, str | None]:
        with self._lock:
            return self._failures.pop(0) if self._failures else (self.status, None)


class _Handler(BaseHTTPRequestHandler):
    receiver: WebhookReceiver
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()

    def do_POST(self) -> None:
        r = self.receiver
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", "replace")
        status, retry_after = r._answer()
        split = urlsplit(self.path)
        with r._lock:
            r.log.append(
                Received("POST", split.path, split.query, dict(self.headers), body, status)
            )
        self.send_response(status)
        if retry_after is not None:
            self.send_header("Retry-After", retry_after)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    """A running :class:`WebhookReceiver`."""
    with WebhookReceiver() as hook:
        yield hook
