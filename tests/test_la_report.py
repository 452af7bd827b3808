"""`report --engine log-analytics`: KQL push-down gives the local engine's JSON on the same rows."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from provlens.cli import main
from tests.support.la_server import WORKSPACE, LaFixture, make_rows

N = 600
NOW = "2026-11-23T00:00:00Z"


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVLENS_LA_TOKEN", "la-test-token")
    for name in ("PROVLENS_LA_URL", "PROVLENS_LA_WORKSPACE_ID", "PROVLENS_STORE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LaFixture, Path]]:
    """The same rows in the loopback workspace and (pulled through the parser) in a store."""
    store = tmp_path_factory.mktemp("la") / "store"
    with LaFixture() as ws:
        ws.add_rows(make_rows(N, datetime(2026, 11, 20, tzinfo=UTC), timedelta(days=2)))
        mp = pytest.MonkeyPatch()
        mp.setenv("PROVLENS_LA_TOKEN", "la-test-token")
        code = main(
            [
                "--store",
                str(store),
                "--now",
                NOW,
                "ingest",
                "log-analytics",
                "--workspace-id",
                WORKSPACE,
                "--la-url",
                ws.url,
                "--since",
                "2026-11-19T00:00:00Z",
            ]
        )
        mp.undo()
        assert code == 0
        yield ws, store


def _json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> object:
    capsys.readouterr()
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def _both(
    world: tuple[LaFixture, Path], capsys: pytest.CaptureFixture[str], name: str, *extra: str
) -> tuple[object, object]:
    ws, store = world
    base = ["--store", str(store), "--now", NOW, "report", name, "--format", "json", *extra]
    local = _json(base, capsys)
    ws.log.clear()
    pushed = _json(
        [*base, "--engine", "log-analytics", "--workspace-id", WORKSPACE, "--la-url", ws.url],
        capsys,
    )
    return local, pushed


FILTERS = [
    (),
    ("--since", "2026-11-20T12:00:00Z", "--until", "2026-11-21T06:00:00Z"),
    ("--status", "failure", "--action", "update"),
    ("--include-noise",),
]


@pytest.mark.parametrize("name", ["summary", "cycles", "failures", "skips"])
@pytest.mark.parametrize("extra", FILTERS, ids=["all", "time", "status-action", "noise"])
def test_engines_agree(
    world: tuple[LaFixture, Path],
    capsys: pytest.CaptureFixture[str],
    name: str,
    extra: tuple[str, ...],
) -> None:
    local, pushed = _both(world, capsys, name, *extra)
    assert pushed == local
    ws, _ = world
    # Only aggregates travelled: no answer carried a raw provisioning row.
    assert ws.log and all("ProvisioningSteps" not in str(e.rows) for e in ws.log)
    assert max(e.rows for e in ws.log) < 100


def test_parity_is_not_vacuous(
    world: tuple[LaFixture, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    summary, pushed = _both(world, capsys, "summary")
    assert isinstance(summary, dict) and summary == pushed
    assert summary["events"] == N and summary["distinct_ids"] == N
    assert summary["cycles"] == 6  # 2 apps x 3 cycles
    assert 0 < summary["source_objects"] <= N
    assert summary["failures_by_error_code"]
    failures, _ = _both(world, capsys, "failures")
    assert isinstance(failures, list) and len(failures) == 2
    assert {r["error_code"] for r in failures} == {
        "TheOrgWikiEntryConflict",
        "SystemForCrossDomainIdentityManagementServiceIncompatible",
    }
    assert all(r["owner"] != "unknown" for r in failures)
    skips, _ = _both(world, capsys, "skips", "--include-noise")
    assert isinstance(skips, list)
    assert {r["skip_reason"]: r["noise"] for r in skips} == {
        "NotEffectivelyEntitled": True,
        "ScopingFilterNotSatisfied": True,
        "RedundantExport": False,
    }
    cycles, _ = _both(world, capsys, "cycles")
    assert isinstance(cycles, list) and len(cycles) == 6
    assert sum(c["events"] for c in cycles) == N


def test_report_engine_rejects_other_reports(
    world: tuple[LaFixture, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    ws, store = world
    code = main(
        [
            "--store",
            str(store),
            "report",
            "coverage",
            "--engine",
            "log-analytics",
            "--workspace-id",
            WORKSPACE,
            "--la-url",
            ws.url,
        ]
    )
    assert code == 2
    assert "summary, cycles, failures, skips" in capsys.readouterr().err


def test_report_engine_denied_exits_4(
    world: tuple[LaFixture, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    ws, store = world
    ws.denied = "The provided credentials have insufficient access"
    try:
        code = main(
            [
                "--store",
                str(store),
                "report",
                "summary",
                "--engine",
                "log-analytics",
                "--workspace-id",
                WORKSPACE,
                "--la-url",
                ws.url,
            ]
        )
    finally:
        ws.denied = None
    assert code == 4
    assert "Log Analytics Reader" in capsys.readouterr().err


def test_engines_agree_on_a_workspace_with_the_legacy_action_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = make_rows(120, datetime(2026, 11, 20, tzinfo=UTC), timedelta(hours=20), seed=3)
    with LaFixture(legacy_action=True) as ws:
        ws.add_rows([{**r, "Action": r.pop("ProvisioningAction")} for r in rows])
        store = tmp_path / "store"
        ingest = ["--store", str(store), "--now", NOW, "ingest", "log-analytics"]
        where = ["--workspace-id", WORKSPACE, "--la-url", ws.url]
        assert main([*ingest, *where, "--since", "2026-11-19T00:00:00Z"]) == 0
        report = ["--store", str(store), "report", "summary", "--format", "json"]
        local = _json(report, capsys)
        pushed = _json([*report, "--engine", "log-analytics", *where], capsys)
    assert pushed == local
    assert isinstance(local, dict) and "unknown" not in local["by_action_status"]
    assert set(local["by_action_status"]) >= {"create", "update"}
