"""`provlens ingest graph`: provisioning logs, job status and scope, live from Microsoft Graph."""

from __future__ import annotations

import argparse
import logging
import re
import sys
from typing import Any

import pandas as pd

from ingest.errors import ProvlensError, RemoteError, UsageError

COMMAND = ("ingest", "graph")
HELP = (
    "pull provisioning logs (incremental from the last run, minus a 2 h overlap), job status and "
    "assignment scope from Microsoft Graph"
)

log = logging.getLogger(__name__)
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
    from ingest import graph
    from ingest.graph.audits import AuditPull, pull_membership_changes

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
    store = ctx.store()
    bar = _Bar(ctx.progress)
    errors: list[ProvlensError] = []
    pulls: list[graph.LogPull] = []
    states: list[graph.StatePull] = []
    audits: list[AuditPull] = []

    async def main() -> None:
        client, http = graph.build_client(root, config)
        session = graph.GraphSession(
            client,
            config,
            base_url=f"{root}/{graph.API_VERSION}",
            on_progress=bar.update,
        )
        try:
            for sp in ids or [None]:
                try:
                    pulls.append(
                        await graph.pull_logs(
                            session, store, service_principal_id=sp, since=since, now=now
                        )
                    )
                except RemoteError as exc:
                    errors.append(exc)
            targets = ids
            if not targets:
                seen: set[str] = set()
                for p in pulls:
                    seen |= p.service_principals
                start = min((p.start for p in pulls), default=now - pd.Timedelta(days=30))
                seen |= set(graph.discover_service_principals(store, start))
                targets = sorted(seen)
            for sp in targets:
                try:
                    states.append(await graph.pull_state(session, store, sp, now))
                except graph.GraphHTTPError as exc:
                    if exc.status == 404:
                        log.warning(
                            "service principal %s was not found (deleted, or an Application "
                            "ID instead of the enterprise app's Object ID?); skipped its job "
                            "status and scope",
                            sp,
                        )
                        continue
                    errors.append(exc)
                except RemoteError as exc:
                    errors.append(exc)
            if states:
                # After the scope pulls: the assigned groups are what the audit is read for.
                try:
                    audits.append(
                        await pull_membership_changes(session, store, since=since, now=now)
                    )
                except RemoteError as exc:
                    errors.append(exc)
        finally:
            await http.aclose()

    try:
        graph.run(main)
    finally:
        bar.close()
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
    if errors:
        for more in errors[1:]:
            log.info("%s", more)  # one error line on stderr (DESIGN.md); -v shows the others
        extra = (
            f" (and {len(errors) - 1} more problem(s); run with -v to see them)"
            if len(errors) > 1
            else ""
        )
        raise RemoteError(f"{errors[0]}{extra}")
    return 0
