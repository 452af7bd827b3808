"""`provlens ingest file`: files of any supported format into the store, as one pipeline commit.

Each file is decoded (UTF-8 with or without BOM, UTF-16 with BOM), its format detected by
content (or forced with ``kind``), parsed in chunks and staged. If any file is bad, nothing from
the call is stored and the BadInput error names the first bad file and the place in it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from ingest import jsonstream, pipeline, schema
from ingest.errors import BadInput, UsageError
from ingest.formats import REGISTRY, Options, Source, detect, load_all, provisioning
from ingest.membership import carry_first_seen, derive_direct
from ingest.store import Store

log = logging.getLogger(__name__)


@dataclass
class FileResult:
    """What one file contributed."""

    path: str
    kind: str
    rows: dict[str, int]


@dataclass
class IngestResult:
    """What an ingest call did: per-file rows, and table sizes before and after."""

    files: list[FileResult] = field(default_factory=list)
    before: dict[str, int] = field(default_factory=dict)
    after: dict[str, int] = field(default_factory=dict)
    version: int = 0

    @property
    def read(self) -> dict[str, int]:
        """Rows read per table, over all files."""
        out: dict[str, int] = {}
        for f in self.files:
            for t, n in f.rows.items():
                out[t] = out.get(t, 0) + n
        return out

    @property
    def new(self) -> dict[str, int]:
        """Net new rows per table (re-ingested rows replace themselves and count 0)."""
        return {t: self.after.get(t, 0) - self.before.get(t, 0) for t in schema.TABLES}


def kinds() -> list[str]:
    """Return the names accepted by ``--kind``."""
    return sorted(load_all())


class _Advance:
    """Moves a progress bar as a file is read: takes absolute offsets within that file.

    Offsets at or below the furthest one seen do not move it.
    """

    def __init__(self, bar: Any, size: int) -> None:
        self.bar = bar
        self.size = size
        self.at = 0

    def __call__(self, offset: int) -> None:
        offset = min(offset, self.size)
        if offset > self.at:
            if self.bar is not None:
                self.bar.update(offset - self.at)
            self.at = offset


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, desc="ingest", leave=False)


def ingest_files(
    store: Store,
    paths: Sequence[str | Path],
    kind: str | None = None,
    options: Options | None = None,
    progress: bool = False,
) -> IngestResult:
    """Parse ``paths`` and commit them to ``store`` as one all-or-nothing batch."""
    options = options or Options()
    formats = load_all()
    if kind is not None and kind not in formats:
        raise UsageError(f"unknown --kind {kind!r}; choose one of: {', '.join(sorted(formats))}")
    sources = []
    for p in paths:
        path = Path(p)
        if not path.is_file():
            raise UsageError(f"{path}: no such file")
        sources.append(Source(path))
    result = IngestResult(before=store.manifest().rows.copy())
    bar = _progress(sum(s.size for s in sources), progress)
    try:
        pipeline.write(store, _items(store, sources, kind, options, bar, result), source="file")
    finally:
        if bar is not None:
            bar.close()
    m = store.manifest()
    result.after = m.rows.copy()
    result.version = m.version
    return result


def _items(
    store: Store,
    sources: list[Source],
    kind: str | None,
    options: Options,
    bar: Any,
    result: IngestResult,
) -> Iterator[pipeline.Item]:
    """The files as pipeline items: every file's frames, then one commit for them all."""
    pending: dict[str, list[tuple[str, pd.DataFrame]]] = {}
    change_map: list[pd.DataFrame] = []
    # Consecutive streamable provisioning JSON files (paged dumps) are read as one stream.
    gather = provisioning.Gather(options)

    def gathered(frames: Iterable[dict[str, pd.DataFrame]]) -> Iterator[pipeline.Item]:
        for staged in _stage(frames, "graph", options, "", None, pending, change_map):
            yield pipeline.Frames(staged)

    for src in sources:
        try:
            if kind and not src.head().strip():  # detect() says this when not forced
                raise BadInput(f"{src.name}:1", "the file is empty", "nothing was stored")
            fmt = REGISTRY[kind] if kind else detect(src)
            layout = (
                provisioning.stream_layout(src) if fmt.parse is provisioning.parse_json else None
            )
        except BadInput:
            yield from gathered(gather.flush())
            raise
        rows: dict[str, int] = {}
        log.info("%s: reading as %s", src.name, fmt.kind)
        result.files.append(FileResult(src.name, fmt.kind, rows))
        advance = _Advance(bar, src.size)
        token = jsonstream.PROGRESS.set(advance if bar is not None else None)
        try:
            if layout is not None:
                yield from gathered(gather.add(src, layout, rows))
            else:
                yield from gathered(gather.flush())
                for staged in _stage(
                    fmt.parse(src, options), fmt.kind, options, src.name, rows, pending, change_map
                ):
                    yield pipeline.Frames(staged)
        finally:
            jsonstream.PROGRESS.reset(token)
        advance(src.size)
    yield from gathered(gather.flush())
    for table, items in pending.items():
        if table == "group_members":
            members = pd.concat([df for _, df in items], ignore_index=True)
            stored = store.read("group_members") if store.exists() else None
            members = derive_direct(members, stored)
            # A members list has no capture time of its own: the one given, else now.
            seen_at = options.captured_at or pd.Timestamp.now(tz="UTC")
            yield pipeline.Frames({table: carry_first_seen(members, stored, seen_at)})
        else:
            yield pipeline.Frames({table: _join_on_change_id(store, table, items, change_map)})
    yield pipeline.Commit(detail=f"{len(sources)} file(s)")


