"""Entra directory audit records (``GET /auditLogs/directoryAudits``) -> ``membership_changes``.

Only the two activities that say when someone joined or left a group are kept: "Add member to
group" and "Remove member from group" (category GroupManagement). In those records the first
target resource is the member (``type`` User, Group, ...; ``userPrincipalName`` for users) and
carries the group in its modified properties: ``Group.ObjectID`` and ``Group.DisplayName``, JSON
string literals (``"\\"<guid>\\""``) in ``newValue`` for an add, ``oldValue`` for a remove. A
second target resource of type Group, when present, names the group too and is the fallback.

The same parser reads a Graph list response (one object, a JSON array of pages, or a bare array
of records) and a page the live pull received (:mod:`ingest.graph.audits`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import orjson
import pandas as pd

from ingest.errors import BadInput
from ingest.formats import FileFormat, Frames, Options, Source, register
from ingest.formats.graph_objects import _items, _load
from ingest.schema import conform

ADD = "Add member to group"
REMOVE = "Remove member from group"
ACTIVITIES: dict[str, str] = {ADD.lower(): "added", REMOVE.lower(): "removed"}
_TYPES = {"user": "user", "group": "group"}


def _unquote(value: Any) -> str | None:
    """Return a modified property's value: JSON string literals (``"\\"x\\""``) unwrapped."""
    if value is None:
        return None
    text = str(value).strip()
    if text.startswith('"') or text.startswith("["):
        try:
            decoded = orjson.loads(text)
        except orjson.JSONDecodeError:
            return text.strip('"') or None
        if isinstance(decoded, list):
            decoded = decoded[0] if decoded else None
        return None if decoded in (None, "") else str(decoded)
    return text or None


def _prop(resource: Mapping[str, Any], name: str, change: str) -> str | None:
    """Return the value of modified property ``name`` (``Group.ObjectID`` ...) for the change."""
    for prop in resource.get("modifiedProperties") or ():
        if isinstance(prop, Mapping) and str(prop.get("displayName", "")).lower() == name.lower():
            first, second = (
                ("newValue", "oldValue") if change == "added" else ("oldValue", "newValue")
            )
            return _unquote(prop.get(first)) or _unquote(prop.get(second))
    return None


def _initiator(record: Mapping[str, Any]) -> str | None:
    by = record.get("initiatedBy") or {}
    user = by.get("user") or {}
    app = by.get("app") or {}
    return (
        user.get("userPrincipalName")
        or user.get("displayName")
        or app.get("displayName")
        or user.get("id")
        or app.get("servicePrincipalId")
        or app.get("appId")
    )


def is_membership_change(record: Mapping[str, Any]) -> bool:
    """Return True for an "Add member to group" / "Remove member from group" record."""
    return str(record.get("activityDisplayName", "")).strip().lower() in ACTIVITIES


def membership_changes_frame(
    records: Iterable[Mapping[str, Any]],
    locate: Callable[[int], str] = lambda i: f"record {i + 1}",
) -> pd.DataFrame:
    """Return ``membership_changes`` rows for the membership records among ``records``.

    Other activities are skipped. A membership record without an id, a time, a member or a
    group raises BadInput at ``locate(i)``.
    """
    rows = []
    for i, rec in enumerate(records):
        if not isinstance(rec, Mapping):
            raise BadInput(
                locate(i), "a directory audit record must be a JSON object", "nothing was stored"
            )
        if not is_membership_change(rec):
            continue
        change = ACTIVITIES[str(rec["activityDisplayName"]).strip().lower()]
        targets = [t for t in rec.get("targetResources") or () if isinstance(t, Mapping)]
        member = next((t for t in targets if str(t.get("type", "")).lower() != "group"), None)
        if member is None and len(targets) >= 2:
            member = targets[0]  # a group added to a group: the member comes first
        group = next(
            (t for t in targets if t is not member and str(t.get("type", "")).lower() == "group"),
            None,
        )
        group_id = None
        group_name = None
        if member is not None:
            group_id = _prop(member, "Group.ObjectID", change)
            group_name = _prop(member, "Group.DisplayName", change)
        if group is not None:
            group_id = group_id or group.get("id")
            group_name = group_name or group.get("displayName")
        missing = [
            what
            for what, value in (
                ("id", rec.get("id")),
                ("activityDateTime", rec.get("activityDateTime")),
                ("a member in targetResources", member and member.get("id")),
                ("the group (Group.ObjectID)", group_id),
            )
            if not value
        ]
        if missing:
            raise BadInput(
                locate(i),
                f"a {rec['activityDisplayName']!r} record without {', '.join(missing)}",
                "nothing was stored",
            )
        assert member is not None
        result = rec.get("result")
        rows.append(
            {
                "audit_id": str(rec["id"]),
                "changed_at": rec["activityDateTime"],
                "group_id": str(group_id),
                "group_name": group_name,
                "member_id": str(member["id"]),
                "member_type": _TYPES.get(str(member.get("type", "")).lower(), "other"),
                "member_upn": member.get("userPrincipalName") or None,
                "change": change,
                "result": None if result is None else str(result).lower(),
                "initiated_by": _initiator(rec),
            }
        )
    try:
        return conform("membership_changes", pd.DataFrame(rows))
    except (ValueError, TypeError) as exc:
        raise BadInput(
            locate(0), f"a directory audit time is not ISO 8601 ({exc})", "nothing was stored"
        ) from None


_HINT = re.compile(r'"activityDisplayName"\s*:')


def _sniff(source: Source) -> bool:
    head = source.head()
    if not head.lstrip().startswith(("{", "[")):
        return False
    if "auditLogs/directoryAudits" in head:  # a list response, even an empty one
        return True
    return bool(_HINT.search(head)) and '"targetResources"' in head


def _parse(source: Source, options: Options) -> Iterator[Frames]:
    doc = _load(source)
    items, _ = _items(source, doc, "directory audit record")
    frame = membership_changes_frame(items, lambda i: f"{source.name}:record {i + 1}")
    yield {"membership_changes": frame}


register(
    FileFormat(
        kind="directory_audit",
        description="Graph directoryAudits list (group membership changes)",
        sniff=_sniff,
        parse=_parse,
        priority=18,
        tables=("membership_changes",),
    )
)
