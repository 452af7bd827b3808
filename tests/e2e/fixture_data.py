"""A small, fully known tenant written into a real store: shared by AppTest and e2e tests.

One app (service principal) with one job and three cycles (an initial one, two incremental),
eight users (two with hostile display names that must render literally), failures with two error
codes, an out-of-scope skip (noise), job status, assignments, group members, the wiki's users
and its SCIM request log (with 429s).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ingest.store import Store

SP = "11111111-0000-0000-0000-00000000aaaa"
SP_NAME = "TheOrgWiki"
JOB = "scim.aaaa.bbbb"
GROUP = "22222222-0000-0000-0000-00000000gggg"
ROLE = "33333333-0000-0000-0000-00000000rrrr"
DEFAULT_ROLE = "00000000-0000-0000-0000-000000000000"
XSS_NAME = "<img src=x onerror=alert(1)>"
BOLD_NAME = "**bold**"
NOW = "2026-11-21T09:00:00Z"

# (key, display name, upn)
USERS = [
    ("u1", "Ada Lovelace", "ada@contoso.com"),
    ("u2", "Grace Hopper", "grace@contoso.com"),
    ("u3", XSS_NAME, "xss@contoso.com"),
    ("u4", BOLD_NAME, "bold@contoso.com"),
    ("u5", "Alan Turing", "alan@contoso.com"),
    ("u6", "Katherine Johnson", "katherine@contoso.com"),
    ("u7", "Out Of Scope", "oos@contoso.com"),
    ("u8", "Edsger Dijkstra", "edsger@contoso.com"),
]


def _t(minutes: float, base: str = "2026-11-18T08:00:00Z") -> pd.Timestamp:
    return pd.Timestamp(base) + pd.Timedelta(minutes=minutes)


def _event(i: int, user: str, minute: float, cycle: str, **over: object) -> dict[str, object]:
    key, name, upn = next(u for u in USERS if u[0] == user)
    row: dict[str, object] = {
        "id": f"ev-{i:03d}",
        "activity_at": _t(minute),
        "job_id": JOB,
        "cycle_id": cycle,
        "change_id": f"ch-{i:03d}",
        "service_principal_id": SP,
        "service_principal_name": SP_NAME,
        "action": "create",
        "status": "success",
        "source_id": f"obj-{key}",
        "source_name": name,
        "source_upn": upn,
        "source_type": "user",
        "target_id": f"wiki-{key}",
        "target_name": name,
        "origin": "file",
        "duration_ms": 900,
    }
    row.update(over)
    return row


def events() -> pd.DataFrame:
    """Return the fixture's events: 3 cycles on day 1, day 2 and day 3."""
    rows = []
    i = 0

    def add(user: str, minute: float, cycle: str, **over: object) -> None:
        nonlocal i
        i += 1
        rows.append(_event(i, user, minute, cycle, **over))

    # Cycle 1 (initial), day 1, 08:00-08:40.
    for n, user in enumerate(["u1", "u2", "u3", "u4", "u5"]):
        add(user, 5 * n, "cycle-1")
    add(
        "u6",
        30,
        "cycle-1",
        status="failure",
        error_code="TheOrgWikiEntryConflict",
        error_category="failure",
        error_reason="A user with this userName already exists in the wiki.",
        failed_step="EntryExportAdd",
        target_id=None,
    )
    add("u7", 40, "cycle-1", action="other", status="skipped", skip_reason="NotEffectivelyEntitled")
    # Cycle 2 (incremental), day 2, 08:00-08:20.
    day2 = 24 * 60
    add("u1", day2, "cycle-2", action="update")
    add(
        "u6",
        day2 + 10,
        "cycle-2",
        status="failure",
        error_code="TheOrgWikiEntryConflict",
        error_category="failure",
        error_reason="A user with this userName already exists in the wiki.",
        target_id=None,
    )
    add(
        "u8",
        day2 + 20,
        "cycle-2",
        status="failure",
        error_code="SystemForCrossDomainIdentityManagementServiceIncompatible",
        error_category="non_service_failure",
        error_reason="The wiki answered 500.",
        target_id=None,
    )
    # Cycle 3 (incremental), day 3, 08:00-08:10.
    day3 = 2 * 24 * 60
    add("u3", day3, "cycle-3", action="update")
    add("u8", day3 + 10, "cycle-3", status="success")
    return pd.DataFrame(rows)


