"""`provlens --help` wall time: how long the CLI takes to start and list its commands.

``python -m benchmarks.cli_start [--runs N]`` runs the installed console script (else
``python -m provlens``) N times in fresh processes and prints min, median and max wall seconds,
beside a bare ``python -c pass`` start for scale. Target (issue 12): under 0.3 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

TARGET_S = 0.3


def wall_times(cmd: list[str], runs: int) -> list[float]:
    """Return the wall seconds of ``runs`` fresh runs of ``cmd`` (after one warm-up run)."""
    subprocess.run(cmd, capture_output=True, check=True)  # warm the page cache
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    """Time the commands and print one line each."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    script = Path(sys.executable).with_name("provlens")
    provlens = [str(script)] if script.exists() else [sys.executable, "-m", "provlens"]
    if not script.exists() and shutil.which("provlens"):
        provlens = [str(shutil.which("provlens"))]
    cases = {
        "python -c pass (interpreter start)": [sys.executable, "-c", "pass"],
        "provlens --help": [*provlens, "--help"],
        "provlens ingest --help": [*provlens, "ingest", "--help"],
        "provlens report --help (imports its module)": [*provlens, "report", "--help"],
        # The floor every `provlens report` pays before reading a byte (issue 13).
        "python -c 'import pandas'": [sys.executable, "-c", "import pandas"],
        "python -c 'import duckdb'": [sys.executable, "-c", "import duckdb"],
        "import the report path (reports.service, export)": [
            sys.executable,
            "-c",
            "import provlens.commands.report, reports.service, reports.export, reports.sql",
        ],
    }
    load = os.getloadavg()
    print(f"{args.runs} runs each; load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    for name, cmd in cases.items():
        t = wall_times(cmd, args.runs)
        flag = ""
        if name == "provlens --help":
            flag = "  ok (< 0.3 s)" if statistics.median(t) < TARGET_S else "  OVER 0.3 s"
        print(
            f"{name:<45} min {min(t):.3f} s  median {statistics.median(t):.3f} s  "
            f"max {max(t):.3f} s{flag}"
        )


if __name__ == "__main__":
    main()
