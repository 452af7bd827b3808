"""Directory audit pulls: when members joined or left the assigned groups (``membership_changes``).

``GET /auditLogs/directoryAudits`` is a reporting endpoint: it shares the 5 requests / 10 s pacer
of the provisioning logs and needs the same AuditLog.Read.All. One paged query per activity
("Add member to group", "Remove member from group"), filtered server-side on
``activityDateTime`` (``ge``/``le``, the operators Graph documents for this resource) and
``activityDisplayName eq``. Records are converted by the file format's parser
(:mod:`ingest.formats.directory_audit`), so a downloaded list and a live pull give the same rows.

Only changes of groups assigned to an app (per the stored assignments, pulled just before) are
kept. The watermark ``graph-audit:membership`` moves to the end of the window only when every
query finished; the next run re-reads from it minus the overlap, and the store keeps each
``audit_id`` once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from ingest import pipeline
from ingest.errors import BadInput
from ingest.formats.directory_audit import ADD, REMOVE, membership_changes_frame
from ingest.graph.client import GraphSession, MalformedPage, query_config

if TYPE_CHECKING:
    from ingest.store import Store

log = logging.getLogger(__name__)

WATERMARK_KEY = "graph-audit:membership"


def _odata_time(ts: pd.Timestamp) -> str:
    return ts.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def audit_filter(activity: str, start: pd.Timestamp, end: pd.Timestamp) -> str:
    """Return the ``$filter`` for one activity's records in ``[start, end]``."""
    quoted = activity.replace("'", "''")
    return (
        f"activityDateTime ge {_odata_time(start)} and activityDateTime le {_odata_time(end)} "
        f"and activityDisplayName eq '{quoted}'"
    )


def assigned_groups(store: Store) -> set[str]:
    """Return the ids of groups assigned to any app, from the stored assignments."""
    if not store.exists():
        return set()
    a = store.read("assignments", ["principal_id", "principal_type"])
    return {str(g) for g in a.loc[a["principal_type"] == "group", "principal_id"].dropna()}


def _locator(url: str) -> Callable[[int], str]:
    return lambda i: f"GET {url} record {i + 1}"


@dataclass
class AuditPull:
    """What :func:`pull_membership_changes` did."""

    start: pd.Timestamp
    end: pd.Timestamp
    records: int = 0
    pages: int = 0
    stored: int = 0
    groups: int = 0
    watermark: pd.Timestamp | None = None


async def pull_membership_changes(
    session: GraphSession,
    store: Store,
    *,
    since: pd.Timestamp | None,
    now: pd.Timestamp,
    groups: set[str] | None = None,
) -> AuditPull:
    """Pull the assigned groups' membership changes into the store in one batch."""
    c = session.config
    mark = store.watermark(WATERMARK_KEY)
    if since is not None:
        start = since
    elif mark is not None:
        start = mark - c.overlap
    else:
        start = now - pd.Timedelta(days=c.default_days)
    wanted = assigned_groups(store) if groups is None else set(groups)
    result = AuditPull(start, now, groups=len(wanted))
    if not wanted:
        log.info("no assigned groups stored: no directory audit to read")
        return result
    builder = session.client.audit_logs.directory_audits
    frames: list[pd.DataFrame] = []
    for activity in (ADD, REMOVE):
        expr = audit_filter(activity, start, now)
        query = query_config(builder, filter=expr, top=c.top)
        url = f"{session.base_url}/auditLogs/directoryAudits?$filter={expr}&$top={c.top}"
        async for page_url, items in session.pages(builder, url, "logs", paced=True, query=query):
            result.pages += 1
            result.records += len(items)
            session.stats.records += len(items)
            session.progress()
            try:
                frame = membership_changes_frame(items, _locator(page_url))
            except BadInput as exc:
                raise MalformedPage(
                    f"Graph returned a directory audit record provlens cannot read ({exc}); "
                    "no membership change was stored"
                ) from None
            frames.append(frame.loc[frame["group_id"].isin(wanted)])
    kept = pd.concat(frames, ignore_index=True) if frames else None
    # A --since later than the watermark leaves a gap before it: the watermark stays.
    advance = mark is None or start <= mark
    commit_items: list[pipeline.Item] = []
    if kept is not None and len(kept):
        commit_items.append(pipeline.Frames({"membership_changes": kept}))
    commit_items.append(
        pipeline.Commit(
            "directory audit: group membership",
            {WATERMARK_KEY: now} if advance else {},
        )
    )
    pipeline.write(store, commit_items, source="graph")
    result.watermark = now if advance else mark
    result.stored = 0 if kept is None else len(kept)
    return result
