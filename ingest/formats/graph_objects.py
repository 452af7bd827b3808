"""Graph object payloads: synchronization jobs, app role assignments and group members.

The pure functions here turn the JSON Graph returns (``GET /servicePrincipals/{id}/
synchronization/jobs``, ``.../appRoleAssignedTo``, ``GET /groups/{id}/transitiveMembers`` and
``/members``) into the canonical ``sync_jobs``, ``assignments`` and ``group_members`` frames.
``ingest.graph`` calls them on live responses; the file formats registered at the bottom call them
on saved responses, so a file and a live pull of the same payload give the same rows.

What files cannot carry (DESIGN.md, "Source details"): a jobs list names its service principal only
in ``@odata.context``; a single job or a members list names nothing. The id then comes from
``--service-principal-id`` / ``--group-id`` or from an object id in the file name
(``jobs-<spId>.json``, ``members-<groupId>.json``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

from ingest.errors import BadInput
from ingest.formats import FileFormat, Frames, Options, Source, register
from ingest.schema import conform
from ingest.times import parse_time

log = logging.getLogger(__name__)

DEFAULT_ACCESS_ROLE_ID = "00000000-0000-0000-0000-000000000000"
# .NET TimeSpan.MaxValue (P10675199DT2H48M5.4775807S) marks a job that never runs by itself; treat
# anything of ten million days or more as "never" rather than overflowing pandas.
NEVER_DAYS = 10_000_000
_SENTINEL_PREFIX = "0001-01-01"
_GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_GUID_RE = re.compile(_GUID)
_SP_CONTEXT_RE = re.compile(r"servicePrincipals\('([^']+)'\)", re.IGNORECASE)
_GROUP_CONTEXT_RE = re.compile(r"groups\('([^']+)'\)", re.IGNORECASE)
_DURATION_RE = re.compile(
    r"^(?P<sign>-)?P(?:(?P<w>\d+)W)?(?:(?P<d>\d+)D)?"
    r"(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)


# --- small value helpers -------------------------------------------------------------------------


def graph_time(value: object) -> pd.Timestamp | None:
    """Return a UTC timestamp; None for null, empty and the ``0001-01-01`` sentinel.

    Raises ValueError naming the value when it is not an ISO 8601 time.
    """
    if value is None:
        return None
    text = str(value).strip()
    if not text or text.startswith(_SENTINEL_PREFIX):
        return None
    ts = parse_time(text)
    if ts is None:
        raise ValueError(f"a value that is not an ISO 8601 time ({text[:40]!r})")
    return ts


def duration_seconds(value: object) -> int | None:
    """Return an ISO 8601 duration (``PT40M``) in whole seconds; None for "never" or unreadable."""
    if value is None:
        return None
    text = str(value).strip()
    m = _DURATION_RE.match(text)
    if not m or text in ("P", "PT"):
        if text:
            log.warning("unrecognised schedule interval %r; stored as null", text)
        return None
    weeks = int(m["w"] or 0)
    days = int(m["d"] or 0) + 7 * weeks
    if days >= NEVER_DAYS:
        return None
    seconds = days * 86400 + int(m["h"] or 0) * 3600 + int(m["m"] or 0) * 60
    seconds += int(float(m["s"] or 0))
    return -seconds if m["sign"] else seconds


def _identity_type(odata_type: object, fallback: object = None) -> str:
    """Map ``#microsoft.graph.user`` / ``User`` to the canonical identity type."""
    raw = str(odata_type or fallback or "").lower().rsplit(".", 1)[-1].lstrip("#")
    if raw == "user":
        return "user"
    if raw == "group":
        return "group"
    return "other"


def _dig(obj: object, *path: str) -> Any:
    """Return ``obj[path[0]][path[1]]...`` or None when any level is missing or not a dict."""
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def _int(value: object) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None


def service_principal_from_context(context: object) -> str | None:
    """Return the service principal id named in an ``@odata.context`` URL, if any."""
    m = _SP_CONTEXT_RE.search(str(context or ""))
    return m.group(1) if m else None


