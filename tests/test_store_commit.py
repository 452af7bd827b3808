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
