"""The one ingest pipeline: sources yield items, and only this module writes them to the store.

A source (files, Microsoft Graph, the wiki's SCIM endpoint, Log Analytics later) fetches and parses;
it never opens a store batch. It yields a stream of two kinds of items:

* :class:`Frames`: canonical frames to stage in the open commit, plus the group-mode keys whose
  stored rows they replace (``assignments`` per service principal, ``group_members`` per group);
* :class:`Commit`: close the open commit, all-or-nothing, with these watermarks in the SAME
  commit (a watermark never runs ahead of the rows it covers).

:func:`write` (or :func:`write_async` for an async source) opens a store batch at the first item
after a commit, stages every :class:`Frames`, and commits at each :class:`Commit` and at the end
of the stream. If the source raises, the open commit is discarded (earlier commits stay) and the
error propagates. The store's writer lock is held from a commit's first :class:`Frames` to its
:class:`Commit`, so a source fetches first and yields a commit's items together.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from ingest.store import Batch, Store


@dataclass
class Frames:
    """Canonical frames for the open commit; ``replace``: group-mode table -> keys it replaces."""

    tables: Mapping[str, pd.DataFrame | pa.Table]  # Arrow: the canonical schema exactly
    replace: Mapping[str, Sequence[str]] = field(default_factory=dict)


@dataclass
class Commit:
    """Commit everything staged since the last commit, with ``watermarks`` in the same commit."""

    detail: str = ""
    watermarks: Mapping[str, pd.Timestamp] = field(default_factory=dict)


Item = Frames | Commit


@dataclass
class Written:
    """What the pipeline committed: commits made, rows added per table, the store's version."""

    commits: int = 0
    added: dict[str, int] = field(default_factory=dict)
    version: int | None = None


class _Writer:
    """Feeds items into store batches (one open at a time)."""

    def __init__(self, store: Store, source: str) -> None:
        self.store, self.source = store, source
        self.written = Written()
        self._cm: contextlib.AbstractContextManager[Batch] | None = None
        self._batch: Batch | None = None

    def _open(self, detail: str) -> Batch:
        if self._batch is None:
            cm = self.store.batch(source=self.source, detail=detail)
            self._batch = cm.__enter__()
            self._cm = cm
        return self._batch

    def feed(self, item: Item) -> None:
        if isinstance(item, Frames):
            b = self._open("")
            b.add(item.tables)
            for table, keys in item.replace.items():
                if keys:
                    b.replace_groups(table, list(keys))
        elif isinstance(item, Commit):
            if self._batch is None and not item.watermarks:
                return  # nothing staged, nothing to move: no empty commit
            b = self._open(item.detail)
            if item.detail:
                b.detail = item.detail
            for key, ts in item.watermarks.items():
                b.set_watermark(key, ts)
            self._commit()
        else:  # pragma: no cover - a programming error in a source
            raise TypeError(f"a source yielded {type(item).__name__}, not Frames or Commit")

    def _commit(self) -> None:
        assert self._cm is not None and self._batch is not None
        batch, cm = self._batch, self._cm
        self._batch, self._cm = None, None
        cm.__exit__(None, None, None)  # leaving Store.batch normally commits
        self.written.commits += 1
        for table, n in batch.added.items():
            self.written.added[table] = self.written.added.get(table, 0) + n

    def finish(self) -> Written:
        if self._batch is not None:
            self._commit()
        self.written.version = self.store.version
        return self.written

    def abort(self, exc: BaseException) -> None:
        cm, self._batch, self._cm = self._cm, None, None
        if cm is not None:
            cm.__exit__(type(exc), exc, exc.__traceback__)  # Store.batch discards, returns False


def write(store: Store, items: Iterable[Item], *, source: str) -> Written:
    """Commit a source's items to ``store`` (``source`` names it in the store's history)."""
    w = _Writer(store, source)
    try:
        for item in items:
            w.feed(item)
    except BaseException as exc:
        w.abort(exc)
        raise
    return w.finish()


async def write_async(store: Store, items: AsyncIterable[Item], *, source: str) -> Written:
    """:func:`write` for an async source (Graph): items are committed as they arrive."""
    w = _Writer(store, source)
    try:
        async for item in items:
            w.feed(item)
    except BaseException as exc:
        w.abort(exc)
        raise
    return w.finish()
