"""The benchmark suite runs end to end in quick mode and prints its table (no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(1800)
def test_quick_benchmark_prints_the_table(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.run",
            "--quick",
            "--data",
            str(tmp_path / "data"),
            "--work",
            str(tmp_path / "work"),
            "--typed-max",
            "500",
            "--skip",
            "dashboard",
            "--json",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1700,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = proc.stdout
    assert "### File ingest" in table
    assert "**provlens ingest file**" in table
    assert "json.load + pandas.json_normalize" in table
    assert "msgraph-sdk typed models" in table
    assert "### Reports the dashboard computes on first load" in table
    assert "### Graph pull" in table
    assert "error" not in table
    results = json.loads(out.read_text())
    tier = results["tiers"]["10000"]
    # Every method read every event it was given.
    assert tier["provlens"]["events"] == 10_000
    assert tier["normalize"]["events"] == 10_000
    assert tier["typed"]["events"] == 500
    assert tier["reports"]["events"] == 10_000
    assert set(tier["reports"]["reports_s"]) >= {"summary", "users", "correlation"}
