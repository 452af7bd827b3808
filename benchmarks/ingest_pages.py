"""Ingest speed on paged Graph dumps and on one large file, beside json_normalize, in one run.

    python -m benchmarks.ingest_pages --pages 200            # 200 pages x 1,000 records
    python -m benchmarks.ingest_pages --pages 200 --one-file # also those records as one file
    python -m benchmarks.ingest_pages --pages 0 --file /path/graph-1000000.json  # one big file

Data: the demo simulator's Graph list-response pages (1,000 records each, ~3.6 KB a record), as
scripts and paged dumps save them, one file per page (benchmarks.data); ``--file`` adds any
Graph list response (the 1M tier's ``graph-1000000.json``). Each method runs in its own process
(peak RSS is that process's VmHWM); stores and written files go under ``--work``, never into
``--data``:

- provlens: ``ingest_files`` of all the page files in one call (parse, conform, store commit);
- json.load + pandas.json_normalize of each page (events, and steps with their event id);
- floor: orjson.loads of each page (the cost of building the Python objects alone).

A file of more than ``--baseline-max`` records is too big for ``json.load`` + ``json_normalize``
(and orjson) in memory: those two are then measured on its first ``--baseline-max`` records and
their time is extrapolated per record to the whole file (marked ``*``; their RSS is that of the
subset). provlens always reads the whole file.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.run import _timed


def _pages(data: Path, count: int) -> list[Path]:
    from benchmarks.data import prepare

    tier = prepare(count * 1000, data)
    pages = tier.pages()[:count]
    return pages


def worker(method: str, paths: list[str], store: str, limit: int = 0) -> dict[str, Any]:
    """Run one method over ``paths`` in this process; return its timing (baselines: the first
    ``limit`` records of a single file when ``limit`` > 0)."""
    files = [Path(p) for p in paths]
    subset: bytes | None = None
    if limit > 0 and method != "provlens":
        from benchmarks.run import _first_records

        subset = _first_records(files[0], limit)

    def body(f: Path) -> bytes:
        return subset if subset is not None else f.read_bytes()

    if method == "provlens":
        from ingest.files import ingest_files
        from ingest.store import Store

        def work() -> int:
            return int(ingest_files(Store(store), files).read.get("events", 0))

    elif method == "normalize":
        import io

        import pandas as pd

        def work() -> int:
            n = 0
            for f in files:
                records = json.load(io.BytesIO(body(f)))["value"]
                pd.json_normalize(records)
                pd.json_normalize(
                    records, record_path="provisioningSteps", meta=["id"], meta_prefix="event."
                )
                n += len(records)
            return n

    else:
        import orjson

        def work() -> int:
            return sum(len(orjson.loads(body(f))["value"]) for f in files)

    out = _timed(work)
    # ru_maxrss survives fork and exec on Linux (it would report the driver's peak); the
    # memory map's own high-water mark does not.
    status = Path("/proc/self/status").read_text()
    hwm = next((line.split()[1] for line in status.splitlines() if line.startswith("VmHWM")), "")
    if hwm:
        out["peak_rss_mb"] = int(hwm) / 1024
    return out


def _run(method: str, paths: list[Path], store: Path, limit: int = 0) -> dict[str, Any]:
    if store.exists():
        shutil.rmtree(store)
    args = [sys.executable, "-m", "benchmarks.ingest_pages", "--worker", method, str(store)]
    out = subprocess.run(
        [*args, str(limit), *map(str, paths)], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def _one_file(pages: list[Path], out: Path) -> Path:
    from benchmarks.data import _write_document

    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        _write_document(pages, out, 10**12)
    return out


LABELS = {
    "provlens": "**provlens ingest file**",
    "normalize": "json.load + pandas.json_normalize",
    "orjson": "floor: orjson.loads",
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=200, help="pages of the demo tier (0: none)")
    ap.add_argument("--data", default="/tmp/provlens-bench", help="benchmark data (read only)")
    ap.add_argument("--work", default="/tmp/provlens-bench-work", help="stores, written files")
    ap.add_argument("--one-file", action="store_true", help="also the pages' records as one file")
    ap.add_argument("--file", action="append", default=[], help="a Graph list response to add")
    ap.add_argument("--baseline-max", type=int, default=100_000)
    ap.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        method, store, limit, *paths = args.worker
        print(json.dumps(worker(method, paths, store, int(limit))))
        return 0
    data, work = Path(args.data), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    shapes: dict[str, list[Path]] = {}
    if args.pages:
        pages = _pages(data, args.pages)
        shapes[f"{len(pages)} pages"] = pages
        if args.one_file:
            shapes["one file"] = [_one_file(pages, work / f"one-{len(pages)}.json")]
    for f in args.file:
        shapes[Path(f).name] = [Path(f)]
    store = work / "store"
    print(
        "| input | method | events | wall s | events/s | CPU s | peak RSS MB "
        "| provlens speed-up (wall; CPU) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name, paths in shapes.items():
        mine = _run("provlens", paths, store)
        limit = args.baseline_max if len(paths) == 1 and mine["events"] > args.baseline_max else 0
        results = {"provlens": mine}
        for method in ("normalize", "orjson"):
            r = _run(method, paths, store, limit)
            if limit:  # per-record rate of the first records, carried to the whole file
                scale = mine["events"] / r["events"]
                r = {
                    **r,
                    "events": mine["events"],
                    "wall_s": r["wall_s"] * scale,
                    "cpu_s": r["cpu_s"] * scale,
                    "extrapolated": True,
                }
            results[method] = r
        for method, r in results.items():
            mark = "*" if r.get("extrapolated") else ""
            ratio = (
                ""
                if method == "provlens"
                else f"{r['wall_s'] / mine['wall_s']:.2f}× ; {r['cpu_s'] / mine['cpu_s']:.2f}×"
            )
            print(
                f"| {name} | {LABELS[method]}{mark} | {r['events']:,} | {r['wall_s']:.1f} | "
                f"{r['events'] / r['wall_s']:,.0f} | {r['cpu_s']:.1f} | "
                f"{r['peak_rss_mb']:,.0f} | {ratio} |",
                flush=True,
            )
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    print(f"\nload average at the end: {' '.join(load)}; {time.strftime('%Y-%m-%d %H:%M UTC')}")
    shutil.rmtree(store, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
