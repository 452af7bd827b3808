"""Build small canonical frames for tests: a row is a dict of the columns you care about."""

from __future__ import annotations

from typing import Any

import pandas as pd

from ingest.schema import conform
from reports import Inputs


def ts(value: str) -> pd.Timestamp:
    """Return an ISO time as a UTC timestamp at the schema's resolution."""
    return (
        pd.Timestamp(value).tz_convert("UTC")
        if "Z" in value or "+" in value
        else pd.Timestamp(value, tz="UTC")
    )


def frame(table: str, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Return a conformed canonical frame of ``table`` from ``rows`` (missing columns are null)."""
    return conform(table, pd.DataFrame(rows))


def events(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Return an events frame; ids default to e1.., action create, status success, origin file."""
    full = []
    for i, row in enumerate(rows, start=1):
        r = {"id": f"e{i}", "action": "create", "status": "success", "origin": "file"}
        r.update(row)
        full.append(r)
    return frame("events", full)


def steps(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Return a steps frame; step_type defaults to unknown, status to success."""
    full = [{"step_type": "unknown", "status": "success", "position": 0, **r} for r in rows]
    return frame("steps", full)


def modified_properties(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Return a modified_properties frame."""
    return frame("modified_properties", rows)


def inputs(**tables: pd.DataFrame | list[dict[str, Any]]) -> Inputs:
    """Return Inputs; each table may be a frame or a list of row dicts (events get defaults)."""
    built: dict[str, pd.DataFrame | None] = {}
    for name, value in tables.items():
        if isinstance(value, pd.DataFrame):
            built[name] = value
        elif name == "events":
            built[name] = events(value)
        elif name == "steps":
            built[name] = steps(value)
        else:
            built[name] = frame(name, value)
    return Inputs.from_tables(built)


# --- a small tenant used by the report tests -------------------------------------------------
#
# sp1 runs two jobs. j1's first cycle c1 spans midnight and is the initial one; j2's cycle d1
# overlaps it. u2 fails in c1 and succeeds in c2. u3 is only in a nested group; u5 and u6 have
# Default Access (directly, and through group g2); u8 is in scope but never evaluated; ghost is
# in the wiki only; u7 is out of scope but still active in the wiki. e3 (NotEffectivelyEntitled)
# and e7 (no-op accountDisabled) are noise.

SP = "sp1"
J1 = "scim.j1"
J2 = "scim.j2"
ROLE = "11111111-1111-1111-1111-111111111111"
DEFAULT_ROLE = "00000000-0000-0000-0000-000000000000"
DOMAIN = "contoso.example"


def _ev(
    i: int,
    at: str,
    job: str,
    cycle: str,
    user: str,
    upn: str | None,
    action: str,
    status: str,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "id": f"e{i}",
        "activity_at": at,
        "job_id": job,
        "cycle_id": cycle,
        "change_id": f"ch{i}",
        "service_principal_id": SP,
        "source_id": user,
        "source_upn": f"{upn}@{DOMAIN}" if upn else None,
        "source_type": "user",
        "action": action,
        "status": status,
        **extra,
    }


def world_events() -> pd.DataFrame:
    """Return the sample tenant's ten events."""
    return events(
        [
            _ev(
                1,
                "2026-11-19T23:50:00Z",
                J1,
                "c1",
                "u1",
                "ada",
                "create",
                "success",
                target_id="w1",
                source_name="Ada",
            ),
            _ev(
                2,
                "2026-11-20T00:00:00Z",
                J1,
                "c1",
                "u2",
                "bo",
                "create",
                "failure",
                error_code="TheOrgWikiEntryConflict",
                error_category="non_service_failure",
                error_reason="userName already exists",
            ),
            _ev(
                3,
                "2026-11-20T00:20:00Z",
                J1,
                "c1",
                "u3",
                "cy",
                "create",
                "skipped",
                skip_reason="NotEffectivelyEntitled",
            ),
            _ev(4, "2026-11-20T00:05:00Z", J2, "d1", "u1", "ada", "update", "success"),
            _ev(5, "2026-11-20T00:15:00Z", J2, "d1", "u4", "hal", "create", "warning"),
            _ev(
                6, "2026-11-20T01:00:00Z", J1, "c2", "u2", "bo", "create", "success", target_id="w2"
            ),
            _ev(7, "2026-11-20T01:05:00Z", J1, "c2", "u7", "ivy", "update", "success"),
            _ev(
                8,
                "2026-11-20T01:08:00Z",
                J1,
                "c2",
                "u9",
                "jo",
                "create",
                "failure",
                error_code="TheOrgWikiMandatoryFieldsMissing",
                error_category="non_service_failure",
            ),
            _ev(
                9,
                "2026-11-20T01:09:00Z",
                J1,
                "c2",
                "u10",
                "kim",
                "create",
                "skipped",
                skip_reason="ExportSkipped",
            ),
            _ev(10, "2026-11-20T01:10:00Z", J1, "c2", "u1", "ada", "update", "success"),
        ]
    )


def world() -> Inputs:
    """Return the sample tenant as Inputs (see the comment above for what it contains)."""
    user = "user"
    return inputs(
        events=world_events(),
        steps=[
            {"event_id": "e2", "position": 0, "name": "EntryImportAdd", "step_type": "import"},
            {
                "event_id": "e2",
                "position": 1,
                "name": "EntryExportAdd",
                "step_type": "export",
                "status": "failure",
                "description": "409 Conflict",
            },
        ],
        modified_properties=[
            {"event_id": "e7", "name": "accountDisabled", "old_value": None, "new_value": "False"},
            {"event_id": "e10", "name": "displayName", "old_value": "Ada", "new_value": "Ada L"},
        ],
        sync_jobs=[
            {
                "captured_at": "2026-11-20T00:40:00Z",
                "service_principal_id": SP,
                "job_id": J1,
                "schedule_interval_s": 2400,
                "last_execution_began": "2026-11-19T23:50:00Z",
                "last_execution_ended": "2026-11-20T00:20:00Z",
                "status_code": "Active",
                "steady_state_first_at": "2026-11-20T00:30:00Z",
            },
            {
                "captured_at": "2026-11-20T00:40:00Z",
                "service_principal_id": SP,
                "job_id": J2,
                "status_code": "Active",
                "steady_state_first_at": "2026-11-01T00:00:00Z",
            },
        ],
        assignments=[
            {
                "service_principal_id": SP,
                "principal_id": "u1",
                "principal_type": user,
                "principal_name": "Ada",
                "app_role_id": ROLE,
                "default_access": False,
            },
            {
                "service_principal_id": SP,
                "principal_id": "u5",
                "principal_type": user,
                "principal_name": "Eve",
                "app_role_id": DEFAULT_ROLE,
                "default_access": True,
            },
            {
                "service_principal_id": SP,
                "principal_id": "u9",
                "principal_type": user,
                "principal_name": "Jo",
                "app_role_id": ROLE,
                "default_access": False,
            },
            {
                "service_principal_id": SP,
                "principal_id": "g1",
                "principal_type": "group",
                "principal_name": "Wiki users",
                "app_role_id": ROLE,
                "default_access": False,
            },
            {
                "service_principal_id": SP,
                "principal_id": "g2",
                "principal_type": "group",
                "principal_name": "All staff",
                "app_role_id": DEFAULT_ROLE,
                "default_access": True,
            },
        ],
        group_members=[
            {
                "group_id": "g1",
                "member_id": "u2",
                "member_type": user,
                "member_upn": f"bo@{DOMAIN}",
                "direct": True,
            },
            {
                "group_id": "g1",
                "member_id": "u3",
                "member_type": user,
                "member_upn": f"cy@{DOMAIN}",
                "direct": False,
            },
            {
                "group_id": "g1",
                "member_id": "u8",
                "member_type": user,
                "member_upn": f"dee@{DOMAIN}",
                "direct": True,
            },
            {
                "group_id": "g1",
                "member_id": "u10",
                "member_type": user,
                "member_upn": f"kim@{DOMAIN}",
                "direct": True,
            },
            {"group_id": "g1", "member_id": "g3", "member_type": "group", "direct": True},
            {
                "group_id": "g2",
                "member_id": "u6",
                "member_type": user,
                "member_upn": f"fay@{DOMAIN}",
                "direct": True,
            },
        ],
        scim_resources=[
            {
                "captured_at": "2026-11-20T02:00:00Z",
                "resource_type": "User",
                "id": "w1",
                "external_id": "u1",
                "user_name": f"ada@{DOMAIN}",
                "active": False,
            },
            {
                "captured_at": "2026-11-20T02:00:00Z",
                "resource_type": "User",
                "id": "w2",
                "user_name": f"BO@{DOMAIN}",
                "active": True,
            },
            {
                "captured_at": "2026-11-20T02:00:00Z",
                "resource_type": "User",
                "id": "w4",
                "external_id": "u4",
                "user_name": f"hal@{DOMAIN}",
                "active": False,
            },
            {
                "captured_at": "2026-11-20T02:00:00Z",
                "resource_type": "User",
                "id": "w7",
                "external_id": "u7",
                "user_name": f"ivy@{DOMAIN}",
                "active": True,
            },
            {
                "captured_at": "2026-11-20T02:00:00Z",
                "resource_type": "User",
                "id": "w9",
                "user_name": f"ghost@{DOMAIN}",
                "display_name": "Ghost",
                "active": True,
            },
            {
                "captured_at": "2026-11-19T00:00:00Z",
                "resource_type": "User",
                "id": "w8",
                "external_id": "u8",
                "user_name": f"dee@{DOMAIN}",
                "active": True,
            },
        ],
        scim_requests=[
            {
                "request_id": "r1",
                "received_at": "2026-11-20T00:00:01Z",
                "method": "POST",
                "user_name": f"bo@{DOMAIN}",
                "status_code": 409,
                "scim_type": "uniqueness",
            },
        ],
    )
