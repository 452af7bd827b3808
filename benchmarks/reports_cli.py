"""Report benchmark: each registered report through the CLI, beside one DuckDB aggregate.

    python -m benchmarks.reports_cli --store /tmp/query/store-1m [--repeat 1] [--out FILE.json]

For every report: ``provlens --store S report NAME --format json --out /dev/null`` in a fresh
process, timed from the outside (wall time, the way a user or a cron job sees it, Python start
included) with the process's peak RSS (``resource.getrusage(RUSAGE_CHILDREN)`` of a wrapper per
run). The baseline, measured in the same run and the same way, is one DuckDB aggregate over the
events parts (``SELECT status, count(*) ... GROUP BY status`` over the manifest's parts), also in a
fresh process that imports duckdb. The ratio is report ÷ baseline. The derived model is computed
before the timed runs (``--cold`` times that first computation too): it is kept per store version,
so every later question on that version reads it back.

The first ask of each report at the run's ``--now`` is measured too ("first ask": the answer
computed, then kept beside the model: ingest.kept), before the timed runs: a later fresh
process asked the same unfiltered question on the same version writes the kept answer without
importing pandas (provlens.kept), which is what the "CLI wall" column times. ``--no-first-ask``
leaves that pass out (on a version whose answers are not kept yet, the timed runs compute).

A second column is measured in the same run, in one process that has already imported provlens
(``import pandas`` alone costs a fresh process about 0.5 s, more than twice the baseline): per
report, the model cache dropped (a fresh DuckDB connection per question, the kept model read back
from disk), the time ``reports.service.run`` takes, against the same DuckDB aggregate on a fresh
connection in that process; and the time with the JSON written as the CLI writes it. The import
time of a fresh CLI process (``python -X importtime``) is reported beside.

Figures vary with the machine's load; ratios measured in the same run are the comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NOW = "2026-11-20T10:00:00Z"
REPORTS = (
    "summary",
    "cycles",
    "users",
    "failures",
    "skips",
    "coverage",
    "estimate",
    "correlation",
    "scim-traffic",
    "quarantine-risk",
    "overview",
)
TARGET_WALL_S = 1.5
TARGET_RATIO = 3.0
TARGET_RSS_MB = 1024

_WRAPPER = """
import resource, subprocess, sys, time, json
t0 = time.perf_counter()
code = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL)
wall = time.perf_counter() - t0
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"code": code, "wall_s": wall, "peak_rss_mb": ru.ru_maxrss / 1024,
                  "cpu_s": ru.ru_utime + ru.ru_stime}))
"""

_BASELINE = """
import json, sys, duckdb
manifest = json.load(open(sys.argv[1] + "/manifest.json"))
files = [sys.argv[1] + "/" + p for p in manifest["parts"]["events"]]
con = duckdb.connect(config={"threads": 2})
rows = con.sql(
    "SELECT status, count(*) AS n FROM read_parquet($files) GROUP BY status",
    params={"files": files},
).fetchall()
print(sum(n for _, n in rows), file=sys.stderr)
"""


# In one process that has already imported what the CLI imports: per report, the model cache
# dropped (each question then opens its own DuckDB connection and reads the kept model back from
# disk, as a fresh CLI process does), the report built (service.run) and written as the CLI
# writes it; beside the same DuckDB aggregate as the baseline, on a fresh connection each time.
_IN_PROCESS = """
import json, os, sys, time
import provlens.cli, provlens.commands.report  # what `provlens report` imports before it runs
import duckdb, pandas as pd
from reports import REPORTS, Filters, service
from reports import query as q
from reports.export import render, write_json_rows, write_output

store, names, repeat, now = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3]), sys.argv[4]
files = [store + "/" + p for p in json.load(open(store + "/manifest.json"))["parts"]["events"]]

def aggregate():
    t0 = time.perf_counter()
    con = duckdb.connect(config={"threads": 2})
    con.sql("SELECT status, count(*) AS n FROM read_parquet($files) GROUP BY status",
            params={"files": files}).fetchall()
    con.close()
    return time.perf_counter() - t0

def report(name):
    q.clear_model_cache()
    t0 = time.perf_counter()
    result = service.run(store, name, Filters(), now=pd.Timestamp(now))
    t1 = time.perf_counter()
    spec = REPORTS[name]
    arrow = result.rows_source()
    source = arrow if arrow is not None else result.frame
    if not (spec.shape == "rows" and source is not None and write_json_rows(source, os.devnull)):
        write_output(render(name, result, "json", spec.shape), os.devnull)
    return t1 - t0, time.perf_counter() - t0

aggregate()  # the first connection of the process loads DuckDB's parts
out = {"baseline_s": min(aggregate() for _ in range(max(repeat, 3))), "reports": {}}
for name in names:
    runs = [report(name) for _ in range(repeat)]
    build, total = min(runs)
    out["reports"][name] = {"build_s": build, "build_and_write_s": total}
