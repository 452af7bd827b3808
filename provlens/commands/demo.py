"""`provlens demo`: a simulated tenant and wiki, ingested into the demo's own store."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from provlens.cli import Context


log = logging.getLogger(__name__)


def _positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {value!r}")
    return n


def configure(parser: argparse.ArgumentParser) -> None:
    """Add this command's arguments."""
    parser.add_argument(
        "--users", type=_positive, default=2000, metavar="N", help="users (default 2000)"
    )
    parser.add_argument(
        "--groups", type=_positive, metavar="N", help="groups (default: from --users)"
    )
    parser.add_argument(
        "--seed", type=_positive, default=7, metavar="N", help="random seed (default 7)"
    )
    parser.add_argument(
        "--days", type=_positive, default=7, metavar="N", help="days of history (default 7)"
    )
    parser.add_argument(
        "--quarantine", action="store_true", help="include a quarantine episode (bad token)"
    )
    parser.add_argument(
        "--healthy",
        action="store_true",
        help="plant no problems (by default the demo plants a quarantine risk, a stalled job, a "
        "slow cycle, a missed deprovisioning and slow access, so `provlens alert` has findings)",
    )
    parser.add_argument(
        "--out", metavar="DIR", help="write the raw files here (default: <store>/raw)"
    )
    parser.add_argument("--no-dashboard", action="store_true", help="do not start the dashboard")
    parser.add_argument(
        "--port", type=_positive, default=8501, metavar="N", help="dashboard port (8501)"
    )


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Generate and ingest the demo, print the store path, then serve the dashboard."""
    from demo.run import build, demo_store_path, end_of_window
    from demo.scenario import Scenario

    if args.healthy and args.quarantine:
        from ingest.errors import UsageError

        raise UsageError("--healthy plants no problems; it cannot take --quarantine")
    scenario = Scenario(
        users=args.users,
        groups=args.groups,
        seed=args.seed,
        days=args.days,
        end=end_of_window(ctx.now),
        quarantine=args.quarantine,
        planted=not args.healthy,
    )
    # Only an explicit --store redirects the demo; PROVLENS_STORE names the user's real store.
    explicit = bool(getattr(args, "store", None))
    store_path = ctx.store_path if explicit else demo_store_path()
    if ctx.store_given and not explicit:
        log.info("demo: PROVLENS_STORE is set; the demo still uses its own store %s", store_path)
    result = build(
        scenario,
        store_path,
        Path(args.out).expanduser() if args.out else None,
        fresh_store=not explicit,
        progress=ctx.progress,
    )
    log.info(
        "demo: %d users, %d events, %d wiki requests; generated in %.1f s, ingested in %.1f s",
        args.users,
        result.truth["events"]["total"],
        result.truth["wiki"]["requests"],
        result.generate_seconds,
        result.ingest_seconds,
    )
    log.info("demo: raw files in %s", result.raw_dir)
    print(store_path)  # the one line scripts read: where the demo store is
    sys.stdout.flush()
    if args.no_dashboard:
        return 0
    from dashboard.launch import run as launch

    return int(launch(store_path, port=args.port, address="localhost", demo=True, now=ctx.now))
