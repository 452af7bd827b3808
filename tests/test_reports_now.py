"""Which reports read the reference time: each registered report declares it
(reports.ReportSpec.uses_now), and one declared not to gives the same bytes at any ``now``, so
its kept CLI answer is served with or without --now (ingest.kept.answer_stem)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ingest.errors import UsageError
from ingest.store import Store
from reports import REPORTS, service
from reports.export import render

demo_run = pytest.importorskip("demo.run")
demo_scenario = pytest.importorskip("demo.scenario")

# Two reference times: within the data's last cycles (its window ends 2026-11-20T10:00Z), and
# days after it.
TIMES = (pd.Timestamp("2026-11-20T09:30:00Z"), pd.Timestamp("2026-11-24T18:00:00Z"))


def _answer(store: Store, name: str, now: pd.Timestamp, user: str) -> bytes:
    try:
        result = service.run(store, name, None, now=now)
    except (UsageError, ValueError):  # a one-user report: asked about one user
        result = service.run(store, name, None, now=now, user=user)
    return render(name, result, "json", REPORTS[name].shape)


def test_a_report_declared_not_to_read_now_answers_the_same_at_any_now(tmp_path: Path) -> None:
    path = tmp_path / "demo"
    scenario = demo_scenario.Scenario(users=120, days=2, seed=7, quarantine=True, planted=True)
    demo_run.build(scenario, path)
    store = Store(path)
    user = str(store.read("events")["source_id"].dropna().iloc[0])
    differ = set()
    for name, spec in REPORTS.items():
        first, second = (_answer(store, name, at, user) for at in TIMES)
        assert first and second
        if not spec.uses_now:
            assert first == second, f"{name} reads now: declare uses_now=True"
        elif first != second:
            differ.add(name)
    # The declaration is not decoration: these answers do change with now.
    assert {"estimate", "estimate-for", "job-header"} <= differ
