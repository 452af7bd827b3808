"""Ingest speed on paged Graph dumps and on one large file, beside json_normalize, in one run.

    python -m benchmarks.ingest_pages --pages 200            # 200 pages x 1,000 records
    python -m benchmarks.ingest_pages --pages 200 --one-file # also those records as one file

Data: the demo simulator's Graph list-response pages (1,000 records each, ~3.6 KB a record), as
scripts and paged dumps save them, one file per page (benchmarks.data). Each method runs in its
own process (peak RSS is that process's ``ru_maxrss``):

- provlens: ``ingest_files`` of all the page files in one call (parse, conform, store commit);
- json.load + pandas.json_normalize of each page (events, and steps with their event id);
- floor: orjson.loads of each page (the cost of building the Python objects alone).
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


def worker(method: str, paths: list[str], store: str) -> dict[str, Any]:
    """Run one method over ``paths`` in this process; return its timing."""
    files = [Path(p) for p in paths]
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
                records = json.load(io.BytesIO(f.read_bytes()))["value"]
                pd.json_normalize(records)
                pd.json_normalize(
                    records, record_path="provisioningSteps", meta=["id"], meta_prefix="event."
                )
                n += len(records)
            return n

    else:
        import orjson

        def work() -> int:
            return sum(len(orjson.loads(f.read_bytes())["value"]) for f in files)

    out = _timed(work)
    # ru_maxrss survives fork and exec on Linux (it would report the driver's peak); the
    # memory map's own high-water mark does not.
    status = Path("/proc/self/status").read_text()
    hwm = next((line.split()[1] for line in status.splitlines() if line.startswith("VmHWM")), "")
    if hwm:
        out["peak_rss_mb"] = int(hwm) / 1024
    return out


def _run(method: str, paths: list[Path], store: Path) -> dict[str, Any]:
    if store.exists():
        shutil.rmtree(store)
    args = [sys.executable, "-m", "benchmarks.ingest_pages", "--worker", method, str(store)]
    out = subprocess.run(
        [*args, *map(str, paths)], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def _one_file(pages: list[Path], out: Path) -> Path:
    from benchmarks.data import _write_document

    if not out.exists():
        _write_document(pages, out, 10**12)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=200)
    ap.add_argument("--data", default="/tmp/provlens-bench")
    ap.add_argument("--one-file", action="store_true", help="also all records as one file")
    ap.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        method, store, *paths = args.worker
        print(json.dumps(worker(method, paths, store)))
        return 0
    data = Path(args.data)
    pages = _pages(data, args.pages)
    shapes = {f"{len(pages)} pages": pages}
    if args.one_file:
        shapes["one file"] = [_one_file(pages, data / f"one-{len(pages)}.json")]
    store = data / "store"
    print("| input | method | events | wall s | events/s | CPU s | peak RSS MB | provlens ÷ |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name, paths in shapes.items():
        results = {m: _run(m, paths, store) for m in ("provlens", "normalize", "orjson")}
        mine = results["provlens"]["wall_s"]
        for method, r in results.items():
            label = {
                "provlens": "**provlens ingest file**",
                "normalize": "json.load + pandas.json_normalize",
                "orjson": "floor: orjson.loads",
            }[method]
            ratio = "" if method == "provlens" else f"{r['wall_s'] / mine:.2f}×"
            print(
                f"| {name} | {label} | {r['events']:,} | {r['wall_s']:.1f} | "
                f"{r['events'] / r['wall_s']:,.0f} | {r['cpu_s']:.1f} | "
                f"{r['peak_rss_mb']:,.0f} | {ratio} |"
            )
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    print(f"\nload average at the end: {' '.join(load)}; {time.strftime('%Y-%m-%d %H:%M UTC')}")
    shutil.rmtree(store, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
