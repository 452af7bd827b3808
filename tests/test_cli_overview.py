"""`provlens report overview` and `report correlation --user` through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from provlens.cli import main

EXAMPLES = Path(__file__).parent / "data" / "examples"


@pytest.fixture
def store(tmp_path: Path) -> str:
    path = str(tmp_path / "store")
    files = [str(p) for p in sorted(EXAMPLES.glob("graph-v1.0-list-provisioning-*.json"))]
    assert main(["--store", path, "ingest", "file", *files]) == 0
    return path


def test_overview_json(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["--store", store, "report", "overview", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["events"] == 2
    assert data["failures"] == 1
    assert data["success_rate"] == 0.5


def test_correlation_for_one_user(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    code = main(
        [
            "--store",
            store,
            "report",
            "correlation",
            "--user",
            "Self-service Pilot",
            "--format",
            "json",
        ]
    )
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["event_id"] for r in rows] == ["gc532ff9-r265-ec76-861e-42e2970a8218"]
    assert rows[0]["verdict"] == "not_sent_to_wiki"