def object_id_from_name(name: str) -> str | None:
    """Return the single object id (GUID) in a file's name, e.g. ``jobs-<spId>.json``."""
    found = _GUID_RE.findall(Path(name).name)
    return found[-1] if found else None


# --- canonical frames ----------------------------------------------------------------------------


def sync_jobs_frame(
    jobs: Iterable[Mapping[str, Any]], service_principal_id: str | None, captured_at: pd.Timestamp
) -> pd.DataFrame:
    """Return the ``sync_jobs`` snapshot rows for ``jobs`` (synchronizationJob objects)."""
    rows = []
    for job in jobs:
        status = job.get("status") or {}
        last = status.get("lastExecution") or {}
        quarantine = status.get("quarantine") or {}
        schedule = job.get("schedule") or {}
        rows.append(
            {
                "captured_at": captured_at,
                "service_principal_id": service_principal_id,
                "job_id": job.get("id"),
                "template_id": job.get("templateId"),
                "status_code": status.get("code") or None,
                "schedule_state": schedule.get("state") or None,
                "schedule_interval_s": duration_seconds(schedule.get("interval")),
                "last_execution_state": last.get("state") or None,
                "last_execution_began": graph_time(last.get("timeBegan")),
                "last_execution_ended": graph_time(last.get("timeEnded")),
                "last_execution_activity_id": last.get("activityIdentifier") or None,
                "count_entitled": _int(last.get("countEntitled")),
                "count_escrowed": _int(last.get("countEscrowed")),
                "count_exported": _int(last.get("countExported")),
                "count_imported": _int(last.get("countImported")),
                "quarantine_reason": quarantine.get("reason") or None,
                "quarantine_began": graph_time(quarantine.get("currentBegan")),
                "quarantine_next_attempt": graph_time(quarantine.get("nextAttempt")),
                "quarantine_series_count": _int(quarantine.get("seriesCount")),
                "steady_state_first_at": graph_time(status.get("steadyStateFirstAchievedTime")),
                "steady_state_last_at": graph_time(status.get("steadyStateLastAchievedTime")),
            }
        )
    return conform("sync_jobs", pd.DataFrame(rows))


def assignments_frame(
    items: Iterable[Mapping[str, Any]], service_principal_id: str | None = None
) -> pd.DataFrame:
    """Return ``assignments`` rows for appRoleAssignment objects (``resourceId`` = the app)."""
    rows = []
    for item in items:
        role = str(item.get("appRoleId") or DEFAULT_ACCESS_ROLE_ID)
        rows.append(
            {
                "service_principal_id": service_principal_id or item.get("resourceId"),
                "principal_id": item.get("principalId"),
                "principal_type": _identity_type(item.get("principalType")),
                "principal_name": item.get("principalDisplayName"),
                "app_role_id": role,
                "default_access": role.strip("{}").lower() == DEFAULT_ACCESS_ROLE_ID,
                "created_at": graph_time(item.get("createdDateTime")),
            }
        )
    return conform("assignments", pd.DataFrame(rows))


def direct_flags(
    group_id: str,
    transitive: Iterable[Mapping[str, Any]],
    known_members: Mapping[str, set[str]],
) -> dict[str, bool]:
    """Return ``{member_id: direct}`` for a group's transitive members.

    DESIGN.md's rule: a transitive member is direct unless it is reachable only through a nested
    group whose own members are known. When the group's own direct member list is known
    (``known_members[group_id]``) that list decides exactly; otherwise a member is nested when it
    appears in a known member list of a group nested in this one.
    """
    items = list(transitive)
    if group_id in known_members:
        direct_ids = known_members[group_id]
        return {str(i.get("id")): str(i.get("id")) in direct_ids for i in items}
    via_nested: set[str] = set()
    for i in items:
        gid = str(i.get("id"))
        if _identity_type(i.get("@odata.type")) == "group" and gid in known_members:
            via_nested |= known_members[gid]
    return {str(i.get("id")): str(i.get("id")) not in via_nested for i in items}


