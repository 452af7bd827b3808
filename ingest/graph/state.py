"""Job status and scope pulls: synchronization jobs, app role assignments, group members."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from ingest import pipeline
from ingest.formats.graph_objects import (
    assignments_frame,
    group_members_frame,
    sync_jobs_frame,
)
from ingest.graph.client import (
    GraphSession,
    MalformedPage,
    query_config,
)
from ingest.membership import carry_first_seen
from ingest.pipeline import Commit, Frames, Item

if TYPE_CHECKING:
    from ingest.store import Store

log = logging.getLogger(__name__)
# --- job status and scope ------------------------------------------------------------------------


@dataclass
class StatePull:
    """What :func:`pull_state` stored for one service principal."""

    service_principal_id: str
    jobs: int = 0
    assignments: int = 0
    groups: int = 0
    members: int = 0


async def fetch_state(
    session: GraphSession, service_principal_id: str, captured_at: pd.Timestamp
) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """Return sync_jobs/assignments/group_members frames for one app and its assigned groups."""
    sp = service_principal_id
    base = session.base_url
    sp_builder = session.client.service_principals.by_service_principal_id(sp)
    jobs = await session.collect(
        sp_builder.synchronization.jobs,
        f"{base}/servicePrincipals/{sp}/synchronization/jobs",
        "jobs",
    )
    assigned_b = sp_builder.app_role_assigned_to
    assigned = await session.collect(
        assigned_b,
        f"{base}/servicePrincipals/{sp}/appRoleAssignedTo",
        "assignments",
        query=query_config(assigned_b, top=session.config.list_top),
    )
    try:
        assignments = assignments_frame(assigned, sp)
    except ValueError as exc:
        raise MalformedPage(
            f"Graph returned an app role assignment with {exc} for service principal {sp}; "
            "its scope was not stored"
        ) from None
    groups = sorted(
        {
            str(a["principalId"])
            for a in assigned
            if str(a.get("principalType", "")).lower() == "group"
        }
    )
    member_frames = []
    for gid in groups:
        # transitiveMembers gives everyone; members gives the direct list, which decides `direct`
        # exactly (DESIGN.md: nested members are not provisioned) in one more call per group.
        g_builder = session.client.groups.by_group_id(gid)
        transitive = await session.collect(
            g_builder.transitive_members,
            f"{base}/groups/{gid}/transitiveMembers",
            "members",
            query=query_config(g_builder.transitive_members, top=session.config.list_top),
        )
        direct = await session.collect(
            g_builder.members,
            f"{base}/groups/{gid}/members",
            "members",
            query=query_config(g_builder.members, top=session.config.list_top),
        )
        known = {gid: {str(m.get("id")) for m in direct}}
        member_frames.append(group_members_frame(gid, transitive + direct, known))
    try:
        frames = {"sync_jobs": sync_jobs_frame(jobs, sp, captured_at), "assignments": assignments}
    except ValueError as exc:
        raise MalformedPage(
            f"Graph returned a synchronization job with {exc} for service principal {sp}; "
            "its job status was not stored"
        ) from None
    if member_frames:
        frames["group_members"] = pd.concat(member_frames, ignore_index=True)
    return frames, groups


def state_items(
    service_principal_id: str, frames: dict[str, pd.DataFrame], groups: list[str]
) -> list[Item]:
    """Return one app's job status and scope as one commit's pipeline items.

    The app's stored assignments and its groups' stored members are replaced, even by none.
    """
    replace = {"assignments": [service_principal_id], "group_members": groups}
    return [Frames(frames, replace), Commit(f"jobs and scope {service_principal_id}")]


async def pull_state(
    session: GraphSession, store: Store, service_principal_id: str, captured_at: pd.Timestamp
) -> StatePull:
    """Pull one app's job status and scope and store them in one commit (through the pipeline)."""
    frames, groups = await fetch_state(session, service_principal_id, captured_at)
    if "group_members" in frames:
        stored = store.read("group_members") if store.exists() else None
        frames["group_members"] = carry_first_seen(frames["group_members"], stored, captured_at)
    pipeline.write(store, state_items(service_principal_id, frames, groups), source="graph")
    gm = frames.get("group_members")
    return StatePull(
        service_principal_id,
        jobs=len(frames["sync_jobs"]),
        assignments=len(frames["assignments"]),
        groups=len(groups),
        members=0 if gm is None else len(gm),
    )


def discover_service_principals(store: Store, since: pd.Timestamp) -> list[str]:
    """Return the service principals named by stored events since ``since``."""
    ev = store.read("events", columns=["service_principal_id"], since=since)
    return sorted(str(s) for s in ev["service_principal_id"].dropna().unique() if str(s))


def run(coro_factory: Callable[[], Any]) -> Any:
    """Run an async Graph job to completion (one event loop per CLI command)."""
    return asyncio.run(coro_factory())
