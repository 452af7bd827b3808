"""The demo's raw-file writers: Graph paging, ordered JSON Lines, timestamps, random ids."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from demo.tenant import Draw, parse_end
from demo.writers import (
    OrderedJsonLines,
    ProvisioningPages,
    fmt_graph_time,
    fmt_ms_time,
)

GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


@pytest.mark.parametrize(
    ("records", "pages"), [(0, 1), (1, 1), (999, 1), (1000, 1), (1001, 2), (2000, 2), (2001, 3)]
)
def test_pages_hold_at_most_page_size_and_chain_by_next_link(
    tmp_path: Path, records: int, pages: int
) -> None:
    w = ProvisioningPages(tmp_path, "servicePrincipal/id eq 'x'")
    for i in range(records):
        w.add({"id": str(i)})
    paths = w.close()
    assert len(paths) == pages
    docs = [orjson.loads(p.read_bytes()) for p in paths]
    assert [r["id"] for d in docs for r in d["value"]] == [str(i) for i in range(records)]
    assert all(len(d["value"]) <= 1000 for d in docs)
    links = [d.get("@odata.nextLink") for d in docs]
    assert links[-1] is None
    assert all(link and "$skiptoken=" in link for link in links[:-1])
    assert len(set(links[:-1])) == len(links) - 1
    assert all(d["@odata.context"].endswith("/$metadata#auditLogs/provisioning") for d in docs)


def test_ordered_json_lines_sorts_within_the_horizon(tmp_path: Path) -> None:
    w = OrderedJsonLines(tmp_path / "a.jsonl", horizon=100)
    for t in (10, 5, 50, 40, 200, 150, 400, 390, 1000):
        w.add_at(t, {"t": t})
    w.close()
    got = [orjson.loads(line)["t"] for line in (tmp_path / "a.jsonl").read_bytes().splitlines()]
    assert got == [5, 10, 40, 50, 150, 200, 390, 400, 1000]
    assert w.lines == 9


@given(st.integers(min_value=0, max_value=4_102_444_800 * 10_000_000))
@settings(max_examples=200, deadline=None)
def test_timestamps_round_trip(ticks: int) -> None:
    import pandas as pd

    g = fmt_graph_time(ticks)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z", g)
    assert pd.Timestamp(g).value == ticks * 100
    m = fmt_ms_time(ticks)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", m)
    assert pd.Timestamp(m).value == (ticks // 10_000) * 1_000_000


def test_parse_end_is_utc_ticks() -> None:
    assert parse_end("1970-01-01T00:00:00Z") == 0
    assert parse_end("2026-11-20T10:00:00Z") == 1_795_168_800 * 10_000_000


def test_draw_is_reproducible_and_ids_are_guids() -> None:
    a, b = Draw(np.random.default_rng(5)), Draw(np.random.default_rng(5))
    ids = [a.guid() for _ in range(5000)]
    assert ids == [b.guid() for _ in range(5000)]
    assert all(GUID.match(i) for i in ids)
    assert len(set(ids)) == len(ids)
    values = [a.below(3, 7) for _ in range(2000)]
    assert set(values) == {3, 4, 5, 6}
    assert len(a.hex(20)) == 20
