"""Provisioning-log pulls: time slices, paging, batched commits and the per-app watermark."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from ingest.errors import BadInput, RemoteError
from ingest.graph.client import (
    GraphHTTPError,
    GraphSession,
    MalformedPage,
    PullConfig,
    query_config,
)

if TYPE_CHECKING:
    from ingest.store import Store

log = logging.getLogger(__name__)
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
        query = query_config(builder, filter=expr, top=c.top)
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