def group_members_frame(
    group_id: str,
    transitive: Iterable[Mapping[str, Any]],
    known_members: Mapping[str, set[str]] | None = None,
) -> pd.DataFrame:
    """Return ``group_members`` rows for a group's transitive members (see :func:`direct_flags`)."""
    items = [i for i in transitive if i.get("id")]
    flags = direct_flags(group_id, items, known_members or {})
    rows = []
    seen: set[str] = set()
    for item in items:
        mid = str(item["id"])
        if mid in seen:  # a member reachable by two paths is listed once
            continue
        seen.add(mid)
        rows.append(
            {
                "group_id": group_id,
                "member_id": mid,
                "member_type": _identity_type(item.get("@odata.type")),
                "member_upn": item.get("userPrincipalName"),
                "member_name": item.get("displayName"),
                "direct": flags[mid],
            }
        )
    return conform("group_members", pd.DataFrame(rows))


# --- file formats --------------------------------------------------------------------------------

_JOB_KEYS = ('"templateId"', '"schedule"')
_ASSIGNMENT_KEYS = ('"appRoleId"', '"principalId"')
_MEMBER_TYPES = (
    '"#microsoft.graph.user"',
    '"#microsoft.graph.group"',
    '"#microsoft.graph.device"',
    '"#microsoft.graph.orgContact"',
    '"#microsoft.graph.servicePrincipal"',
)


def _load(source: Source) -> Any:
    try:
        return orjson.loads(source.text())
    except orjson.JSONDecodeError as exc:
        text = source.text()
        pos = getattr(exc, "pos", None) or 0
        line = text.count("\n", 0, pos) + 1
        raise BadInput(
            f"{source.name}:{line}", f"not valid JSON ({exc})", "nothing was stored"
        ) from None


def _pages(doc: Any) -> list[Mapping[str, Any]]:
    """Return the Graph pages in ``doc``: one response object or a JSON array of them."""
    if isinstance(doc, Mapping):
        return [doc]
    if isinstance(doc, list) and doc and all(isinstance(p, Mapping) and "value" in p for p in doc):
        return list(doc)
    return []


def _items(source: Source, doc: Any, what: str) -> tuple[list[Mapping[str, Any]], str | None]:
    """Return the items of a list response (or paged dump) and the first ``@odata.context``."""
    pages = _pages(doc)
    if isinstance(doc, list) and not pages:
        items = doc  # a bare JSON array of objects
        context = None
    else:
        items, context = [], None
        for n, page in enumerate(pages, start=1):
            value = page.get("value")
            if not isinstance(value, list):
                raise BadInput(
                    f"{source.name}:page {n}",
                    f"a {what} list needs a 'value' array",
                    "nothing was stored",
                )
            items.extend(value)
            context = context or page.get("@odata.context")
    for n, item in enumerate(items, start=1):
        if not isinstance(item, Mapping):
            raise BadInput(
                f"{source.name}:record {n}", f"a {what} must be a JSON object", "nothing was stored"
            )
    return items, context


def _captured_at(source: Source, options: Options) -> pd.Timestamp:
    if options.captured_at is not None:
        return options.captured_at
    mtime = source.path.stat().st_mtime
    return pd.Timestamp(datetime.fromtimestamp(mtime, tz=UTC))


def _need_id(source: Source, value: str | None, option: str, what: str) -> str:
    if value:
        return value
    raise BadInput(
        f"{source.name}:1",
        f"the file does not say which {what} it belongs to",
        f"pass {option} ID (or put the object id in the file name); nothing was stored",
    )


def _head_has(source: Source, *needles: str) -> bool:
    head = source.head()
    return all(n in head for n in needles)


def _sniff_jobs(source: Source) -> bool:
    head = source.head().lstrip()
    if not head.startswith(("{", "[")) or '"activityDateTime"' in head:
        return False
    return "synchronization/jobs" in head or _head_has(source, *_JOB_KEYS)


