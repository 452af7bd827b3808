"""`provlens ingest log-analytics`: provisioning rows from a Log Analytics workspace."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ingest.errors import UsageError
from provlens import prepare


def add_workspace_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --workspace-id and --la-url (shared with `report --engine log-analytics`)."""
    parser.add_argument(
        "--workspace-id",
        metavar="ID",
        help="the workspace's Workspace ID (a GUID; env PROVLENS_LA_WORKSPACE_ID)",
    )
    parser.add_argument(
        "--la-url",
        metavar="URL",
        help="query API root (env PROVLENS_LA_URL; default https://api.loganalytics.azure.com); "
        "provlens adds /v1/workspaces/ID/query",
    )


def configure(parser: argparse.ArgumentParser) -> None:
    """Add this command's options."""
    from provlens.cli import parse_time

    add_workspace_arguments(parser)
    when = parser.add_mutually_exclusive_group()
    when.add_argument(
        "--since",
        type=parse_time,
        metavar="ISO",
        help="re-read rows from this time (default: the last run's watermark minus 6 h; first "
        "run: 30 days)",
    )
    when.add_argument("--days", type=int, metavar="N", help="re-read the last N days")
    prepare.add_argument(parser)


def run(args: argparse.Namespace, ctx: Any) -> int:
    """Pull the workspace's rows into the store and print what was read."""
    import pandas as pd

    from ingest import log_analytics as la

    if args.days is not None and args.days < 1:
        raise UsageError(f"--days must be at least 1, got {args.days}")
    now = ctx.now
    since = args.since
    if args.days is not None:
        since = now - pd.Timedelta(days=args.days)
    if since is not None and since >= now:
        raise UsageError(f"--since {since.isoformat()} is not before now ({now.isoformat()})")
    session = la.open_session(args.workspace_id, args.la_url)
    store = ctx.store()
    shown = [0]

    def progress(p: la.LaPull) -> None:
        if ctx.progress and p.rows - shown[0] >= 10_000:
            shown[0] = p.rows
            print(f"\r{p.rows} rows, {p.queries} queries", end="", file=sys.stderr)

    result = la.pull(session, store, since=since, now=now, on_progress=progress)
    if shown[0]:
        print(file=sys.stderr)
    mark = (
        result.watermark.strftime("%Y-%m-%dT%H:%M:%SZ") if result.watermark is not None else "unset"
    )
    print(
        f"read {result.rows} provisioning rows from workspace {session.workspace} at "
        f"{session.root} in {result.queries} queries ({result.splits} splits of too-large "
        f"slices) from "
        f"{result.start.strftime('%Y-%m-%dT%H:%M:%SZ')}; watermark {result.key} {mark}"
    )
    prepare.after_ingest(args, ctx)
    return 0
