"""Streaming writers for the raw files the demo produces, byte for byte reproducible.

Records are serialised with orjson as they are produced: Graph provisioning logs go out in pages of
at most ``PAGE_SIZE`` records (one Graph list response per file, chained by ``@odata.nextLink``),
the wiki's audit records as JSON Lines. Nothing here reads the clock.
"""

from __future__ import annotations

import hashlib
import heapq
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final
from urllib.parse import quote

import orjson

GRAPH_ROOT: Final = "https://graph.microsoft.com/v1.0"
PROVISIONING_CONTEXT: Final = f"{GRAPH_ROOT}/$metadata#auditLogs/provisioning"
PAGE_SIZE: Final = 1000
TICKS_PER_SECOND: Final = 10_000_000  # .NET ticks (100 ns): Graph prints 7 fractional digits


def fmt_graph_time(ticks: int) -> str:
    """Return ``ticks`` (100 ns since the Unix epoch) as Graph prints it: 7 digits and a Z."""
    sec, frac = divmod(ticks, TICKS_PER_SECOND)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{frac:07d}Z"


def fmt_ms_time(ticks: int) -> str:
    """Return ``ticks`` as an ISO 8601 UTC time with milliseconds (the wiki's audit format)."""
    sec, frac = divmod(ticks, TICKS_PER_SECOND)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{frac // 10_000:03d}Z"


def write_json(path: Path, obj: Any) -> Path:
    """Write ``obj`` as compact JSON (what Graph and SCIM servers send) and return ``path``."""
    path.write_bytes(orjson.dumps(obj))
    return path


class ProvisioningPages:
    """Writes provisioning records as Graph list-response pages ``provisioning-NNNNN.json``."""

    def __init__(self, directory: Path, filter_text: str, page_size: int = PAGE_SIZE) -> None:
        self.directory = directory
        self.page_size = page_size
        self.paths: list[Path] = []
        self.records = 0
        self._buffer: list[bytes] = []
        self._pending: list[bytes] | None = None  # a full page waiting to learn if one follows
        self._query = f"$filter={quote(filter_text, safe='')}&$top={page_size}"

    def _next_link(self, page_number: int) -> str:
        # A stable skiptoken: Graph's are opaque; derive one from the page number.
        token = hashlib.sha256(f"{self._query}#{page_number}".encode()).hexdigest()[:48]
        return f"{GRAPH_ROOT}/auditLogs/provisioning?{self._query}&$skiptoken={token}"

    def _write_page(self, records: list[bytes], more: bool) -> None:
        number = len(self.paths) + 1
        path = self.directory / f"provisioning-{number:05d}.json"
        parts = [b'{"@odata.context":', orjson.dumps(PROVISIONING_CONTEXT), b',"value":[']
        parts.append(b",".join(records))
        parts.append(b"]")
        if more:
            parts += [b',"@odata.nextLink":', orjson.dumps(self._next_link(number + 1))]
        parts.append(b"}")
        path.write_bytes(b"".join(parts))
        self.paths.append(path)

    def add(self, record: dict[str, Any]) -> None:
        """Serialise one provisioning record into the current page."""
        self._buffer.append(orjson.dumps(record))
        self.records += 1
        if len(self._buffer) >= self.page_size:
            if self._pending is not None:
                self._write_page(self._pending, more=True)
            self._pending, self._buffer = self._buffer, []

    def close(self) -> list[Path]:
        """Write the remaining pages (the last one without a nextLink) and return all paths."""
        if self._pending is not None:
            self._write_page(self._pending, more=bool(self._buffer))
            self._pending = None
        if self._buffer or not self.paths:
            self._write_page(self._buffer, more=False)
            self._buffer = []
        return self.paths


class JsonLines:
    """Writes one JSON object per line to ``path`` (buffered)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines = 0
        self._fh: IO[bytes] = path.open("wb", buffering=1 << 20)

    def add(self, record: dict[str, Any]) -> None:
        """Append one record."""
        self._fh.write(orjson.dumps(record))
        self._fh.write(b"\n")
        self.lines += 1

    def close(self) -> Path:
        """Flush and close the file; return its path."""
        self._fh.close()
        return self.path

    def __enter__(self) -> JsonLines:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._fh.close()


class OrderedJsonLines(JsonLines):
    """JSON Lines written in time order although records arrive slightly out of order.

    Records are held in a heap and written once no later arrival can precede them: callers
    promise that a record added at time ``t`` is never earlier than ``t - horizon`` of any record
    added before it. Memory stays bounded by what arrives within the horizon.
    """

    def __init__(self, path: Path, horizon: int) -> None:
        super().__init__(path)
        self.horizon = horizon
        self._heap: list[tuple[int, int, bytes]] = []
        self._seq = 0

    def add_at(self, ticks: int, record: dict[str, Any]) -> None:
        """Queue ``record`` stamped ``ticks``; write everything older than the horizon."""
        self._seq += 1
        heapq.heappush(self._heap, (ticks, self._seq, orjson.dumps(record)))
        self.lines += 1
        limit = ticks - self.horizon
        while self._heap and self._heap[0][0] < limit:
            self._write(heapq.heappop(self._heap)[2])

    def _write(self, line: bytes) -> None:
        self._fh.write(line)
        self._fh.write(b"\n")

    def close(self) -> Path:
        """Write what is left, in order, and close the file."""
        while self._heap:
            self._write(heapq.heappop(self._heap)[2])
        return super().close()
