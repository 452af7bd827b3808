"""Benchmark: a paced Graph pull against a loopback server that enforces the reporting limit.

The server answers 429 + Retry-After to a client that starts more than ``limit`` requests in any
``window`` seconds (Graph's reporting API: 5 per 10 s). A pull of ``pages`` pages cannot finish
before the throttle floor, ``(ceil(pages / limit) - 1) * window`` seconds; the goal is zero 429s
and a wall time within about 15 % of that floor. The pull is the real one: msgraph-sdk client,
``ingest.graph.pull_logs``, store commits included.

    python -m benchmarks.graph_pull            # 20 pages at 5 / 10 s (about 30 s)
    python -m benchmarks.graph_pull --window 1 # the same shape, ten times faster

``ok`` needs zero 429s, every record stored and wall <= 1.15 x floor. The overhead above the
floor is roughly constant (about a second here), so at ``--window 1`` the ratio looks worse
than at the real 10 s window the goal is stated for.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingest.graph import GraphSession, PullConfig, build_client, pull_logs
from ingest.store import Store
from tests.support.graph_server import GraphFixture

START = pd.Timestamp("2026-11-01T00:00:00Z")
END = pd.Timestamp("2026-11-08T00:00:00Z")


def throttle_floor(pages: int, limit: int, window: float) -> float:
    """Return the least wall time ``pages`` requests need under ``limit`` per ``window`` s."""
    return (math.ceil(pages / limit) - 1) * window


async def _warm_up(root: str, config: PullConfig) -> None:
    """Import what the SDK loads lazily on first use (request builders, middleware)."""
    client, http = build_client(root, config)
    try:
        client.audit_logs.provisioning.with_url(f"{root}/v1.0/auditLogs/provisioning")
    finally:
        await http.aclose()


def graph_pull(
    pages: int = 20, limit: int = 5, window: float = 10.0, top: int = 100
) -> dict[str, Any]:
    """Pull ``pages`` pages through the paced client; return wall time, floor and 429 count."""
    os.environ["PROVLENS_GRAPH_TOKEN"] = "bench-token"
    records = pages * top - top // 2  # the last page is partial, so there is no trailing page
    with (
        GraphFixture(token="bench-token", rate_limit=(limit, window)) as g,
        tempfile.TemporaryDirectory() as tmp,
    ):
        g.seed(records, start=START.isoformat(), end=END.isoformat())
        store = Store(Path(tmp) / "store")
        config = PullConfig(rate=(limit, window), top=top, slice=END - START)

        async def main() -> Any:
            client, http = build_client(g.root, config)
            session = GraphSession(client, config, base_url=g.base)
            try:
                await pull_logs(session, store, service_principal_id=None, since=START, now=END)
                return session.stats
            finally:
                await http.aclose()

        asyncio.run(_warm_up(g.root, config))  # one-off imports are not part of the pull
        t0 = time.monotonic()
        stats = asyncio.run(main())
        wall = time.monotonic() - t0
        stored = store.info()["rows"]["events"]
        throttled = g.count(429)
    floor = throttle_floor(stats.pages, limit, window)
    return {
        "benchmark": "graph_pull",
        "pages": stats.pages,
        "requests": stats.requests,
        "records": stored,
        "limit": f"{limit}/{window:g}s",
        "wall_s": round(wall, 2),
        "floor_s": round(floor, 2),
        "over_floor_pct": round(100 * (wall - floor) / floor, 1) if floor else None,
        # fixed cost (first connection, last window's requests, final commit): the same at any
        # window, so the 15 % goal is judged at Graph's real 10 s window
        "overhead_s": round(wall - floor, 2),
        "http_429": throttled,
        "ok": throttled == 0 and stored == records and (floor == 0 or wall <= floor * 1.15),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print one line (or JSON); exit 1 when the goal is missed."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pages", type=int, default=20)
    p.add_argument("--limit", type=int, default=5)
    p.add_argument("--window", type=float, default=10.0)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    args = p.parse_args(argv)
    r = graph_pull(args.pages, args.limit, args.window)
    if args.json:
        print(json.dumps(r))
    else:
        print(
            f"graph_pull: {r['pages']} pages / {r['records']} records at {r['limit']}: "
            f"wall {r['wall_s']} s vs floor {r['floor_s']} s ({r['over_floor_pct']} % over), "
            f"{r['http_429']} x 429 -> {'OK' if r['ok'] else 'MISSED'}"
        )
    return 0 if r["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
