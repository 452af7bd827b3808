"""`provlens ingest graph`: provisioning logs, job status and scope, live from Microsoft Graph."""

from __future__ import annotations

import argparse
import re
import sys
from typing import TYPE_CHECKING, Any

from ingest.errors import UsageError
from provlens import prepare

if TYPE_CHECKING:
    import pandas as pd

_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def configure(parser: argparse.ArgumentParser) -> None:
    """Add this command's options."""
    from provlens.cli import parse_time

    parser.add_argument(
        "--service-principal-id",
        dest="service_principal_ids",
        action="append",
        default=[],
        metavar="ID",
        help="object id of the enterprise app (repeatable); default: logs of all apps, then job "
        "status and scope of every app found in them",
    )
    when = parser.add_mutually_exclusive_group()
    when.add_argument(
        "--since",
        type=parse_time,
        metavar="ISO",
        help="re-read logs from this time (default: the last run's watermark minus 2 h; first "
        "run: 30 days)",
    )
    when.add_argument("--days", type=int, metavar="N", help="re-read the last N days of logs")
    parser.add_argument(
        "--graph-url",
        metavar="URL",
        help="Graph host root for national clouds, e.g. https://graph.microsoft.us "
        "(env PROVLENS_GRAPH_URL; default https://graph.microsoft.com); provlens adds /v1.0",
    )
    prepare.add_argument(parser)


class _Bar:
    """A tqdm bar on stderr with records, pages, rate and throttling waits (terminals only)."""

    def __init__(self, enabled: bool) -> None:
        self._bar: Any = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(desc="graph", unit=" rec", file=sys.stderr, dynamic_ncols=True)

    def update(self, stats: Any) -> None:
        """Show the session's counters."""
        if self._bar is None:
            return
        if stats.records > self._bar.n:
            self._bar.update(stats.records - self._bar.n)  # update() keeps tqdm's rate right
        self._bar.set_postfix(
            pages=stats.pages,
            throttled=stats.throttled,
            waits=f"{stats.paced_s + stats.waited_s:.0f}s",
            refresh=False,
        )
        self._bar.refresh()

    def close(self) -> None:
        """Remove the bar."""
        if self._bar is not None:
            self._bar.close()


def run(args: argparse.Namespace, ctx: Any) -> int:
    """Pull logs for each app (or all), then job status and scope; print a summary."""
    import pandas as pd

    from ingest import graph

    if args.days is not None and args.days < 1:
        raise UsageError(f"--days must be at least 1, got {args.days}")
    root = graph.graph_root(args.graph_url)
    config = graph.PullConfig.from_settings()
    now: pd.Timestamp = ctx.now
    since = args.since
    if args.days is not None:
        since = now - pd.Timedelta(days=args.days)
    if since is not None and since >= now:
        raise UsageError(f"--since {since.isoformat()} is not before now ({now.isoformat()})")
    ids = list(dict.fromkeys(i.strip().lower() for i in args.service_principal_ids if i.strip()))
    for sp in ids:
        if not _GUID.fullmatch(sp):
            raise UsageError(
                f"--service-principal-id {sp!r} is not an object id (a GUID); use the enterprise "
                "app's Object ID from Entra admin center > Enterprise applications"
            )
    bar = _Bar(ctx.progress)
    try:
        result = graph.ingest_graph(
            ctx.store(),
            root,
            config,
            service_principal_ids=ids,
            since=since,
            now=now,
            on_progress=bar.update,
        )
    finally:
        bar.close()
    pulls, states, audits = result.pulls, result.states, result.audits
    records = sum(p.records for p in pulls)
    pages = sum(p.pages for p in pulls)
    who = ", ".join(ids) if ids else "all apps"
    lines = []
    for p in pulls:
        mark = p.watermark.strftime("%Y-%m-%dT%H:%M:%SZ") if p.watermark is not None else "unset"
        lines.append(
            f"  {p.key}: {p.records} records in {p.pages} pages from "
            f"{p.start.strftime('%Y-%m-%dT%H:%M:%SZ')}; watermark {mark}"
        )
    for s in states:
        lines.append(
            f"  {s.service_principal_id}: {s.jobs} jobs, {s.assignments} assignments, "
            f"{s.members} members of {s.groups} assigned groups"
        )
    for a in audits:
        lines.append(
            f"  directory audit: {a.stored} membership changes of {a.groups} assigned groups "
            f"({a.records} records in {a.pages} pages)"
        )
    print(f"read {records} provisioning records ({pages} pages) from {root} for {who}")
    if lines:
        print("\n".join(lines))
    error = result.error()
    if error is not None:
        raise error
    prepare.after_ingest(args, ctx)
    return 0
