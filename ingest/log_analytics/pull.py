"""Pull ``AADProvisioningLogs`` rows into the store: time slices, splits, watermark, batches."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from ingest.errors import BadInput, RemoteError
from ingest.log_analytics.client import TABLE, LaHTTPError, LaSession

if TYPE_CHECKING:
    from ingest.store import Store

log = logging.getLogger(__name__)
ORIGIN = "log_analytics"
Frames = dict[str, pd.DataFrame]


def watermark_key(workspace: str) -> str:
    """Return the store key of a workspace's watermark: ``la:<workspace id>``."""
    return f"la:{workspace}"


def kql_time(ts: pd.Timestamp) -> str:
    """Return ``ts`` as a KQL datetime literal (UTC, microseconds)."""
    return "datetime(" + ts.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%S.%fZ") + ")"


def slice_query(start: pd.Timestamp, end: pd.Timestamp) -> str:
    """Return the KQL for the rows of ``[start, end)``: the whole row, every column."""
    return f"{TABLE} | where TimeGenerated >= {kql_time(start)} and TimeGenerated < {kql_time(end)}"


def window_start(
    store: Store,
    workspace: str,
    since: pd.Timestamp | None,
    now: pd.Timestamp,
    overlap: Any,
    default_days: int,
) -> pd.Timestamp:
    """Return where a pull starts: ``since``, else the watermark minus the overlap, else N days."""
    if since is not None:
        return since
    mark = store.watermark(watermark_key(workspace))
    if mark is not None:
        return mark - overlap
    return now - pd.Timedelta(days=default_days)


def write_batch(
    store: Store, frames: list[Frames], key: str, mark: pd.Timestamp | None, detail: str
) -> None:
    """Commit converted rows and the watermark that covers them in ONE all-or-nothing commit.

    Through the one ingest pipeline (``ingest.pipeline``): the rows, then a Commit carrying the
    watermark, so it never runs ahead of the rows it covers.
    """
    from ingest.pipeline import Commit, write
    from ingest.pipeline import Frames as Staged

    items: list[Staged | Commit] = [Staged(f) for f in frames]
    items.append(Commit(detail=detail, watermarks={key: mark} if mark is not None else {}))
    write(store, items, source=ORIGIN)


@dataclass
class LaPull:
    """What :func:`pull` did."""

    key: str
    start: pd.Timestamp
    end: pd.Timestamp
    rows: int = 0
    queries: int = 0
    slices: int = 0
    splits: int = 0
    batches: int = 0
    watermark: pd.Timestamp | None = None


def _to_frames(records: list[dict[str, Any]], span: str, session: LaSession) -> Frames:
    from ingest.records import records_to_frames

    try:
        return records_to_frames(records, origin=ORIGIN, locate=lambda i: f"{span} row {i + 1}")
    except BadInput as exc:
        raise RemoteError(
            f"the workspace returned a row provlens cannot read ({exc}) for POST {session.url}; "
            "nothing from that time slice was stored"
        ) from None


def pull(
    session: LaSession,
    store: Store,
    *,
    since: pd.Timestamp | None,
    now: pd.Timestamp,
    on_progress: Callable[[LaPull], None] | None = None,
) -> LaPull:
    """Pull the workspace's provisioning rows of ``[start, now)`` into the store; return counts.

    A cursor walks the window in slices of ``config.slice``. A slice whose answer is the
    service's too-large PartialError is halved (its truncated rows are dropped) and the smaller
    width is kept for the next slices, so every row is read once, from a complete answer. Rows
    are committed every ``rows_per_batch`` rows together with the watermark at the end of the
    last complete slice, so a kill at any point resumes from there (minus the overlap; the store
    keeps one row per event id).
    """
    c = session.config
    key = watermark_key(session.workspace)
    start = window_start(store, session.workspace, since, now, c.overlap, c.default_days)
    start = start.tz_convert("UTC")
    result = LaPull(key, start, now)
    stored = store.watermark(key)
    # A --since later than the watermark would leave a gap before it: the watermark stays.
    may_advance = stored is None or start <= stored
    buffered: list[Frames] = []
    buffered_rows = 0
    pending: pd.Timestamp | None = None

    def flush(detail: str) -> None:
        nonlocal buffered, buffered_rows, pending
        if not buffered and pending is None:
            return
        write_batch(store, buffered, key, pending, detail)
        result.batches += 1
        if pending is not None:
            result.watermark = pending
        buffered, buffered_rows, pending = [], 0, None

    width = c.slice
    capacity: int | None = None  # rows a truncated answer held: about what one query can carry
    a = start
    end = now.tz_convert("UTC")
    while a < end:
        b = min(a + width, end)
        answer = session.query(slice_query(a, b), timespan=(a.to_pydatetime(), b.to_pydatetime()))
        result.queries += 1
        span = f"{a.isoformat()}..{b.isoformat()}"
        if answer.partial_code is not None:
            if not answer.too_large:
                flush(f"{key} before a failed slice")
                raise LaHTTPError(
                    f"Log Analytics answered a partial error for POST {session.url} ({span}): "
                    f"{(answer.partial_message or answer.partial_code)[:300]}; the rows before "
                    f"that slice were stored, nothing from it; run again later",
                    200,
                )
            if b - a <= c.min_slice:
                raise RemoteError(
                    f"the rows of {span} are too large for one Log Analytics query even at "
                    f"{c.min_slice}; nothing from that slice was stored"
                )
            width = max(c.min_slice, (b - a) / 2)
            capacity = len(answer.rows)
            result.splits += 1
            log.info(
                "%s: result too large (%d rows returned); halving to %s",
                span,
                len(answer.rows),
                width,
            )
            continue
        records = answer.records()
        if records:
            buffered.append(_to_frames(records, span, session))
            buffered_rows += len(records)
        result.rows += len(records)
        result.slices += 1
        if may_advance:
            pending = b
        if on_progress is not None:
            on_progress(result)
        if buffered_rows >= c.rows_per_batch:
            flush(f"{key} to {b.isoformat()}")
        if capacity is not None and len(records) < capacity / 4 and width < c.slice:
            width = min(c.slice, width * 2)  # sparse again: grow back towards the full slice
        a = b
    flush(f"{key} to {end.isoformat()}")
    if result.watermark is None:
        result.watermark = store.watermark(key)
    return result
