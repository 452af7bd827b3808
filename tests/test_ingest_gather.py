"""Paged dumps (one Graph page per file) are read as one stream: the same rows, the same
per-file counts and the same first error as reading the files one by one."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest

from ingest.errors import BadInput
from ingest.files import ingest_files
from ingest.formats import Options
from ingest.store import Store

EXAMPLES = Path(__file__).parent / "data" / "examples"
BASE = json.loads((EXAMPLES / "graph-v1.0-list-provisioning-example2-failure.json").read_text())[
    "value"
][0]


def _record(rid: str, step_status: str = "failure") -> dict[str, Any]:
    rec = copy.deepcopy(BASE)
    rec["id"] = rid
    rec["provisioningSteps"][-1]["status"] = step_status
    return rec


def _pages(tmp: Path, pages: list[list[dict[str, Any]]]) -> list[Path]:
    out = []
    for i, records in enumerate(pages):
        p = tmp / f"page-{i}.json"
        p.write_bytes(orjson.dumps({"@odata.context": "x", "value": records}))
        out.append(p)
    return out


def _tables(store: Store) -> dict[str, pd.DataFrame]:
    out = {}
    for t in ("events", "steps", "modified_properties"):
        df = store.read(t).drop(columns=["ingested_at"], errors="ignore")
        out[t] = df.sort_values(list(df.columns[:2])).reset_index(drop=True)
    return out


def _one_by_one(tmp: Path, paths: list[Path]) -> dict[str, pd.DataFrame]:
    """The reference: each file in its own call, in order (last copy wins across calls too)."""
    store = Store(tmp / "ref")
    for p in paths:
        ingest_files(store, [p])
    return _tables(store)


@pytest.mark.parametrize("min_records", [1, 500])
def test_pages_give_the_rows_and_counts_of_files_read_one_by_one(
    tmp_path: Path, min_records: int
) -> None:
    pages = [[_record(f"p{p}-r{r}") for r in range(40)] for p in range(6)]
    paths = _pages(tmp_path, pages)
    result = ingest_files(
        Store(tmp_path / "s"), paths, options=Options(columnar_min_records=min_records)
    )
    got = _tables(Store(tmp_path / "s"))
    want = _one_by_one(tmp_path, paths)
    for t in got:
        pd.testing.assert_frame_equal(got[t], want[t])
    steps = len(BASE["provisioningSteps"]) * 40
    props = len(BASE["modifiedProperties"]) * 40
    assert [f.rows for f in result.files] == [
        {"events": 40, "steps": steps, "modified_properties": props}
    ] * 6
    assert len(got["events"]) == 240


def test_a_record_repeated_across_pages_keeps_the_last_copy_and_its_children(
    tmp_path: Path,
) -> None:
    first = [_record("same", "failure")] + [_record(f"a{i}") for i in range(30)]
    second = [_record(f"b{i}") for i in range(30)] + [_record("same", "success")]
    paths = _pages(tmp_path, [first, second])
    ingest_files(Store(tmp_path / "s"), paths, options=Options(columnar_min_records=1))
    got = _tables(Store(tmp_path / "s"))
    steps = got["steps"][got["steps"]["event_id"] == "same"]
    assert len(steps) == len(BASE["provisioningSteps"])
    assert steps.sort_values("position")["status"].iloc[-1] == "success"
    assert (got["events"]["id"] == "same").sum() == 1


def test_a_bad_record_in_a_later_page_is_named_and_nothing_is_stored(tmp_path: Path) -> None:
    bad = _record("b1")
    bad["activityDateTime"] = "yesterday"
    paths = _pages(tmp_path, [[_record(f"a{i}") for i in range(30)], [_record("b0"), bad]])
    store = Store(tmp_path / "s")
    with pytest.raises(BadInput) as err:
        ingest_files(store, paths, options=Options(columnar_min_records=1))
    assert str(err.value).startswith(f"{paths[1]}:1: record 2")
    assert "yesterday" in str(err.value)
    assert not store.exists() or len(store.read("events")) == 0


def test_an_empty_page_after_good_ones_is_named(tmp_path: Path) -> None:
    paths = _pages(tmp_path, [[_record(f"a{i}") for i in range(30)]])
    empty = tmp_path / "empty.json"
    empty.write_bytes(b'{"@odata.context": "x", "value": []}')
    with pytest.raises(BadInput) as err:
        ingest_files(Store(tmp_path / "s"), [*paths, empty])
    assert str(err.value).startswith(f"{empty}:1")


def _event(rid: str) -> pd.DataFrame:
    return pd.DataFrame({"id": [rid], "activity_at": [pd.Timestamp("2026-01-01", tz="UTC")]})


def _steps(rid: str, name: str) -> pd.DataFrame:
    return pd.DataFrame({"event_id": [rid], "position": [0], "name": [name]})


def test_the_store_still_drops_superseded_children_when_an_event_is_staged_twice(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "s")
    with store.batch("test") as b:
        b.add({"events": _event("a"), "steps": _steps("a", "first")})
        b.add({"events": _event("b"), "steps": _steps("b", "only")})
        b.add({"events": _event("a"), "steps": _steps("a", "second")})
    steps = store.read("steps").sort_values("event_id")
    assert steps["name"].tolist() == ["second", "only"]


def test_children_staged_before_their_event_are_dropped_as_before(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    with store.batch("test") as b:
        b.add({"events": _event("a"), "steps": _steps("a", "kept")})
        b.add({"steps": _steps("c", "early")})
        b.add({"events": _event("c")})
    assert store.read("steps")["name"].tolist() == ["kept"]