def steps() -> pd.DataFrame:
    """Return steps for the XSS user's create event and the first conflict."""
    return pd.DataFrame(
        [
            {
                "event_id": "ev-003",
                "position": 0,
                "name": "EntryImportAdd",
                "step_type": "import",
                "status": "success",
                "description": "Received user",
            },
            {
                "event_id": "ev-003",
                "position": 1,
                "name": "EntryExportAdd",
                "step_type": "export",
                "status": "success",
                "description": "Created in wiki",
            },
            {
                "event_id": "ev-006",
                "position": 0,
                "name": "EntryImportAdd",
                "step_type": "import",
                "status": "success",
                "description": "Received user",
            },
            {
                "event_id": "ev-006",
                "position": 1,
                "name": "EntryExportAdd",
                "step_type": "export",
                "status": "failure",
                "description": "Conflict",
            },
        ]
    )


def modified_properties() -> pd.DataFrame:
    """Return attribute changes of the XSS user's update."""
    return pd.DataFrame(
        [
            {
                "event_id": "ev-011",
                "name": "displayName",
                "old_value": "Old <b>name</b>",
                "new_value": XSS_NAME,
            },
            {"event_id": "ev-011", "name": "active", "old_value": None, "new_value": "True"},
        ]
    )


def sync_jobs() -> pd.DataFrame:
    """Return one job snapshot: active, steady state reached after cycle 1."""
    return pd.DataFrame(
        [
            {
                "captured_at": _t(3 * 24 * 60),
                "service_principal_id": SP,
                "job_id": JOB,
                "template_id": "scim",
                "status_code": "Active",
                "schedule_state": "Active",
                "schedule_interval_s": 2400,
                "last_execution_state": "Succeeded",
                "last_execution_began": _t(2 * 24 * 60),
                "last_execution_ended": _t(2 * 24 * 60 + 10),
                "count_entitled": 7,
                "steady_state_first_at": _t(60),
                "steady_state_last_at": _t(2 * 24 * 60 + 10),
            }
        ]
    )


def assignments() -> pd.DataFrame:
    """Return direct assignments of u1, u2 and the group; u7 has Default Access only."""
    rows = [
        {
            "service_principal_id": SP,
            "principal_id": "obj-u1",
            "principal_type": "user",
            "principal_name": "Ada Lovelace",
            "app_role_id": ROLE,
            "default_access": False,
        },
        {
            "service_principal_id": SP,
            "principal_id": "obj-u2",
            "principal_type": "user",
            "principal_name": "Grace Hopper",
            "app_role_id": ROLE,
            "default_access": False,
        },
        {
            "service_principal_id": SP,
            "principal_id": GROUP,
            "principal_type": "group",
            "principal_name": "Wiki users",
            "app_role_id": ROLE,
            "default_access": False,
        },
        {
            "service_principal_id": SP,
            "principal_id": "obj-u7",
            "principal_type": "user",
            "principal_name": "Out Of Scope",
            "app_role_id": DEFAULT_ROLE,
            "default_access": True,
        },
    ]
    return pd.DataFrame(rows)


def group_members() -> pd.DataFrame:
    """Return the group's direct members u3..u6 and u8."""
    rows = []
    for key in ("u3", "u4", "u5", "u6", "u8"):
        _, name, upn = next(u for u in USERS if u[0] == key)
        rows.append(
            {
                "group_id": GROUP,
                "member_id": f"obj-{key}",
                "member_type": "user",
                "member_upn": upn,
                "member_name": name,
                "direct": True,
            }
        )
    return pd.DataFrame(rows)


