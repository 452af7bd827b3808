"""`ingest graph` end to end: logs for each app (or all), then each app's job status and scope.

The orchestration behind the CLI command (which only parses arguments and prints): builds the
client and session, runs :class:`~ingest.graph.logs.LogSource` and the state pulls through the one
pipeline (:mod:`ingest.pipeline`), and collects what each did. A source that cannot be reached at
all (:class:`~ingest.net.Unreachable`) stops everything at once; other failures of one app are
collected so the rest still run, and :meth:`GraphIngest.error` joins them into one line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd

from ingest.errors import ProvlensError, RemoteError
from ingest.graph.audits import AuditPull, pull_membership_changes
from ingest.graph.client import (
    API_VERSION,
    GraphHTTPError,
    GraphSession,
    PullConfig,
    Stats,
    build_client,
)
from ingest.graph.logs import LogPull, pull_logs
from ingest.graph.state import StatePull, discover_service_principals, pull_state, run
from ingest.net import Unreachable

if TYPE_CHECKING:
    from ingest.store import Store

log = logging.getLogger(__name__)


@dataclass
class GraphIngest:
    """What one `ingest graph` run did: log pulls, state pulls, and the problems met."""

    root: str
    pulls: list[LogPull] = field(default_factory=list)
    states: list[StatePull] = field(default_factory=list)
    audits: list[AuditPull] = field(default_factory=list)
    errors: list[ProvlensError] = field(default_factory=list)

    def error(self) -> RemoteError | None:
        """Return the first problem as one line (naming how many more), or None."""
        if not self.errors:
            return None
        for more in self.errors[1:]:
            log.info("%s", more)  # one error line on stderr (DESIGN.md); -v shows the others
        extra = (
            f" (and {len(self.errors) - 1} more problem(s); run with -v to see them)"
            if len(self.errors) > 1
            else ""
        )
        return RemoteError(f"{self.errors[0]}{extra}")


async def ingest_graph_async(
    session: GraphSession,
    store: Store,
    *,
    service_principal_ids: list[str],
    since: pd.Timestamp | None,
    now: pd.Timestamp,
    out: GraphIngest,
) -> GraphIngest:
    """Pull logs for each app (or all apps), then job status and scope of each app, then the
    assigned groups' membership changes from the directory audit; fill ``out``."""
    apps: list[str | None] = [*service_principal_ids] or [None]  # None: all apps
    for app in apps:
        try:
            out.pulls.append(
                await pull_logs(session, store, service_principal_id=app, since=since, now=now)
            )
        except Unreachable:
            raise  # nothing else can work either: one line, exit 4
        except RemoteError as exc:
            out.errors.append(exc)
    targets = service_principal_ids
    if not targets:
        seen: set[str] = set()
        for p in out.pulls:
            seen |= p.service_principals
        start = min((p.start for p in out.pulls), default=now - pd.Timedelta(days=30))
        seen |= set(discover_service_principals(store, start))
        targets = sorted(seen)
    for sp in targets:
        try:
            out.states.append(await pull_state(session, store, sp, now))
        except GraphHTTPError as exc:
            if exc.status == 404:
                log.warning(
                    "service principal %s was not found (deleted, or an Application ID instead "
                    "of the enterprise app's Object ID?); skipped its job status and scope",
                    sp,
                )
                continue
            out.errors.append(exc)
        except Unreachable:
            raise
        except RemoteError as exc:
            out.errors.append(exc)
    if out.states:
        # After the scope pulls: the assigned groups are what the audit is read for.
        try:
            out.audits.append(await pull_membership_changes(session, store, since=since, now=now))
        except Unreachable:
            raise
        except RemoteError as exc:
            out.errors.append(exc)
    return out


def ingest_graph(
    store: Store,
    root: str,
    config: PullConfig,
    *,
    service_principal_ids: list[str],
    since: pd.Timestamp | None,
    now: pd.Timestamp,
    on_progress: Callable[[Stats], None] | None = None,
) -> GraphIngest:
    """Run a whole Graph ingest against ``root``; raise only what stops everything."""
    out = GraphIngest(root)

    async def main() -> None:
        client, http = build_client(root, config)
        session = GraphSession(
            client, config, base_url=f"{root}/{API_VERSION}", on_progress=on_progress
        )
        try:
            await ingest_graph_async(
                session,
                store,
                service_principal_ids=service_principal_ids,
                since=since,
                now=now,
                out=out,
            )
        finally:
            await http.aclose()

    run(main)
    return out
