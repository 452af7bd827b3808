"""`provlens doctor` checks the Log Analytics workspace: reachable, permitted, table, latest row."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from provlens.cli import main
from tests.support.graph_server import GraphFixture
from tests.support.la_server import WORKSPACE, LaFixture, make_rows


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVLENS_GRAPH_TOKEN", "test-token")
    monkeypatch.setenv("PROVLENS_GRAPH_RATE", "1000/1")
    monkeypatch.setenv("PROVLENS_LA_TOKEN", "la-test-token")
    for name in (
        "PROVLENS_GRAPH_URL",
        "PROVLENS_SCIM_URL",
        "PROVLENS_SCIM_TOKEN",
        "PROVLENS_LA_URL",
        "PROVLENS_LA_WORKSPACE_ID",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def graph() -> Iterator[GraphFixture]:
    with GraphFixture() as g:
        g.seed(3, start="2026-11-01T00:00:00Z", end="2026-11-02T00:00:00Z")
        yield g


def _rows(out: str) -> dict[str, str]:
    return {line[:14].strip(): line for line in out.splitlines() if line.startswith("L")}


def test_doctor_checks_the_workspace(
    graph: GraphFixture, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with LaFixture() as ws:
        ws.add_rows(make_rows(5, datetime(2026, 11, 20, tzinfo=UTC), timedelta(hours=5)))
        monkeypatch.setenv("PROVLENS_LA_WORKSPACE_ID", WORKSPACE)  # configured by env
        code = main(["doctor", "--graph-url", graph.root, "--la-url", ws.url])
        out = capsys.readouterr().out
        assert code == 0, out
        rows = _rows(out)
        assert "ok" in rows["LA reachable"] and ws.url in rows["LA reachable"]
        assert "ok" in rows["LA permission"] and "PROVLENS_LA_TOKEN" in rows["LA permission"]
        assert "AADProvisioningLogs: 5 rows" in rows["LA table"]
        assert "2026-11-20T04:00:00" in rows["LA latest row"]

        ws.denied = "insufficient access"
        assert main(["doctor", "--graph-url", graph.root, "--la-url", ws.url]) == 4
        rows = _rows(capsys.readouterr().out)
        assert "FAIL" in rows["LA permission"] and "Log Analytics Reader" in rows["LA permission"]


def test_doctor_empty_workspace_and_skip(
    graph: GraphFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["doctor", "--graph-url", graph.root]) == 0
    rows = _rows(capsys.readouterr().out)
    assert "skipped" in rows["Log Analytics"]
    with LaFixture() as ws:
        argv = [
            "doctor",
            "--graph-url",
            graph.root,
            "--la-url",
            ws.url,
            "--workspace-id",
            WORKSPACE,
        ]
        assert main(argv) == 4
        rows = _rows(capsys.readouterr().out)
        assert "FAIL" in rows["LA table"] and "empty" in rows["LA table"]


def test_doctor_unreachable_workspace(
    graph: GraphFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    argv = ["doctor", "--graph-url", graph.root, "--la-url", url, "--workspace-id", WORKSPACE]
    assert main(argv) == 4
    rows = _rows(capsys.readouterr().out)
    assert "FAIL" in rows["LA reachable"] and "cannot reach" in rows["LA reachable"]
