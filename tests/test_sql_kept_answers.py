"""reports.sql.over keeps small answers per exact read of stored tables (Scan.key)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from ingest.store import Store
from reports import Filters, Inputs, query, sql
from tests.e2e import fixture_data as fx


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "store"
    fx.build_store(path)
    return path


def _inputs(con: Any, store: Path, filters: Filters, columns: tuple[str, ...]) -> Inputs:
    snap = query.Snapshot.of(Store(store))
    return query.read_inputs(con, snap, ("events",), filters, {"events": columns}, lazy=True)


def test_same_sql_on_the_same_rows_is_answered_once(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []
    real = sql.over_arrow

    def counted(inputs: Inputs, text: str, tables: Any, **frames: pd.DataFrame) -> Any:
        asked.append(text)
        return real(inputs, text, tables, **frames)

    monkeypatch.setattr(sql, "over_arrow", counted)
    text = "SELECT status, count(*) AS n FROM events GROUP BY status ORDER BY status"
    con = query.connect()
    try:
        first = sql.over(_inputs(con, store, Filters(), ("id", "status")), text, ["events"])
        first["n"] = -1  # the caller's copy: the kept answer stays as it was
        # Other columns read, same rows: the same answer, not asked again.
        again = sql.over(
            _inputs(con, store, Filters(), ("id", "status", "action")), text, ["events"]
        )
        assert len(asked) == 1
        assert (again["n"] > 0).all() and int(again["n"].sum()) == len(fx.events())
        # Other rows (a filter pushed down): asked again, another answer.
        times = fx.events()["activity_at"].sort_values()
        later = Filters(since=times.iloc[len(times) // 2])
        cut = sql.over(_inputs(con, store, later, ("id", "status")), text, ["events"])
        assert len(asked) == 2
        assert int(cut["n"].sum()) < int(again["n"].sum())
    finally:
        con.close()
