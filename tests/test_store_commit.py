"""The store's commit: last copy wins across many commits and compactions, in bounded memory.

A commit checks the parts committed earlier only against the batch's own keys (each earlier
commit already left every key once), and compaction writes the parts one after another.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from ingest import store as store_mod
from ingest.store import Store


def _events(ids: list[str], status: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": ids,
            "activity_at": pd.to_datetime(["2026-11-20T00:00:00Z"] * len(ids), utc=True),
            "status": [status] * len(ids),
        }
    )


def _steps(ids: list[str], name: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "event_id": [i for i in ids for _ in (0, 1)],
            "step_index": [k for _ in ids for k in (0, 1)],
            "name": [name] * (2 * len(ids)),
        }
    )


def test_many_commits_with_compaction_keep_each_key_once_with_its_last_children(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_mod, "MAX_PARTS", 3)
    # Parts of several row groups: a commit checks and rewrites them a row group at a time.
    monkeypatch.setattr(store_mod, "ROW_GROUP_ROWS", 3)
    st = Store(tmp_path / "s")
    for week in range(8):
        # Each week: 5 new events, and the 2 newest of the week before again (an overlap).
        ids = [f"e{week}-{k}" for k in range(5)]
        again = [f"e{week - 1}-{k}" for k in (3, 4)] if week else []
        with st.batch(source="file") as b:
            b.add(
                {
                    "events": _events(ids + again, f"w{week}"),
                    "steps": _steps(ids + again, f"w{week}"),
                }
            )
    events = st.read("events").set_index("id")
    steps = st.read("steps")
    assert len(events) == 40 and events.index.is_unique
    # A re-ingested event is the later week's copy, with that copy's two steps only.
    assert events.loc["e2-4", "status"] == "w3"
    assert sorted(steps.loc[steps["event_id"] == "e2-4", "name"]) == ["w3", "w3"]
    assert events.loc["e7-0", "status"] == "w7"
    assert len(steps) == 80
    assert steps.groupby("event_id").size().eq(2).all()
    # Compaction bounded the part count.
    manifest = st.manifest()
    assert all(len(p) <= 3 for p in manifest.parts.values())
    assert manifest.rows["events"] == 40 and manifest.rows["steps"] == 80
    events_part = st.path / manifest.parts["events"][0]
    assert pq.ParquetFile(events_part).num_row_groups > 1


def _parts(st: Store, table: str) -> list[str]:
    return st.manifest().parts.get(table, [])


@pytest.mark.parametrize("restage", [False, True])
def test_a_large_batch_appends_row_groups_to_one_part_until_a_key_repeats(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restage: bool
) -> None:
    # Every add() is written at once (PART_ROWS 1): while no event repeats, each table's writes
    # are row groups of one part; once one repeats, parts of their own, as before.
    monkeypatch.setattr(store_mod, "PART_ROWS", 1)
    monkeypatch.setattr(store_mod, "MAX_PARTS", 2)  # a part per write would be compacted
    st = Store(tmp_path / "s")
    with st.batch(source="file") as b:
        b.add({"events": _events(["old-0", "old-1"], "old"), "steps": _steps(["old-0"], "old")})
    with st.batch(source="file") as b:
        for k in range(6):
            ids = [f"e{k}-0", f"e{k}-1"] + (["old-1"] if k == 2 else [])
            b.add({"events": _events(ids, f"w{k}"), "steps": _steps(ids, f"w{k}")})
        if restage:  # e1-0 again, without steps: its steps of week 1 are dropped
            b.add({"events": _events(["e1-0"], "again")})
            b.add({"events": _events(["e5-0"], "late"), "steps": _steps(["e5-0"], "late")})
    events = st.read("events").set_index("id")
    steps = st.read("steps")
    assert events.index.is_unique and len(events) == 14
    assert events.loc["old-1", "status"] == "w2" and events.loc["old-0", "status"] == "old"
    assert sorted(steps.loc[steps["event_id"] == "old-1", "name"]) == ["w2", "w2"]
    assert sorted(steps.loc[steps["event_id"] == "old-0", "name"]) == ["old", "old"]
    if restage:
        assert events.loc["e1-0", "status"] == "again"
        assert "e1-0" not in set(steps["event_id"])
        assert sorted(steps.loc[steps["event_id"] == "e5-0", "name"]) == ["late", "late"]
        assert len(steps) == 2 * 14 - 2
    else:
        assert len(steps) == 2 * 14
        # One part for the whole second batch, one row group per write; the first batch's
        # events part was rewritten without old-1.
        assert len(_parts(st, "events")) == 2 and len(_parts(st, "steps")) == 2
        part = pq.ParquetFile(st.path / _parts(st, "events")[-1])
        assert part.num_row_groups == 6 and part.metadata.num_rows == 13
    assert st.manifest().rows["events"] == 14
    # Nothing but the listed parts is left on disk.
    listed = {p for ps in st.manifest().parts.values() for p in ps}
    on_disk = {p.relative_to(st.path).as_posix() for p in (st.path / "parts").rglob("*.*")}
    assert on_disk == listed


def test_a_failed_large_batch_leaves_no_open_part_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_mod, "PART_ROWS", 1)
    st = Store(tmp_path / "s")
    with st.batch(source="file") as b:
        b.add({"events": _events(["a"], "first")})
    with pytest.raises(RuntimeError), st.batch(source="file") as b:
        b.add({"events": _events(["b", "c"], "x"), "steps": _steps(["b"], "x")})
        raise RuntimeError("the source failed")
    assert st.read("events")["id"].tolist() == ["a"]
    assert [p.name for p in (st.path / "parts").rglob("*.*")] == [
        Path(_parts(st, "events")[0]).name
    ]