def scim_resources() -> pd.DataFrame:
    """Return the wiki's users: u1..u5 and u8 active, plus one orphan."""
    rows = []
    for key in ("u1", "u2", "u3", "u4", "u5", "u8"):
        _, name, upn = next(u for u in USERS if u[0] == key)
        rows.append(
            {
                "captured_at": _t(3 * 24 * 60),
                "resource_type": "User",
                "id": f"wiki-{key}",
                "external_id": f"obj-{key}",
                "user_name": upn,
                "display_name": name,
                "active": True,
            }
        )
    rows.append(
        {
            "captured_at": _t(3 * 24 * 60),
            "resource_type": "User",
            "id": "wiki-orphan",
            "external_id": None,
            "user_name": "orphan@contoso.com",
            "display_name": "Orphan",
            "active": True,
        }
    )
    return pd.DataFrame(rows)


def scim_requests() -> pd.DataFrame:
    """Return the wiki's SCIM log: a POST per created user, the conflicts (409), 429s, a 500."""
    rows = []
    n = 0

    def req(
        minute: float, method: str, path: str, status: int, latency: float, **over: object
    ) -> None:
        nonlocal n
        n += 1
        row = {
            "request_id": f"r-{n:03d}",
            "received_at": _t(minute) + pd.Timedelta(seconds=2),
            "method": method,
            "path": path,
            "resource_type": "User",
            "status_code": status,
            "latency_ms": latency,
            "client": "203.0.113.7",
        }
        row.update(over)
        rows.append(row)

    for idx, key in enumerate(["u1", "u2", "u3", "u4", "u5"]):
        _, _, upn = next(u for u in USERS if u[0] == key)
        req(
            5 * idx,
            "POST",
            "/api/v2/scim/v2/Users",
            201,
            40 + 10 * idx,
            operation="create",
            resource_id=f"wiki-{key}",
            external_id=f"obj-{key}",
            user_name=upn,
            active_set=True,
        )
    req(
        30,
        "POST",
        "/api/v2/scim/v2/Users",
        409,
        35,
        operation="create",
        external_id="obj-u6",
        user_name="katherine@contoso.com",
        scim_type="uniqueness",
        detail="userName taken",
    )
    req(31, "GET", "/api/v2/scim/v2/Users?filter=userName", 429, 5, operation="query")
    req(32, "GET", "/api/v2/scim/v2/Users?filter=userName", 429, 5, operation="query")
    day2 = 24 * 60
    req(
        day2,
        "PATCH",
        "/api/v2/scim/v2/Users/wiki-u1",
        200,
        60,
        operation="patch",
        resource_id="wiki-u1",
    )
    req(
        day2 + 10,
        "POST",
        "/api/v2/scim/v2/Users",
        409,
        30,
        operation="create",
        external_id="obj-u6",
        user_name="katherine@contoso.com",
        scim_type="uniqueness",
    )
    req(
        day2 + 20,
        "POST",
        "/api/v2/scim/v2/Users",
        500,
        900,
        operation="create",
        external_id="obj-u8",
        user_name="edsger@contoso.com",
    )
    day3 = 2 * 24 * 60
    req(
        day3,
        "PATCH",
        "/api/v2/scim/v2/Users/wiki-u3",
        200,
        55,
        operation="patch",
        resource_id="wiki-u3",
    )
    req(
        day3 + 10,
        "POST",
        "/api/v2/scim/v2/Users",
        201,
        80,
        operation="create",
        resource_id="wiki-u8",
        external_id="obj-u8",
        user_name="edsger@contoso.com",
        active_set=True,
    )
    return pd.DataFrame(rows)


def build_store(path: Path, origin: str = "file") -> Store:
    """Write the fixture tenant into a new store at ``path`` and return it."""
    store = Store(path)
    ev = events()
    ev["origin"] = origin
    with store.batch(source="file", detail="dashboard test fixture") as b:
        b.add(
            {
                "events": ev,
                "steps": steps(),
                "modified_properties": modified_properties(),
                "sync_jobs": sync_jobs(),
                "assignments": assignments(),
                "group_members": group_members(),
                "scim_resources": scim_resources(),
                "scim_requests": scim_requests(),
            }
        )
    return store
