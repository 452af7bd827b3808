"""The demo's Entra provisioning service: cycles, per-object processing, provisioning events.

:class:`Entra` runs the initial cycle and the incremental cycles over the tenant, calls the wiki
(:class:`demo.wiki.Wiki`) for each object, writes the Graph provisioning-log pages and, at the end,
the Graph state files (sync job, app role assignments, group members).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import orjson

from demo import payloads as P
from demo.planted import DEPROVISION_BEFORE_END, plant_missed_deprovision
from demo.scenario import APP_NAME, CONTRACTORS, Scenario
from demo.tenant import DAY, HOUR, MINUTE, SECOND, Group, Pool, User
from demo.wiki import Wiki
from demo.writers import GRAPH_ROOT, ProvisioningPages, fmt_graph_time, write_json
from ingest.errors import UsageError

log = logging.getLogger(__name__)

# Escrowed objects are retried with decreasing frequency: delay after the n-th failure.
ESCROW_BACKOFF: Final = (0, 2 * HOUR, 6 * HOUR, 12 * HOUR, 24 * HOUR)
QUARANTINE_RETRY: Final = (6 * HOUR, 12 * HOUR)  # after the first failure (how-long.md §6)
# Expected changes over the window at least (joiners, movers, unassigned, deleted, skips, no-ops).
MIN_CHANGES: Final = (4, 8, 4, 3, 12, 6)


@dataclass(slots=True)
class Work:
    """One object the service has to process in a cycle (a change or an escrowed retry)."""

    kind: str  # create, update, noop, disable, delete, skip, skip_filter
    user: User
    due: int
    changes: list[tuple[str, str, str, str]] = field(default_factory=list)
    planned: str | None = None  # transient failure planned for the next attempt
    attempts: int = 0


@dataclass
class Cycle:
    """One run of the job."""

    cycle_id: str
    began: int
    ended: int = 0
    events: int = 0
    failures: int = 0
    exports: int = 0
    imported: int = 0
    quarantined: bool = False
    first_event: int | None = None
    last_event: int | None = None


class Entra(Wiki):
    """The tenant and the wiki plus the provisioning service between them."""

    def __init__(self, sc: Scenario, out: Path, tick: Callable[[int], None] | None = None) -> None:
        super().__init__(sc, out, tick)
        self.pending: list[Work] = []
        self.busy: set[int] = set()
        self.group_delta: dict[int, tuple[list[int], list[int]]] = {}
        self.cycles: list[Cycle] = []
        self.cycle: Cycle | None = None
        self.escrowed: set[int] = set()
        self.quarantine_snapshot: dict[str, Any] | None = None
        # (time, group, user) of memberships demo.planted removed without Entra acting on them.
        self.planted_removals: list[tuple[int, int, User]] = []
        self.joins: list[tuple[int, int, User]] = []  # (time, group, user) of window joiners
        self.truth_fail: dict[str, dict[str, Any]] = {
            k: {"error_code": v["code"], "events": 0, "objects": set()}
            for k, v in P.FAILURES.items()
        }
        self.truth_skip: dict[str, dict[str, Any]] = {
            "not_entitled": {"events": 0, "objects": set()},
            "scoping_filter": {"events": 0, "objects": set()},
        }
        self.by_action_status: dict[str, dict[str, int]] = {}
        self.noise_noop = 0
        self.changes = {"joiners": 0, "movers": 0, "unassigned": 0, "deleted": 0}
        self.entra_only: list[str] = []
        self._q_fails = 0
        self.initial: dict[str, Any] = {}
        self.planned_initial: dict[int, str] = {}
        self.quarantine_captured_at: str | None = None
        self.correlation: dict[str, int] = {}
        self.last_status: dict[int, str] = {}
        self.pages = ProvisioningPages(
            out,
            f"servicePrincipal/id eq '{self.sp_id}' and activityDateTime ge "
            f"{fmt_graph_time(self.start)[:19]}Z",
        )

    def event(
        self,
        t: int,
        action: str,
        status: str,
        source: User | Group,
        target_id: str | None,
        steps: list[dict[str, Any]],
        props: list[dict[str, str | None]],
        duration_ms: int,
        error: dict[str, Any] | None = None,
    ) -> None:
        """Write one provisioning record at ``t`` in the current cycle."""
        cyc = self.cycle
        assert cyc is not None
        if isinstance(source, User):
            kind = "User"
            details = {
                "id": source.oid,
                "odatatype": "User",
                "DisplayName": source.display,
                "UserPrincipalName": source.upn,
            }
        else:
            kind = "Group"
            details = {"id": source.oid, "odatatype": "Group", "DisplayName": source.name}
        name = source.display if isinstance(source, User) else source.name
        self.pages.add(
            {
                "id": self.d.guid(),
                "activityDateTime": fmt_graph_time(t),
                "tenantId": self.tenant_id,
                "jobId": self.job_id,
                "cycleId": cyc.cycle_id,
                "changeId": self.d.guid(),
                "provisioningAction": action,
                "durationInMilliseconds": duration_ms,
                "servicePrincipal": self.C.service_principal,
                "sourceSystem": self.C.source_system,
                "targetSystem": self.C.target_system,
                "initiatedBy": self.C.initiated_by,
                "sourceIdentity": {
                    "id": source.oid,
                    "displayName": name,
                    "identityType": kind,
                    "details": details,
                },
                "targetIdentity": {
                    "id": target_id or "",
                    "displayName": "",
                    "identityType": kind,
                    "details": {},
                },
                "provisioningStatusInfo": {"status": status, "errorInformation": error},
                "provisioningSteps": steps,
                "modifiedProperties": props,
            }
        )
        self._correlate(status)
        if isinstance(source, User):
            self.last_status[source.idx] = status
        per = self.by_action_status.setdefault(action, {})
        per[status] = per.get(status, 0) + 1
        cyc.events += 1
        cyc.imported += 1
        if status == "failure":
            cyc.failures += 1
        elif status == "success" and action != "other":
            cyc.exports += 1
        if cyc.first_event is None:
            cyc.first_event = t
        cyc.last_event = t

    def _correlate(self, status: str) -> None:
        """Count the DESIGN.md correlation verdict of the event whose requests were just sent."""
        sent, self._req_buf = self._req_buf, []
        if status == "success" and sent and all(c < 400 for c in sent):
            verdict = "both_ok"
        elif status == "failure" and any(c >= 400 for c in sent):
            verdict = "rejected_by_wiki"
        elif status in ("failure", "skipped") and not sent:
            verdict = "not_sent_to_wiki"
        elif status == "success" and not sent:
            verdict = "unmatched"
        else:
            verdict = "other"
        self.correlation[verdict] = self.correlation.get(verdict, 0) + 1

    def _fail(self, kind: str, obj: str) -> None:
        self.truth_fail[kind]["events"] += 1
        self.truth_fail[kind]["objects"].add(obj)

    def _import_step(self, u: User, change: str) -> dict[str, Any]:
        roles = {"user": "Wiki User", "admin": "Wiki Admin", "default": "msiam_access"}
        role = roles.get(u.direct_role or "", "")
        if not role:
            gr = [self.groups[gi].role for gi in u.groups]
            role = "Wiki User" if "user" in gr else ("Wiki Admin" if "admin" in gr else "")
        name = "EntryImportAdd" if change == "Add" else "EntryImport"
        return P.step(
            name,
            "import",
            "success",
            f"Received User '{u.upn}' change of type ({change}) from Azure Active Directory",
            {
                "objectId": u.oid,
                "accountEnabled": "True",
                "department": u.department,
                "displayName": u.display,
                "givenName": u.given,
                "surname": u.family,
                "jobTitle": u.title,
                "mail": u.mail or "",
                "mailNickname": u.upn.split("@")[0],
                "userPrincipalName": u.upn,
                "IsSoftDeleted": "False",
                "appRoleAssignments": role,
            },
        )

    def _match_found(self, u: User) -> dict[str, Any]:
        return P.step(
            "EntryImportByMatchingProperty",
            "matching",
            "success",
            f"Retrieved User '{u.upn}' from {APP_NAME}",
            {"id": u.scim_id or "", "userName": u.upn, "active": str(u.wiki_active)},
        )

    def _duration(self) -> int:
        return self.d.below(180, 2600)

    def do_create(self, w: Work, t: int, quarantined: bool) -> bool:
        """Provision a new user; return True on success."""
        u = w.user
        dur = self._duration()
        t0 = t - dur * 10_000
        if u.mail is None and self._fixed(u, t):
            u.mail = u.upn  # an admin filled in the missing attribute in Entra
        steps = [self._import_step(u, "Add"), P.scoping_step("User", True, True, True)]
        if u.mail is None:
            steps.append(
                P.step(
                    "EntrySynchronizationAdd",
                    "processing",
                    "failure",
                    f"User '{u.upn}' could not be created in {APP_NAME}: the mandatory target "
                    f"attribute '{P.MAIL_PATH}' has no value",
                    {"MissingAttributes": P.MAIL_PATH},
                )
            )
            self.event(
                t,
                "create",
                "failure",
                u,
                None,
                steps,
                [],
                dur,
                P.error_info("mandatory_missing", None),
            )
            self._fail("mandatory_missing", u.oid)
            return False
        query = P.user_path() + "?filter=" + quote(f'userName eq "{u.upn}"', safe="")
        if quarantined:
            return self._unauthorized(u, t, t0, dur, steps, "create", "GET", query)
        if u.special == "wiki_missing":
            # Entra records a success although the wiki never received a request.
            u.scim_id = self.d.hex(20)
            self._create_props_event(u, t, dur, steps)
            return True
        self.request(t0, "GET", query, 200, response=P.empty_list_response())
        steps.append(
            P.step(
                "EntryImportByMatchingProperty",
                "matching",
                "success",
                f"Searched {APP_NAME} for a User whose userName is '{u.upn}'; no match found",
                {},
            )
        )
        steps.append(
            P.step(
                "EntrySynchronizationAdd",
                "processing",
                "success",
                f"User '{u.upn}' will be created in {APP_NAME} (User is active and assigned in "
                f"Azure Active Directory, but no matching User was found in {APP_NAME})",
                {},
            )
        )
        t1 = t0 + self.d.below(1, max(2, dur - 20)) * 10_000
        failure = w.planned
        if failure is None and u.special == "conflict" and not self._fixed(u, t):
            failure = "conflict"
        if failure is not None:
            status = P.FAILURES[failure]["status"]
            if failure == "conflict":
                body = P.scim_error(
                    409, "uniqueness", f"userName '{u.upn}' is already taken by another user"
                )
            else:
                scim_type, detail = P.SCIM_ERROR_DETAIL[status]
                body = P.scim_error(status, scim_type, detail)
            self.request(t1, "POST", P.user_path(), status, self._post_body(u), body)
            steps.append(
                P.step(
                    "EntryExportAdd",
                    "export",
                    "failure",
                    f"Failed to create User '{u.upn}' in {APP_NAME}",
                    {"ReportableIdentifier": u.upn},
                )
            )
            self.event(
                t,
                "create",
                "failure",
                u,
                None,
                steps,
                [],
                dur,
                P.error_info(failure, orjson.dumps(body)),
            )
            self._fail(failure, u.oid)
            return False
        if u.special == "conflict":
            self._remove_stale(u)
        u.scim_id = self.d.hex(20)
        u.wiki_active = True
        u.wiki_attrs = (u.display, u.given, u.family, u.mail, u.department, u.title)
        u.created_at = u.modified_at = t1
        self.request(t1, "POST", P.user_path(), 201, self._post_body(u), self.user_resource(u))
        self._create_props_event(u, t, dur, steps)
        return True

    def _create_props_event(self, u: User, t: int, dur: int, steps: list[dict[str, Any]]) -> None:
        if len(steps) == 2:  # the wiki-missing case skipped the matching/processing steps
            steps.append(
                P.step(
                    "EntrySynchronizationAdd",
                    "processing",
                    "success",
                    f"User '{u.upn}' will be created in {APP_NAME}",
                    {},
                )
            )
        steps.append(
            P.step(
                "EntryExportAdd",
                "export",
                "success",
                f"User '{u.upn}' was created in {APP_NAME}",
                {"ReportableIdentifier": u.upn},
            )
        )
        props = [
            P.prop("externalId", None, u.oid),
            P.prop("userName", None, u.upn),
            P.prop("active", None, "True"),
            P.prop("displayName", None, u.display),
            P.prop(P.MAIL_PATH, None, u.mail),
            P.prop("name.givenName", None, u.given),
            P.prop("name.familyName", None, u.family),
            P.prop("title", None, u.title),
            P.prop(P.DEPARTMENT_PATH, None, u.department),
            P.prop("accountDisabled", None, "False"),
        ]
        self.event(t, "create", "success", u, u.scim_id, steps, props, dur)

    def _fixed(self, u: User, t: int) -> bool:
        return u.fix_at is not None and t >= u.fix_at

    def _remove_stale(self, u: User) -> None:
        i = self.stale_by_user.pop(u.idx, None)
        if i is not None:
            self.wiki_extra[i] = {}  # deleted by the wiki admin (in its UI, not over SCIM)

    def _unauthorized(
        self,
        source: User | Group,
        t: int,
        t0: int,
        dur: int,
        steps: list[dict[str, Any]],
        action: str,
        method: str,
        path: str,
    ) -> bool:
        body = P.scim_error(401, None, P.SCIM_ERROR_DETAIL[401][1])
        self.request(t0, method, path, 401, response=body)
        label = source.upn if isinstance(source, User) else source.name
        steps.append(
            P.step(
                "EntryImportByMatchingProperty",
                "matching",
                "failure",
                f"Failed to query {APP_NAME} for '{label}'",
                {},
            )
        )
        target = source.scim_id
        self.event(
            t,
            action,
            "failure",
            source,
            target,
            steps,
            [],
            dur,
            P.error_info("unauthorized", orjson.dumps(body)),
        )
        self._fail("unauthorized", source.oid)
        return False

    def do_update(self, w: Work, t: int, quarantined: bool) -> bool:
        """Apply a mover's changes (or a no-op accountDisabled update); True on success."""
        u = w.user
        assert u.scim_id is not None
        dur = self._duration()
        t0 = t - dur * 10_000
        steps = [self._import_step(u, "Update"), P.scoping_step("User", True, True, True)]
        if quarantined:
            return self._unauthorized(u, t, t0, dur, steps, "update", "GET", P.user_path(u.scim_id))
        self.request(t0, "GET", P.user_path(u.scim_id), 200, response=self.user_resource(u))
        steps.append(self._match_found(u))
        steps.append(
            P.step(
                "EntrySynchronizationUpdate",
                "processing",
                "success",
                f"User '{u.upn}' will be updated in {APP_NAME}",
                {},
            )
        )
        if w.kind == "noop":
            ops = [("Replace", "active", "True")]
            props = [P.prop("accountDisabled", None, "False")]
        else:
            ops = [("Replace", path, new) for path, _name, _old, new in w.changes]
            props = [P.prop(name, old, new) for _path, name, old, new in w.changes]
            props.append(P.prop("accountDisabled", None, "False"))
        t1 = t0 + self.d.below(1, max(2, dur - 20)) * 10_000
        if w.planned is not None:
            status = P.FAILURES[w.planned]["status"]
            scim_type, detail = P.SCIM_ERROR_DETAIL[status]
            body = P.scim_error(status, scim_type, detail)
            self.request(t1, "PATCH", P.user_path(u.scim_id), status, P.patch_body(ops), body)
            steps.append(
                P.step(
                    "EntryExportUpdate",
                    "export",
                    "failure",
                    f"Failed to update User '{u.upn}' in {APP_NAME}",
                    {"ReportableIdentifier": u.upn},
                )
            )
            self.event(
                t,
                "update",
                "failure",
                u,
                u.scim_id,
                steps,
                props,
                dur,
                P.error_info(w.planned, orjson.dumps(body)),
            )
            self._fail(w.planned, u.oid)
            return False
        u.wiki_attrs = (u.display, u.given, u.family, u.mail, u.department, u.title)
        u.modified_at = t1
        self.request(
            t1, "PATCH", P.user_path(u.scim_id), 200, P.patch_body(ops), self.user_resource(u)
        )
        steps.append(
            P.step(
                "EntryExportUpdate",
                "export",
                "success",
                f"User '{u.upn}' was updated in {APP_NAME}",
                {"ReportableIdentifier": u.upn},
            )
        )
        self.event(t, "update", "success", u, u.scim_id, steps, props, dur)
        if w.kind == "noop":
            self.noise_noop += 1
        return True

    def do_disable(self, w: Work, t: int, quarantined: bool) -> bool:
        """Disable a user who left scope: PATCH active "False" (Entra's default flag variant)."""
        u = w.user
        assert u.scim_id is not None
        dur = self._duration()
        t0 = t - dur * 10_000
        steps = [self._import_step(u, "Update")]
        scope = P.scoping_step("User", False, False, True)
        scope["status"] = "success"
        steps.append(scope)
        if quarantined:
            return self._unauthorized(
                u, t, t0, dur, steps, "disable", "GET", P.user_path(u.scim_id)
            )
        self.request(t0, "GET", P.user_path(u.scim_id), 200, response=self.user_resource(u))
        steps.append(self._match_found(u))
        steps.append(
            P.step(
                "EntrySynchronizationUpdate",
                "processing",
                "success",
                f"User '{u.upn}' will be disabled in {APP_NAME} (User is no longer assigned "
                "to the application in Azure Active Directory)",
                {},
            )
        )
        t1 = t0 + self.d.below(1, max(2, dur - 20)) * 10_000
        u.wiki_active = False
        u.modified_at = t1
        self.request(
            t1,
            "PATCH",
            P.user_path(u.scim_id),
            200,
            P.patch_body([("Replace", "active", "False")]),
            self.user_resource(u),
        )
        steps.append(
            P.step(
                "EntryExportUpdate",
                "export",
                "success",
                f"User '{u.upn}' was disabled in {APP_NAME}",
                {"ReportableIdentifier": u.upn},
            )
        )
        self.event(
            t, "disable", "success", u, u.scim_id, steps, [P.prop("active", "True", "False")], dur
        )
        return True

    def do_delete(self, w: Work, t: int, quarantined: bool) -> bool:
        """Delete a user hard-deleted in Entra: DELETE /Users/{id}."""
        u = w.user
        assert u.scim_id is not None
        dur = self._duration()
        t0 = t - dur * 10_000
        steps = [
            P.step(
                "EntryImportDelete",
                "import",
                "success",
                f"Received User '{u.upn}' change of type (Delete) from Azure Active Directory",
                {"objectId": u.oid, "userPrincipalName": u.upn, "IsSoftDeleted": "True"},
            )
        ]
        if quarantined:
            return self._unauthorized(u, t, t0, dur, steps, "delete", "GET", P.user_path(u.scim_id))
        self.request(t0, "GET", P.user_path(u.scim_id), 200, response=self.user_resource(u))
        steps.append(self._match_found(u))
        steps.append(
            P.step(
                "EntrySynchronizationDelete",
                "processing",
                "success",
                f"User '{u.upn}' will be deleted from {APP_NAME} (User was permanently "
                "deleted in Azure Active Directory)",
                {},
            )
        )
        t1 = t0 + self.d.below(1, max(2, dur - 20)) * 10_000
        self.request(t1, "DELETE", P.user_path(u.scim_id), 204)
        steps.append(
            P.step(
                "EntryExportDelete",
                "export",
                "success",
                f"User '{u.upn}' was deleted from {APP_NAME}",
                {"ReportableIdentifier": u.upn},
            )
        )
        self.event(t, "delete", "success", u, u.scim_id, steps, [], dur)
        u.wiki_attrs = None  # gone from the wiki
        return True

    def do_skip(self, w: Work, t: int, change: str) -> None:
        """Record a skip: out of scope (NotEffectivelyEntitled) or filtered by the scope filter."""
        u = w.user
        by_filter = w.kind == "skip_filter"
        assigned = by_filter or u.direct_role == "default" or 0 in u.groups
        steps = [
            self._import_step(u, change),
            P.scoping_step("User", assigned, by_filter, not by_filter),
            P.skip_step("User", u.upn, by_filter),
        ]
        self.event(t, "create", "skipped", u, None, steps, [], self.d.below(20, 400))
        key = "scoping_filter" if by_filter else "not_entitled"
        self.truth_skip[key]["events"] += 1
        self.truth_skip[key]["objects"].add(u.oid)

    def do_group_create(self, g: Group, t: int) -> None:
        """Create an assigned group, then add its provisioned direct members.

        Groups are matched on externalId = objectId (a common mapping for SCIM apps; the
        default displayName matching would be ambiguous for renamed groups).
        """
        dur = self._duration()
        t0 = t - dur * 10_000
        nick = g.name.lower().replace(" ", "-").replace("(", "").replace(")", "")
        steps = [
            P.step(
                "EntryImportAdd",
                "import",
                "success",
                f"Received Group '{g.name}' change of type (Add) from Azure Active Directory",
                {
                    "objectId": g.oid,
                    "displayName": g.name,
                    "mailEnabled": "False",
                    "securityEnabled": "True",
                    "mailNickname": nick,
                },
            ),
            P.scoping_step("Group", True, True, True),
        ]
        query = (
            P.group_path()
            + "?excludedAttributes=members&filter="
            + quote(f'externalId eq "{g.oid}"', safe="")
        )
        self.request(t0, "GET", query, 200, response=P.empty_list_response())
        steps.append(
            P.step(
                "EntryImportByMatchingProperty",
                "matching",
                "success",
                f"Searched {APP_NAME} for a Group whose externalId is '{g.oid}'; no match found",
                {},
            )
        )
        steps.append(
            P.step(
                "EntrySynchronizationAdd",
                "processing",
                "success",
                f"Group '{g.name}' will be created in {APP_NAME} (Group is assigned in Azure "
                f"Active Directory, but no matching Group was found in {APP_NAME})",
                {},
            )
        )
        t1 = t0 + self.d.below(1, max(2, dur - 20)) * 10_000
        g.scim_id = self.d.hex(20)
        g.created_at = g.modified_at = t1
        body = {
            "schemas": [P.CORE_GROUP, P.MS_GROUP_EXT],
            "externalId": g.oid,
            "displayName": g.name,
            "meta": {"resourceType": "Group"},
        }
        self.request(t1, "POST", P.group_path(), 201, body, self._group_resource(g))
        steps.append(
            P.step(
                "EntryExportAdd",
                "export",
                "success",
                f"Group '{g.name}' was created in {APP_NAME}",
                {"ReportableIdentifier": g.name},
            )
        )
        props = [P.prop("externalId", None, g.oid), P.prop("displayName", None, g.name)]
        self.event(t, "create", "success", g, g.scim_id, steps, props, dur)
        members = [m for m in g.members if self.users[m].wiki_active]
        self._member_patches(g, t, members, [])

    def do_group_update(self, g: Group, t: int, adds: list[int], removes: list[int]) -> None:
        """Record a group membership update and send the member PATCHes."""
        assert g.scim_id is not None
        dur = self._duration()
        t0 = t - dur * 10_000
        path = P.group_path(g.scim_id)
        self.request(
            t0, "GET", path + "?excludedAttributes=members", 200, response=self._group_resource(g)
        )
        steps = [
            P.step(
                "EntryImport",
                "import",
                "success",
                f"Received Group '{g.name}' change of type (Update) from Azure Active Directory",
                {"objectId": g.oid, "displayName": g.name},
            ),
            P.scoping_step("Group", True, True, True),
            P.step(
                "EntryImportByMatchingProperty",
                "matching",
                "success",
                f"Retrieved Group '{g.name}' from {APP_NAME}",
                {"id": g.scim_id},
            ),
            P.step(
                "EntrySynchronizationUpdate",
                "processing",
                "success",
                f"Group '{g.name}' will be updated in {APP_NAME}",
                {},
            ),
            P.step(
                "EntryExportUpdate",
                "export",
                "success",
                f"Group '{g.name}' was updated in {APP_NAME}",
                {"ReportableIdentifier": g.name},
            ),
        ]
        props = []
        if adds:
            props.append(P.prop("members", None, ",".join(self.users[m].oid for m in adds)))
        if removes:
            props.append(P.prop("members", ",".join(self.users[m].oid for m in removes), None))
        self.event(t, "update", "success", g, g.scim_id, steps, props, dur)
        self._member_patches(g, t, adds, removes)

    def _begin_cycle(self, t: int) -> Cycle:
        cyc = Cycle(self.d.guid(), t)
        self.cycles.append(cyc)
        self.cycle = cyc
        return cyc

    def _slots(self, begin: int, n: int, total: int | None = None) -> Iterator[int]:
        """Event times: ``n`` slots from ``begin``, evenly spaced with jitter, ``total`` long."""
        spacing = self.sc.minutes_per_object * MINUTE
        if total is not None and n > 1:
            spacing = total / (n - 1)
        for i in range(n):
            jitter = 0.0 if i in (0, n - 1) else (self.d.u() - 0.5) * 0.6 * spacing
            yield begin + int(i * spacing + jitter)

    def run_initial_cycle(self) -> None:
        """The first cycle: every assigned object, at the scenario's throughput."""
        d = self.d
        self.request(
            self.start + MINUTE,
            "GET",
            P.user_path() + "?filter=" + quote(f'userName eq "{d.guid()}"', safe=""),
            200,
            response=P.empty_list_response(),
        )
        self.wiki_only.append(self._last_rid)  # the portal's "Test Connection"
        self._req_buf.clear()
        items: list[tuple[str, Any]] = []
        for u in self.users:
            if self.in_scope(u):
                if u.department == CONTRACTORS:
                    items.append(("skip_filter", u))
                else:
                    items.append(("create", u))
            else:
                items.append(("skip", u))
        order = self.rng.permutation(len(items)).tolist()
        items = [items[i] for i in order]
        items.append(("group_skip", self.groups[0]))
        items += [("group", g) for g in self.groups if g.role in ("user", "admin")]
        n = len(items)
        minutes = n * self.sc.minutes_per_object
        began = self.start + 5 * MINUTE
        if began + int(minutes * MINUTE) + HOUR > self.end:
            raise UsageError(
                f"the initial cycle of {n} objects takes {minutes:.0f} minutes, longer than "
                f"--days {self.sc.days}; raise --days or lower --users"
            )
        cyc = self._begin_cycle(began)
        for (kind, obj), t in zip(items, self._slots(began, n, int(minutes * MINUTE)), strict=True):
            if kind == "create":
                w = Work("create", obj, t, planned=self.planned_initial.get(obj.idx))
                self._process(w, t, False)
            elif kind in ("skip", "skip_filter"):
                self.do_skip(Work(kind, obj, t), t, "Add")
                if kind == "skip":
                    self.outscope.add(obj.idx)
            elif kind == "group_skip":
                self._group_skip(obj, t)
            else:
                self.do_group_create(obj, t)
            if cyc.events % 2000 == 0:
                self.tick(t)
        cyc.ended = cyc.last_event or began
        self.initial = {
            "cycle_id": cyc.cycle_id,
            "started_at": fmt_graph_time(cyc.first_event or began),
            "ended_at": fmt_graph_time(cyc.ended),
            "objects": n,
            "objects_in_scope": sum(1 for u in self.users if self.in_scope(u))
            + sum(1 for g in self.groups if g.role in ("user", "admin")),
            "minutes": (cyc.ended - (cyc.first_event or began)) / MINUTE,
        }

    def _group_skip(self, g: Group, t: int) -> None:
        steps = [
            P.step(
                "EntryImportAdd",
                "import",
                "success",
                f"Received Group '{g.name}' change of type (Add) from Azure Active Directory",
                {"objectId": g.oid, "displayName": g.name},
            ),
            P.scoping_step("Group", True, False, True),
            P.skip_step("Group", g.name, False),
        ]
        self.event(t, "create", "skipped", g, None, steps, [], self.d.below(20, 400))
        self.truth_skip["not_entitled"]["events"] += 1
        self.truth_skip["not_entitled"]["objects"].add(g.oid)

    def _process(self, w: Work, t: int, quarantined: bool) -> None:
        """Attempt ``w`` at ``t``; reschedule it as an escrowed retry when it fails."""
        u = w.user
        if w.kind in ("skip", "skip_filter"):
            self.do_skip(w, t, "Update")
            self.busy.discard(u.idx)
            return
        if w.kind == "create":
            ok = self.do_create(w, t, quarantined)
        elif w.kind in ("update", "noop"):
            ok = self.do_update(w, t, quarantined)
        elif w.kind == "disable":
            ok = self.do_disable(w, t, quarantined)
        else:
            ok = self.do_delete(w, t, quarantined)
        w.attempts += 1
        if ok:
            self.busy.discard(u.idx)
            self.escrowed.discard(u.idx)
            self._after_success(w, t)
            return
        w.planned = None  # transient failures succeed on the retry
        self.escrowed.add(u.idx)
        self.busy.add(u.idx)
        if u.special in ("conflict", "mandatory_missing") and not quarantined:
            delay = ESCROW_BACKOFF[min(w.attempts - 1, len(ESCROW_BACKOFF) - 1)]
            w.due = t + delay
            if u.fix_at is not None and u.special == "mandatory_missing":
                w.due = min(w.due, u.fix_at)  # the fix is a change Entra picks up next cycle
        else:
            w.due = t
        self.pending.append(w)

    def _after_success(self, w: Work, t: int) -> None:
        u = w.user
        if w.kind == "create":
            if u.special != "wiki_missing":
                self.active.add(u.idx)
            for gi in u.groups:
                g = self.groups[gi]
                if g.scim_id is not None and g.role in ("user", "admin"):
                    self.group_delta.setdefault(gi, ([], []))[0].append(u.idx)
        elif w.kind == "disable":
            self.outscope.add(u.idx)

    def _changes(self, since: int, until: int) -> None:
        """Draw the source changes of (since, until] and queue them as work."""
        sc, d = self.sc, self.d
        days = (until - since) / DAY
        n = sc.users
        rates = (
            sc.joiners_per_day,
            sc.movers_per_day,
            sc.unassigned_per_day,
            sc.deleted_per_day,
            sc.noise_skips_per_day,
            sc.noise_noop_updates_per_day,
        )
        # Small tenants still show every kind of change over the window.
        lam = [max(r * n, m / sc.days) * days for r, m in zip(rates, MIN_CHANGES, strict=True)]
        draws = self.rng.poisson(lam).tolist()
        joiners, movers, unassigned, deleted, skips, noops = draws
        assigned = [g.idx for g in self.groups if g.role in ("user", "admin")]
        for _ in range(joiners):
            u = self._new_user(since + d.below(0, until - since))
            if d.u() < 0.1:
                u.direct_role = "user"
                u.assigned_at = u.created_at
            else:
                gi = assigned[d.below(0, len(assigned))]
                self._join(u, gi)
                # Entra's directory audit logs the join (demo.planted writes it).
                self.joins.append((u.created_at, gi, u))
            self._queue(Work("create", u, until, planned=self._transient()))
            self.changes["joiners"] += 1
        for _ in range(movers):
            v = self._pick(self.active)
            if v is None:
                break
            self._queue(Work("update", v, until, changes=self._move(v), planned=self._transient()))
            self.changes["movers"] += 1
        for _ in range(noops):
            v = self._pick(self.active)
            if v is None:
                break
            self._queue(Work("noop", v, until))
        for kind, count in (("disable", unassigned), ("delete", deleted)):
            for _ in range(count):
                v = self._pick(self.active)
                if v is None:
                    break
                self.active.remove(v.idx)
                left = self._leave_all(v)
                if kind == "delete":
                    v.deleted = True
                    for gi in list(v.groups):
                        self.groups[gi].members.remove(v.idx)
                    v.groups = []
                    v.direct_role = None
                    self.changes["deleted"] += 1
                else:
                    for gi in left:
                        g = self.groups[gi]
                        if g.scim_id is not None:
                            self.group_delta.setdefault(gi, ([], []))[1].append(v.idx)
                    self.changes["unassigned"] += 1
                self._queue(Work(kind, v, until))
        for _ in range(skips):
            v = self._pick(self.outscope)
            if v is None:
                break
            if v.deleted or self.in_scope(v):
                continue
            self._queue(Work("skip", v, until))

    def _pick(self, pool: Pool) -> User | None:
        for _ in range(8):
            i = pool.pick(self.d)
            if i is None:
                return None
            u = self.users[i]
            if i not in self.busy and u.special in (None, "tricky"):
                return u
        return None

    def _queue(self, w: Work) -> None:
        self.busy.add(w.user.idx)
        self.pending.append(w)

    def _transient(self) -> str | None:
        if self.d.u() < self.sc.transient_failure_rate:
            return "throttled" if self.d.u() < 0.5 else "server_error"
        return None

    def run_incremental_cycles(self) -> None:
        """Incremental cycles about every 40 minutes until the end of the window."""
        sc, d = self.sc, self.d
        interval = sc.cycle_interval_minutes * MINUTE
        assert self.cycle is not None
        prev_start = self.cycle.began
        prev_end = self.cycle.ended
        changes_until = prev_end
        # The episode (two failed attempts, the fix at +9 h, recovery at +12 h) must fit the window.
        q_trigger = min(self.start + int((self.end - self.start) * 0.6), self.end - 14 * HOUR)
        extras_at = max(prev_end + HOUR, self.start + int((self.end - self.start) * 0.45))
        q_first: int | None = None
        q_done = not sc.quarantine
        if sc.quarantine and q_trigger < prev_end:
            log.warning("the window is too short for a quarantine episode; none simulated")
            q_done = True
        q_fix = 0
        planted_done = False
        while True:
            start = max(prev_start + interval, prev_end + 2 * MINUTE) + d.below(0, 90) * SECOND
            if q_first is not None and not q_done:
                start = q_first + QUARANTINE_RETRY[min(self._q_fails - 1, 1)]
            if start + 20 * MINUTE > self.end:
                break
            if sc.planted and not planted_done and start >= self.end - DEPROVISION_BEFORE_END:
                plant_missed_deprovision(self, start)
                planted_done = True
            if not self.extras_done and start >= extras_at:
                # An admin script creates a service account over SCIM between two cycles.
                self.wiki_side_extras(prev_end + (start - prev_end) // 2)
            self._changes(changes_until, start)
            changes_until = start
            due = [w for w in self.pending if w.due <= start]
            if due:
                ids = {id(w) for w in due}
                self.pending = [w for w in self.pending if id(w) not in ids]
            quarantined = False
            if not q_done:
                if q_first is None and start >= q_trigger and due:
                    q_first, self._q_fails, q_fix = start, 0, start + 9 * HOUR
                if q_first is not None:
                    quarantined = start < q_fix
                    if not quarantined:
                        q_done = True
            cyc = self._begin_cycle(start)
            cyc.quarantined = quarantined
            times = list(self._slots(start + d.below(5, 40) * SECOND, len(due)))
            for w, t in zip(due, times, strict=True):
                self._process(w, t, quarantined)
            if not quarantined and self.group_delta:
                step = int(self.sc.minutes_per_object * MINUTE)
                tg = (times[-1] if times else start) + step
                for gi in sorted(self.group_delta):
                    adds, removes = self.group_delta[gi]
                    self.do_group_update(self.groups[gi], tg, adds, removes)
                    tg += step
                self.group_delta = {}
            cyc.ended = cyc.last_event if cyc.last_event is not None else start + 20 * SECOND
            if quarantined:
                self._q_fails += 1
                if self._q_fails == 2 and q_first is not None:
                    self.quarantine_snapshot = self._job_snapshot(
                        cyc.ended + 20 * MINUTE, quarantine=(q_first, cyc)
                    )
            prev_start, prev_end = start, cyc.ended
            self.tick(cyc.ended)
        if sc.quarantine and q_first is None and not q_done:
            log.warning("no cycle had work after the quarantine trigger; no quarantine simulated")

    def _job_snapshot(self, captured: int, quarantine: tuple[int, Cycle] | None = None) -> dict:
        """Return the jobs list response as Graph would answer at ``captured``."""
        done = [c for c in self.cycles if c.ended <= captured]
        last = done[-1]
        entitled = sum(1 for u in self.users if self.in_scope(u)) + sum(
            1 for g in self.groups if g.role in ("user", "admin")
        )

        def execution(c: Cycle) -> dict[str, Any]:
            state = "Succeeded"
            err: dict[str, Any] = {"code": "None", "message": "", "tenantActionable": False}
            if c.quarantined:
                state = "Failed"
                f = P.FAILURES["unauthorized"]
                err = {"code": f["code"], "message": f["reason"], "tenantActionable": True}
            elif c.failures:
                state = "EntryLevelErrors"
            return {
                "activityIdentifier": c.cycle_id,
                "countEntitled": entitled,
                "countEntitledForProvisioning": entitled,
                "countEscrowed": len(self.escrowed),
                "countEscrowedRaw": len(self.escrowed),
                "countExported": c.exports,
                "countExports": c.exports + c.failures,
                "countImported": c.imported,
                "countImportedDeltas": c.imported,
                "countImportedReferenceDeltas": 0,
                "state": state,
                "error": err,
                "timeBegan": fmt_graph_time(c.began),
                "timeEnded": fmt_graph_time(c.ended),
            }

        clean = [c for c in done if not c.failures and not c.quarantined]
        with_exports = [c for c in clean if c.exports]
        users_synced = sum(1 for u in self.users if u.scim_id is not None)
        groups_synced = sum(1 for g in self.groups if g.scim_id is not None)
        status: dict[str, Any] = {
            "code": "Active",
            "countSuccessiveCompleteFailures": 0,
            "escrowsPruned": False,
            "lastExecution": execution(last),
            "lastSuccessfulExecution": execution(clean[-1]) if clean else None,
            "lastSuccessfulExecutionWithExports": execution(with_exports[-1])
            if with_exports
            else None,
            "progress": [],
            "quarantine": None,
            "steadyStateFirstAchievedTime": fmt_graph_time(self.cycles[0].ended),
            "steadyStateLastAchievedTime": fmt_graph_time(
                (clean[-1] if clean else self.cycles[0]).ended
            ),
            "synchronizedEntryCountByType": [
                {"key": "user to User", "value": users_synced},
                {"key": "group to Group", "value": groups_synced},
            ],
            "troubleshootingUrl": None,
        }
        if quarantine is not None:
            began, cyc = quarantine
            f = P.FAILURES["unauthorized"]
            status["code"] = "Quarantine"
            status["countSuccessiveCompleteFailures"] = self._q_fails
            status["quarantine"] = {
                "currentBegan": fmt_graph_time(cyc.ended),
                "nextAttempt": fmt_graph_time(began + QUARANTINE_RETRY[1]),
                "reason": "EncounteredQuarantineException",
                "seriesBegan": fmt_graph_time(began),
                "seriesCount": self._q_fails - 1,
                "error": {"code": f["code"], "message": f["reason"], "tenantActionable": True},
            }
        job = {
            "id": self.job_id,
            "templateId": "scim",
            "schedule": {
                "expiration": None,
                "interval": f"PT{self.sc.cycle_interval_minutes}M",
                "state": "Active",
            },
            "status": status,
            "synchronizationJobSettings": [
                {"name": "QuarantineTooManyDeletesThreshold", "value": "500"},
            ],
        }
        return {
            "@odata.context": f"{GRAPH_ROOT}/$metadata#servicePrincipals('{self.sp_id}')"
            "/synchronization/jobs",
            "value": [job],
            "_captured": captured,
        }

    def _assignment_id(self) -> str:
        return base64.urlsafe_b64encode(self.d.bytes(32)).decode().rstrip("=")

    def write_state_files(self) -> list[Path]:
        """Write jobs, assignments, members and the wiki's users/groups; return their paths."""
        out = self.out
        paths = []
        snap = self._job_snapshot(self.end)
        snap.pop("_captured")
        paths.append(write_json(out / f"jobs-{self.sp_id}.json", snap))
        items = []
        for u in self.users:
            if u.direct_role and not u.deleted:
                items.append((u.assigned_at, u.oid, u.display, "User", u.direct_role))
        for g in self.groups:
            if g.role:
                items.append((g.assigned_at, g.oid, g.name, "Group", g.role))
        value = [
            {
                "id": self._assignment_id(),
                "deletedDateTime": None,
                "appRoleId": self.role_ids[role],
                "createdDateTime": fmt_graph_time(at),
                "principalDisplayName": name,
                "principalId": oid,
                "principalType": ptype,
                "resourceDisplayName": APP_NAME,
                "resourceId": self.sp_id,
            }
            for at, oid, name, ptype, role in items
        ]
        paths.append(
            write_json(
                out / f"assignments-{self.sp_id}.json",
                {
                    "@odata.context": f"{GRAPH_ROOT}/$metadata#servicePrincipals('{self.sp_id}')"
                    "/appRoleAssignedTo",
                    "value": value,
                },
            )
        )
        for g in self.groups:
            paths.append(self._write_members(g))
        paths.append(self._write_wiki_users())
        groups = [self._group_resource(g) for g in self.groups if g.scim_id is not None]
        paths.append(
            write_json(
                out / "wiki-groups.json",
                {
                    "schemas": [P.LIST_RESPONSE],
                    "totalResults": len(groups),
                    "itemsPerPage": len(groups),
                    "startIndex": 1,
                    "Resources": groups,
                },
            )
        )
        return paths

    def _member(self, u: User) -> dict[str, Any]:
        return {
            "@odata.type": "#microsoft.graph.user",
            "id": u.oid,
            "businessPhones": [],
            "displayName": u.display,
            "givenName": u.given,
            "jobTitle": u.title,
            "mail": u.mail,
            "mobilePhone": None,
            "officeLocation": None,
            "preferredLanguage": None,
            "surname": u.family,
            "userPrincipalName": u.upn,
        }

    def _write_members(self, g: Group) -> Path:
        """transitiveMembers of ``g``: its users, nested groups and their users."""
        value: list[dict[str, Any]] = [self._member(self.users[m]) for m in g.members]
        seen = set(g.members)
        for child in self.groups:
            if child.parent == g.idx:
                value.append(
                    {
                        "@odata.type": "#microsoft.graph.group",
                        "id": child.oid,
                        "deletedDateTime": None,
                        "description": f"{child.name} (nested in {g.name})",
                        "displayName": child.name,
                        "groupTypes": [],
                        "mail": None,
                        "mailEnabled": False,
                        "mailNickname": child.name.lower().replace(" ", "-"),
                        "securityEnabled": True,
                    }
                )
                value += [self._member(self.users[m]) for m in child.members if m not in seen]
                seen.update(child.members)
        return write_json(
            self.out / f"members-{g.oid}.json",
            {"@odata.context": f"{GRAPH_ROOT}/$metadata#directoryObjects", "value": value},
        )
