"""Benchmark: `report summary` pushed down to the workspace against pulled and computed locally.

    .venv/bin/python -m benchmarks.la_pushdown --rows 1000000 --pull-rows 100000 --data /tmp/la

Rows are generated (tests.support.la_server.make_rows, in chunks written to Parquet and cached
under ``--data``) and loaded into the loopback workspace (tests/support/la_server.py), which runs
the KQL it receives through duckdb-kql over DuckDB. For each size the script measures:

* push-down: wall time of ``report summary --engine log-analytics`` (probe + 5 KQL queries) and
  the bytes of the answers (the JSON bodies the server sent);
* pulled: wall time of ``ingest log-analytics`` (every row through LogsQueryClient and the parser
  into a fresh store, slices split at the service's 500,000-row / 64 MB limits), the bytes moved,
  then the local ``summary`` over that store; and checks both summaries are equal.

Results are printed as JSON lines and appended to ``--out`` (default benchmarks/la_results.jsonl).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

START = datetime(2026, 9, 1, tzinfo=UTC)
SPAN = timedelta(days=60)
CHUNK = 50_000
BASE = 100_000  # rows generated record by record; larger sizes repeat them shifted in time


def _parquet(rows: int, data: Path) -> Path:
    """Return a Parquet file of ``rows`` generated rows (cached)."""
    import pandas as pd

    from tests.support.la_server import COLUMNS, make_rows

    path = data / f"la-rows-{rows}.parquet"
    if path.exists():
        return path
    data.mkdir(parents=True, exist_ok=True)
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = None
    step = SPAN / rows
    try:
        for n, first in enumerate(range(0, rows, CHUNK)):
            count = min(CHUNK, rows - first)
            frame = pd.DataFrame(
                make_rows(count, START + step * first, step * count, seed=n, cycles_per_job=2)
            )
            frame = frame[list(COLUMNS)]
            frame["TimeGenerated"] = pd.to_datetime(frame["TimeGenerated"], utc=True)
            frame["DurationMs"] = frame["DurationMs"].astype("int64")
            table = pa.Table.from_pandas(frame, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(str(path) + ".tmp", table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
    os.replace(str(path) + ".tmp", path)
    return path


def _summary_pushed(session: Any, ws: Any) -> tuple[dict[str, Any], float, int, float]:
    from ingest.log_analytics.engine import run_report
    from reports import Filters

    ws.log.clear()
    t0 = time.perf_counter()
    run = run_report(session, "summary", Filters(), include_noise=False)
    took = time.perf_counter() - t0
    moved = sum(e.bytes for e in ws.log)
    assert run.result.data is not None
    return run.result.data, took, moved, sum(e.execute_s for e in ws.log)


def measure(rows: int, pull: bool, data: Path) -> dict[str, Any]:
    """Return the figures for one size."""
    import pandas as pd

    from ingest import log_analytics as la
    from ingest.store import Store
    from reports import Filters, Inputs, run_report
    from tests.support.la_server import LaFixture

    os.environ["PROVLENS_LA_TOKEN"] = "la-test-token"
    t0 = time.perf_counter()
    base = min(rows, BASE)
    if rows % base:
        raise SystemExit(f"--rows {rows} must be a multiple of {base}")
    path = _parquet(base, data)
    gen_s = time.perf_counter() - t0
    out: dict[str, Any] = {"rows": rows, "generate_s": round(gen_s, 1)}
    with LaFixture() as ws:
        t0 = time.perf_counter()
        loaded = ws.add_parquet(str(path))
        if rows > base:
            loaded = ws.replicate(rows // base - 1, SPAN)
        out["load_s"] = round(time.perf_counter() - t0, 1)
        assert loaded == rows, (loaded, rows)
        session = la.open_session(ws.workspace_id, ws.url)
        summary, took, moved, sql_s = _summary_pushed(session, ws)
        out.update(
            pushdown_s=round(took, 2),
            pushdown_bytes=moved,
            pushdown_queries=len(ws.log),
            pushdown_server_sql_s=round(sql_s, 2),
            events=summary["events"],
        )
        if pull:
            store_dir = data / f"store-{rows}"
            shutil.rmtree(store_dir, ignore_errors=True)
            store = Store(store_dir)
            ws.log.clear()
            t0 = time.perf_counter()
            result = la.pull(
                session,
                store,
                since=pd.Timestamp(START - timedelta(days=1)),
                now=pd.Timestamp(START + SPAN * (rows // base) + timedelta(days=1)),
            )
            pull_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            inputs = Inputs.from_tables({"events": store.read("events")})
            local = run_report("summary", inputs, Filters()).data
            local_s = time.perf_counter() - t0
            out.update(
                pull_s=round(pull_s, 1),
                pull_bytes=sum(e.bytes for e in ws.log),
                pull_queries=result.queries,
                pull_splits=result.splits,
                local_summary_s=round(local_s, 2),
                same_summary=local == summary,
            )
            shutil.rmtree(store_dir, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the sizes asked for and print one JSON line each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, action="append", default=[])
    parser.add_argument("--pull-rows", type=int, action="append", default=[])
    parser.add_argument("--data", type=Path, default=Path("/tmp/la"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/la_results.jsonl"))
    args = parser.parse_args(argv)
    sizes = sorted(set(args.rows) | set(args.pull_rows)) or [10_000]
    for n in sizes:
        figures = measure(n, n in args.pull_rows, args.data)
        figures["load_average"] = round(os.getloadavg()[0], 1)
        line = json.dumps(figures)
        print(line, flush=True)
        with args.out.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