print(json.dumps(out))
"""


def _in_process(store: Path, repeat: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", _IN_PROCESS, str(store), ",".join(REPORTS), str(repeat), NOW],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _imports_s() -> float:
    """Return the time (s) a fresh process spends importing what ``provlens report`` imports
    (``-X importtime``, top-level modules summed)."""
    code = "import provlens.cli, provlens.commands.report, reports.service, reports.export"
    cmd = [sys.executable, "-X", "importtime", "-c", code]
    err = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT).stderr
    total = 0
    for line in err.splitlines():
        parts = line.split("|")
        # Top-level modules: the name column is indented by one space only.
        top = len(parts) == 3 and not parts[2][1:2].isspace() and parts[1].strip().isdigit()
        if line.startswith("import time:") and top:
            total += int(parts[1])
    return total / 1e6


def _measure(cmd: list[str]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", _WRAPPER, *cmd], capture_output=True, text=True, check=True
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _report_cmd(store: Path, name: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "provlens",
        "--store",
        str(store),
        "--now",
        NOW,
        "report",
        name,
        "--format",
        "json",
        "--out",
        os.devnull,
    ]


def run(store: Path, repeat: int, cold: bool, first_ask: bool = True) -> dict[str, Any]:
    """Return the measurements: baseline and per report (best of ``repeat``)."""
    from ingest.store import Store

    info = Store(store).info()
    results: dict[str, Any] = {
        "store": str(store),
        "events": info["rows"].get("events", 0),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_1m_before": os.getloadavg()[0],
        },
        "reports": {},
    }
    model_cmd = _report_cmd(store, "cycles")
    if cold:
        import shutil

        shutil.rmtree(store / "derived", ignore_errors=True)
    results["model_first_run"] = _measure(model_cmd)  # computes and keeps the model if missing
    results["first_ask"] = {}
    for name in REPORTS if first_ask else ():
        results["first_ask"][name] = _measure(_report_cmd(store, name))
    base = [_measure([sys.executable, "-c", _BASELINE, str(store)]) for _ in range(repeat)]
    results["baseline"] = min(base, key=lambda r: r["wall_s"])
    for name in REPORTS:
        runs = [_measure(_report_cmd(store, name)) for _ in range(repeat)]
        best = min(runs, key=lambda r: r["wall_s"])
        best["ratio"] = best["wall_s"] / results["baseline"]["wall_s"]
        best["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
        results["reports"][name] = best
        print(
            f"{name:16} {best['wall_s']:6.2f} s  x{best['ratio']:5.1f}  "
            f"{best['peak_rss_mb']:7.0f} MB  exit {best['code']}",
            file=sys.stderr,
        )
    inside = _in_process(store, repeat)
    results["in_process"] = inside
    for name, r in inside["reports"].items():
        r["ratio"] = r["build_s"] / inside["baseline_s"]
        print(
            f"{name:16} in process {r['build_s']:6.2f} s (+ write {r['build_and_write_s']:6.2f} s)"
            f"  x{r['ratio']:5.1f}",
            file=sys.stderr,
        )
    results["imports_s"] = _imports_s()
    results["machine"]["load_1m_after"] = os.getloadavg()[0]
    return results


def render(results: dict[str, Any]) -> str:
    """Return the results as a Markdown table with the targets met or missed."""
    base = results["baseline"]["wall_s"]
    lines = [
        f"Store: {results['events']:,} events. Baseline (one DuckDB aggregate over the events "
        f"parts, fresh process): {base:.2f} s. First `report cycles` of the run (computes and "
        f"keeps the model when this version has none; `--cold` forces it): "
        f"{results['model_first_run']['wall_s']:.1f} s. "
        f"Load average before/after: {results['machine']['load_1m_before']:.1f} / "
        f"{results['machine']['load_1m_after']:.1f} on {results['machine']['cpus']} CPUs.",
        "",
        "| report | first ask s | CLI wall s | vs DuckDB aggregate (fresh process) "
        "| in-process build s | vs DuckDB aggregate (in process) "
        "| in-process build + JSON write s | peak RSS MB "
        "| ≤ 1.5 s | ≤ 3× fresh | ≤ 3× in process | < 1 GB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|:-:|:-:|:-:|:-:|",
    ]
    first = results.get("first_ask", {})
    inside = results.get("in_process", {"reports": {}})
    for name, r in results["reports"].items():
        i = inside["reports"].get(name)
        ok = (
            "yes" if r["wall_s"] <= TARGET_WALL_S else "no",
            "yes" if r["ratio"] <= TARGET_RATIO else "no",
            "—" if i is None else ("yes" if i["ratio"] <= TARGET_RATIO else "no"),
            "yes" if r["peak_rss_mb"] < TARGET_RSS_MB else "no",
        )
        within = (
            "— | — | —"
            if i is None
            else f"{i['build_s']:.2f} | {i['ratio']:.1f}× | {i['build_and_write_s']:.2f}"
        )
        asked = f"{first[name]['wall_s']:.2f}" if name in first else "—"
        lines.append(
            f"| {name} | {asked} | {r['wall_s']:.2f} | {r['ratio']:.1f}× | {within} | "
            f"{r['peak_rss_mb']:.0f} | " + " | ".join(ok) + " |"
        )
    if "in_process" in results:
        lines += [
            "",
            f"In process (one process that imported provlens; per report a fresh DuckDB "
            f"connection and the kept model read back from disk): the DuckDB aggregate takes "
            f"{inside['baseline_s']:.3f} s. A fresh process spends "
            f"{results['imports_s']:.2f} s importing what `provlens report` imports "
            f"(`python -X importtime`; pandas, DuckDB and pyarrow most of it).",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the Markdown table (JSON with --out)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--store", type=Path, required=True)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--cold", action="store_true", help="drop the kept model first")
    p.add_argument(
        "--no-first-ask", action="store_true", help="no first ask of each report (keeping it)"
    )
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    results = run(args.store, args.repeat, args.cold, not args.no_first_ask)
    results["total_s"] = time.perf_counter() - t0
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    print(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
