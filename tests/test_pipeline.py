"""The one ingest pipeline: sources yield Frames and Commit items; only the pipeline writes."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pandas as pd
import pytest

from ingest import pipeline
from ingest.pipeline import Commit, Frames
from ingest.store import Store

ROOT = Path(__file__).resolve().parents[1]
T0 = pd.Timestamp("2026-11-01T00:00:00Z")


def events(*ids: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": list(ids),
            "activity_at": [T0 + pd.Timedelta(minutes=i) for i in range(len(ids))],
            "action": ["create"] * len(ids),
            "status": ["success"] * len(ids),
        }
    )


def assignments(sp: str, *principals: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "service_principal_id": [sp] * len(principals),
            "principal_id": list(principals),
            "principal_type": ["user"] * len(principals),
            "app_role_id": ["r"] * len(principals),
        }
    )


def stored_ids(store: Store) -> list[str]:
    return sorted(store.read("events", columns=["id"])["id"])


def test_each_commit_carries_its_watermark(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    items = [
        Frames({"events": events("a", "b")}),
        Frames({"events": events("c")}),
        Commit("first", {"graph:*": T0 + pd.Timedelta(hours=1)}),
        Frames({"events": events("d")}),
        Commit("second", {"graph:*": T0 + pd.Timedelta(hours=2)}),
    ]
    written = pipeline.write(store, items, source="graph")
    assert written.commits == 2
    assert written.added == {"events": 4}
    assert written.version == store.version == 2
    assert stored_ids(store) == ["a", "b", "c", "d"]
    assert store.watermark("graph:*") == T0 + pd.Timedelta(hours=2)


def test_a_failing_source_keeps_earlier_commits_and_drops_the_open_one(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")

    def source() -> Iterator[Frames | Commit]:
        yield Frames({"events": events("a")})
        yield Commit("one", {"graph:*": T0})
        yield Frames({"events": events("b")})
        raise RuntimeError("the network went away")

    with pytest.raises(RuntimeError, match="went away"):
        pipeline.write(store, source(), source="graph")
    assert stored_ids(store) == ["a"]  # b was staged, never committed
    assert store.watermark("graph:*") == T0
    # and the store is writable again (the writer lock was released)
    pipeline.write(store, [Frames({"events": events("b")})], source="graph")
    assert stored_ids(store) == ["a", "b"]


def test_frames_without_a_commit_are_committed_at_the_end_and_empty_commits_are_not_made(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "s")
    written = pipeline.write(store, [Commit("nothing")], source="file")
    assert written.commits == 0
    assert not (tmp_path / "s" / "manifest.json").exists()
    written = pipeline.write(store, [Frames({"events": events("x")})], source="file")
    assert written.commits == 1 and stored_ids(store) == ["x"]
    # a watermark alone is a commit (a pull that found nothing new still moves on)
    assert pipeline.write(store, [Commit("mark", {"k": T0})], source="graph").commits == 1
    assert store.watermark("k") == T0


def test_group_replacement_even_by_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    sp = "sp1"
    pipeline.write(store, [Frames({"assignments": assignments(sp, "u1", "u2")})], source="graph")
    pipeline.write(
        store,
        [Frames({"assignments": assignments(sp, "u3")}, {"assignments": [sp]})],
        source="graph",
    )
    assert sorted(store.read("assignments")["principal_id"]) == ["u3"]
    empty = assignments(sp)
    pipeline.write(store, [Frames({"assignments": empty}, {"assignments": [sp]})], source="graph")
    assert len(store.read("assignments")) == 0


def test_async_sources_commit_as_items_arrive(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    seen_versions: list[int] = []

    async def source() -> AsyncIterator[Frames | Commit]:
        yield Frames({"events": events("a")})
        yield Commit("one", {"graph:sp": T0})
        await asyncio.sleep(0)
        seen_versions.append(store.version)  # the first commit is visible before the next fetch
        yield Frames({"events": events("b")})
        raise ConnectionError("reset")

    with pytest.raises(ConnectionError):
        asyncio.run(pipeline.write_async(store, source(), source="graph"))
    assert seen_versions == [1]
    assert stored_ids(store) == ["a"] and store.watermark("graph:sp") == T0


def test_only_the_pipeline_opens_store_batches() -> None:
    """No source writes the store itself, and no ingest orchestration lives in provlens/."""
    allowed = {"ingest/store.py", "ingest/pipeline.py"}
    found = set()
    for pkg in ("ingest", "provlens", "demo", "dashboard", "reports"):
        for path in (ROOT / pkg).rglob("*.py"):
            if re.search(r"\.batch\(", path.read_text(encoding="utf-8")):
                found.add(path.relative_to(ROOT).as_posix())
    assert found <= allowed, found - allowed