def _parse_jobs(source: Source, options: Options) -> Iterator[Frames]:
    doc = _load(source)
    if isinstance(doc, Mapping) and "value" not in doc:
        if "id" not in doc or "templateId" not in doc:
            raise BadInput(
                f"{source.name}:1",
                "not a synchronization job (no 'id' and 'templateId')",
                "nothing was stored",
            )
        jobs, context = [doc], doc.get("@odata.context")
    else:
        jobs, context = _items(source, doc, "synchronization job")
    sp = (
        service_principal_from_context(context)
        or options.service_principal_id
        or object_id_from_name(source.name)
    )
    sp = _need_id(source, sp, "--service-principal-id", "service principal")
    for n, job in enumerate(jobs, start=1):
        if not job.get("id"):
            raise BadInput(f"{source.name}:record {n}", "a job without 'id'", "nothing was stored")
    try:
        frame = sync_jobs_frame(jobs, sp, _captured_at(source, options))
    except ValueError as exc:
        raise BadInput(
            f"{source.name}:1", f"a synchronization job has {exc}", "nothing was stored"
        ) from None
    yield {"sync_jobs": frame}


def _sniff_assignments(source: Source) -> bool:
    head = source.head().lstrip()
    if not head.startswith(("{", "[")) or '"activityDateTime"' in head:
        return False
    return "appRoleAssignedTo" in head or _head_has(source, *_ASSIGNMENT_KEYS)


def _parse_assignments(source: Source, options: Options) -> Iterator[Frames]:
    doc = _load(source)
    items, context = _items(source, doc, "app role assignment")
    sp = service_principal_from_context(context) or options.service_principal_id
    every_item_named = bool(items) and all(i.get("resourceId") for i in items)
    if not sp and not every_item_named:
        # Each appRoleAssignment names its app in resourceId; only without it is an id needed.
        sp = _need_id(
            source, object_id_from_name(source.name), "--service-principal-id", "service principal"
        )
    for n, item in enumerate(items, start=1):
        if not item.get("principalId"):
            raise BadInput(
                f"{source.name}:record {n}",
                "an assignment without 'principalId'",
                "nothing was stored",
            )
    try:
        frame = assignments_frame(items, sp)
    except ValueError as exc:
        raise BadInput(
            f"{source.name}:1", f"an assignment has {exc}", "nothing was stored"
        ) from None
    yield {"assignments": frame}


def _sniff_members(source: Source) -> bool:
    head = source.head()
    if not head.lstrip().startswith(("{", "[")) or '"activityDateTime"' in head:
        return False
    if "appRoleId" in head or '"templateId"' in head:
        return False
    return "$metadata#directoryObjects" in head or any(t in head for t in _MEMBER_TYPES)


def _parse_members(source: Source, options: Options) -> Iterator[Frames]:
    doc = _load(source)
    items, context = _items(source, doc, "group member")
    m = _GROUP_CONTEXT_RE.search(str(context or ""))
    gid = (m.group(1) if m else None) or options.group_id or object_id_from_name(source.name)
    gid = _need_id(source, gid, "--group-id", "group")
    for n, item in enumerate(items, start=1):
        if not item.get("id"):
            raise BadInput(
                f"{source.name}:record {n}", "a member without 'id'", "nothing was stored"
            )
    # A single file holds one list: without the nested groups' own lists every member is direct.
    yield {"group_members": group_members_frame(gid, items)}


register(
    FileFormat(
        kind="sync_jobs",
        description="Graph synchronization jobs (list response or a single job object)",
        sniff=_sniff_jobs,
        parse=_parse_jobs,
        priority=20,
        tables=("sync_jobs",),
    )
)
register(
    FileFormat(
        kind="assignments",
        description="Graph appRoleAssignedTo list of an enterprise app",
        sniff=_sniff_assignments,
        parse=_parse_assignments,
        priority=21,
        tables=("assignments",),
    )
)
register(
    FileFormat(
        kind="group_members",
        description="Graph group members / transitiveMembers list",
        sniff=_sniff_members,
        parse=_parse_members,
        priority=22,
        tables=("group_members",),
    )
)
