"""Provisioning-log pulls: time slices, paging, batched commits and the per-app watermark."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from ingest import pipeline
from ingest.errors import BadInput, RemoteError
from ingest.graph.client import (
    GraphHTTPError,
    GraphSession,
    MalformedPage,
    PullConfig,
    query_config,
)
from ingest.pipeline import Commit, Frames, Item

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


class _Batches:
    """Buffers converted pages and hands them out, with finished slices' watermark, in batches.

    Pages are converted as they arrive (the work overlaps the pacing waits); a batch is handed to
    the pipeline every ``pages_per_batch`` pages (empty ones count: each is a request) and at the
    end. A finished slice's watermark only ever goes in the same commit as its records, or after.
    """

    def __init__(
        self,
        stored: pd.Timestamp | None,
        key: str,
        to_frames: Callable[..., dict[str, pd.DataFrame]],
        pages_per_batch: int,
    ) -> None:
        self.key, self.to_frames = key, to_frames
        self.pages_per_batch = max(1, pages_per_batch)
        self.stored = stored  # the watermark as of the last batch handed out
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

    def add_page(self, items: list[dict[str, Any]], span: str, where: str) -> list[Item]:
        """Convert one page and buffer it; return a batch's items when the batch is full."""
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
            return self.flush(span)
        return []

    def advance(self, ts: pd.Timestamp) -> None:
        """Mark everything before ``ts`` as read (committed with the next batch)."""
        if self.stored is None or ts > self.stored:
            self.pending = ts

    def flush(self, detail: str) -> list[Item]:
        """Return the buffered pages and any pending watermark as one commit's items."""
        out: list[Item] = []
        if self.frames or self.pending is not None:
            out = [Frames(f) for f in _last_version_only(self.frames)]
            marks = {self.key: self.pending} if self.pending is not None else {}
            out.append(Commit(f"logs {detail}", marks))
            if self.pending is not None:
                self.stored, self.pending = self.pending, None
        self.frames, self.pages, self._mark = [], 0, 0
        return out


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


class LogSource:
    """Provisioning logs of one app (or all apps) as pipeline items, slice by slice.

    Reads the store only for the watermark (where to start); :meth:`items` yields
    :class:`~ingest.pipeline.Frames` and :class:`~ingest.pipeline.Commit` items and ``result``
    fills in as it runs. It raises RemoteError at the end if any slice failed (after yielding
    what the other slices read).
    """

    def __init__(
        self,
        session: GraphSession,
        store: Store,
        *,
        service_principal_id: str | None,
        since: pd.Timestamp | None,
        now: pd.Timestamp,
    ) -> None:
        c = session.config
        self.session = session
        self.service_principal_id = service_principal_id
        self.now = now
        key = watermark_key(service_principal_id)
        start = log_window_start(store, service_principal_id, since, now, c)
        self.result = LogPull(key, start, now)
        self._stored = store.watermark(key)

    async def items(self) -> AsyncIterator[Item]:
        """Yield each batch of pages and its watermark; see the class docstring."""
        from ingest.records import records_to_frames

        session, result, now = self.session, self.result, self.now
        c = session.config
        key, start = result.key, result.start
        batches = _Batches(self._stored, key, records_to_frames, c.pages_per_batch)
        # A --since later than the watermark leaves a gap before it: keep the watermark there.
        may_advance = batches.stored is None or start <= batches.stored
        if not may_advance:
            log.info("%s starts after the watermark %s; the watermark stays", key, batches.stored)
        slices = time_slices(start, now, c.slice)
        contiguous = True
        failed_in_a_row = 0
        stopped = ""
        builder = session.client.audit_logs.provisioning
        log.info("provisioning logs %s from %s to %s in %d slices", key, start, now, len(slices))
        for n, (a, b) in enumerate(slices, start=1):
            expr = log_filter(a, b, self.service_principal_id)
            query = query_config(builder, filter=expr, top=c.top)
            url = f"{session.base_url}/auditLogs/provisioning?$filter={expr}&$top={c.top}"
            span = f"{_odata_time(a)}..{_odata_time(b)}"
            result.slices += 1
            count = _Count()
            try:
                async for item in _pull_slice(session, batches, builder, query, url, span, count):
                    yield item
            except (GraphHTTPError, MalformedPage) as exc:
                batches.slice_failed()
                if isinstance(exc, GraphHTTPError) and exc.status in (400, 401, 403):
                    for item in batches.flush(f"{key} before a refused request"):
                        yield item
                    raise  # no other slice can do better
                # INFO, not WARNING: a failed run prints one error line (DESIGN.md); -v shows it.
                log.info("provisioning logs %s failed: %s", span, exc)
                result.failed.append(f"{span}: {exc}")
                contiguous = False
                failed_in_a_row += 1
                if failed_in_a_row >= c.max_failed_slices_in_a_row and n < len(slices):
                    stopped = f"stopped after {failed_in_a_row} failed time slices in a row, "
                    break
            except BaseException:
                batches.slice_failed()
                raise
            else:
                failed_in_a_row = 0
                result.records += count.records
                result.pages += count.pages
                if contiguous and may_advance:
                    batches.advance(b)
        for item in batches.flush(f"{key} to {_odata_time(now)}"):
            yield item
        result.watermark = batches.stored
        result.service_principals = batches.service_principals
        if result.failed:
            mark = _odata_time(result.watermark) if result.watermark is not None else "unset"
            raise RemoteError(
                f"provisioning logs: {stopped}{len(result.failed)} failed time slice(s), first "
                f"{result.failed[0]}; "
                f"{result.records} records from the other slices were stored and the watermark "
                f"{key} stays at {mark}, so the next run retries the rest"
            )


async def pull_logs(
    session: GraphSession,
    store: Store,
    *,
    service_principal_id: str | None,
    since: pd.Timestamp | None,
    now: pd.Timestamp,
) -> LogPull:
    """Pull provisioning logs into the store through the pipeline; RemoteError if a slice failed."""
    src = LogSource(session, store, service_principal_id=service_principal_id, since=since, now=now)
    await pipeline.write_async(store, src.items(), source="graph")
    return src.result


@dataclass
class _Count:
    records: int = 0
    pages: int = 0


async def _pull_slice(
    session: GraphSession,
    batches: _Batches,
    builder: Any,
    query: Any,
    url: str,
    span: str,
    count: _Count,
) -> AsyncIterator[Item]:
    """Pull one slice page by page; restart once on an expired next link. Yields full batches."""
    for restart in (False, True):
        count.records = count.pages = 0
        batches.slice_started()
        try:
            async for page_url, items in session.pages(
                builder, url, "logs", paced=True, query=query
            ):
                full = batches.add_page(items, span, page_url)
                count.pages += 1
                count.records += len(items)
                session.stats.records += len(items)
                session.progress()
                for item in full:
                    yield item
            return
        except GraphHTTPError as exc:
            # A nextLink can expire (404): re-read the slice once from its start (the store
            # de-duplicates whatever of it was already committed).
            if exc.status == 404 and exc.url != url and not restart:
                log.info("the next-page link of %s expired; re-reading the slice", span)
                batches.slice_failed()
                continue
            raise