def _stage(
    chunks: Iterable[dict[str, pd.DataFrame]],
    kind: str,
    options: Options,
    name: str,
    rows: dict[str, int] | None,
    pending: dict[str, list[tuple[str, pd.DataFrame]]],
    change_map: list[pd.DataFrame],
) -> Iterator[dict[str, pd.DataFrame]]:
    """Conform one file's frames for staging; child rows without an event id wait in ``pending``."""
    for frames in chunks:
        staged: dict[str, pd.DataFrame] = {}
        for table, df in frames.items():
            if df is None or len(df) == 0:
                continue
            if isinstance(df, pa.Table):  # canonical Arrow of the direct page reader
                staged[table] = df
                if rows is not None:
                    rows[table] = rows.get(table, 0) + df.num_rows
                continue
            df = schema.conform(table, df)
            if table == "events":
                df["origin"] = df["origin"].fillna(options.origin)
                if kind == "portal_csv":
                    change_map.append(df[["change_id", "id"]])
            if (table in schema.CHILD_TABLES and df["event_id"].isna().any()) or (
                table == "group_members"
            ):
                # Step/property rows await their event id; members await every other list.
                pending.setdefault(table, []).append((name, df))
            else:
                staged[table] = df
            if rows is not None:  # None: the reader counts each file's rows itself
                rows[table] = rows.get(table, 0) + len(df)
        yield staged


def _join_on_change_id(
    store: Store,
    table: str,
    items: list[tuple[str, pd.DataFrame]],
    change_map: list[pd.DataFrame],
) -> pd.DataFrame:
    """Give portal-CSV step/property rows their event id via the change ID."""
    if change_map:
        known = pd.concat(change_map, ignore_index=True).drop_duplicates("change_id", keep="last")
    else:
        known = schema.empty_frame("events")[["change_id", "id"]]
    out = []
    for name, df in items:
        merged = df.drop(columns=["event_id"]).merge(
            known.rename(columns={"id": "event_id"}), on="change_id", how="left"
        )
        missing = merged["event_id"].isna()
        if missing.any():
            stored = store.read("events", ["id", "change_id"]).drop_duplicates("change_id")
            lookup = stored.set_index("change_id")["id"]
            found = merged["change_id"].map(lookup).astype("str")
            merged["event_id"] = merged["event_id"].astype("str").fillna(found)
            missing = merged["event_id"].isna()
        if missing.any():
            i = int(missing.to_numpy().nonzero()[0][0])
            raise BadInput(
                f"{name}:{i + 2}",
                f"change ID {merged['change_id'].iloc[i]!r} matches no provisioning record",
                "ingest the ProvisioningLogs CSV in the same call; nothing was stored",
            )
        out.append(schema.conform(table, merged))
    return pd.concat(out, ignore_index=True)
