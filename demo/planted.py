"""Conditions the demo plants so `provlens alert` has something to say (off with ``--healthy``).

Two parts, both deterministic and drawn from their own seeded generator, so the main simulation's
files do not change with them:

* **Directory audit** (every variant): "Add member to group" records for the joiners who joined
  an assigned group during the window (they join when created in Entra), written as a Graph
  ``directoryAudits`` list response, ``directory-audit.json``. It gives the access-time report
  its ``directory_audit`` join times.
* **Planted problems** (``Scenario.planted``):

  - *missed deprovisioning*: about 30 h before the end a member is removed from its only assigned
    group ("Remove member from group" in the audit) and Entra never disables the wiki account
    (coverage ``should_be_disabled``, past the 24 h grace);
  - a second app, **TheOrgWiki Sandbox**, whose group "Load test accounts" (4,105 accounts
    without ``mail``) was assigned the day before: the initial cycle fails on 4,100 of them
    (``TheOrgWikiMandatoryFieldsMissing``), so its job nears Entra's escrow thresholds
    (quarantine-risk ``approaching``); the five that succeed waited well over the 60-minute
    SLO (access-time ``breached``); six short incremental cycles are followed by a *slow* one
    (400 retries), after which the job, still *Active* on a 40-minute schedule, has not run for
    about a day (*stalled*).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from demo import payloads as P
from demo.tenant import DAY, HOUR, MINUTE, SECOND, Draw, User
from demo.writers import GRAPH_ROOT, PROVISIONING_CONTEXT, fmt_graph_time, write_json

if TYPE_CHECKING:
    from demo.entra import Entra as Simulator

AUDIT_FILE: Final = "directory-audit.json"
SANDBOX_NAME: Final = "TheOrgWiki Sandbox"
LOAD_TEST_GROUP: Final = "Load test accounts"
SANDBOX_FAILING: Final = 4_100
SANDBOX_OK: Final = 5
SANDBOX_MINUTES_PER_OBJECT: Final = 0.02
SANDBOX_SHORT_CYCLES: Final = 6
SANDBOX_SLOW_RETRIES: Final = 400
DEPROVISION_BEFORE_END: Final = 30 * HOUR
ADMIN: Final = "it-admin@contoso.example"
PAGE: Final = 1000


def _audit(
    d: Draw,
    t: int,
    group_id: str,
    group_name: str,
    member_id: str,
    upn: str | None,
    *,
    added: bool = True,
) -> dict[str, Any]:
    """Return one directoryAudit membership record (Graph v1.0 shape)."""
    audit_id, correlation, initiator = f"Directory_{d.guid()}", d.guid(), d.guid()
    return P.directory_audit(
        audit_id,
        fmt_graph_time(t),
        group_id,
        group_name,
        member_id,
        upn,
        added=added,
        correlation_id=correlation,
        initiator_id=initiator,
        initiator_upn=ADMIN,
    )


def plant_missed_deprovision(sim: Simulator, t: int) -> None:
    """Take a group-only member out of scope at ``t`` without Entra ever disabling them."""
    for u in sim.users:
        if (
            u.idx in sim.active.pos
            and u.idx not in sim.busy
            and u.special is None
            and u.direct_role is None
            and u.wiki_active
            and u.scim_id is not None
            and sim.last_status.get(u.idx) == "success"
            and [gi for gi in u.groups if sim.groups[gi].role in ("user", "admin")]
        ):
            sim.active.remove(u.idx)
            left = sim._leave_all(u)
            sim.planted_removals = [(t, gi, u) for gi in left]
            return


def _joins(sim: Simulator) -> list[tuple[int, int, User]]:
    """Return (time, group, user) of the window's joiners of assigned groups (as they joined)."""
    return list(sim.joins)


def write_directory_audit(sim: Simulator, d: Draw) -> Path:
    """Write the membership changes of the main app's groups, newest first like Graph."""
    records = []
    for t, gi, u in _joins(sim):
        g = sim.groups[gi]
        records.append(_audit(d, t, g.oid, g.name, u.oid, u.upn))
    for t, gi, u in sim.planted_removals:
        g = sim.groups[gi]
        records.append(_audit(d, t, g.oid, g.name, u.oid, u.upn, added=False))
    records.sort(key=lambda r: (r["activityDateTime"], r["id"]), reverse=True)
    context = f"{GRAPH_ROOT}/$metadata#auditLogs/directoryAudits"
    return write_json(sim.out / AUDIT_FILE, {"@odata.context": context, "value": records})


class Sandbox:
    """The second app: a load-test group it cannot provision, then a stalled job."""

    def __init__(self, sim: Simulator, d: Draw) -> None:
        self.sim, self.d = sim, d
        self.sp_id = d.guid()
        self.job_id = f"scim.{d.hex(32)}.{d.guid()}"
        self.group_id = d.guid()
        self.role_id = d.guid()
        self.records: list[dict[str, Any]] = []
        self.cycles: list[dict[str, Any]] = []
        n = SANDBOX_FAILING + SANDBOX_OK
        self.accounts = [(d.guid(), f"loadtest-{i:04d}@contoso.example") for i in range(1, n + 1)]
        self.assigned_at = sim.end - DAY - 6 * HOUR
        self.joined_at = self.assigned_at + 30 * MINUTE

    def _record(self, t: int, cycle: str, oid: str, upn: str, ok: bool) -> dict[str, Any]:
        sim, d = self.sim, self.d
        f = P.FAILURES["mandatory_missing"]
        error = (
            None
            if ok
            else {
                "errorCode": f["code"],
                "errorCategory": f["category"],
                "reason": f["reason"],
                "additionalDetails": "",
                "recommendedAction": f["recommended"],
            }
        )
        return {
            "id": d.guid(),
            "activityDateTime": fmt_graph_time(t),
            "tenantId": sim.tenant_id,
            "jobId": self.job_id,
            "cycleId": cycle,
            "changeId": d.guid(),
            "provisioningAction": "create",
            "durationInMilliseconds": 150 + d.below(0, 400),
            "servicePrincipal": {"id": self.sp_id, "displayName": SANDBOX_NAME},
            "sourceSystem": sim.C.source_system,
            "targetSystem": {**sim.C.target_system, "displayName": SANDBOX_NAME},
            "initiatedBy": sim.C.initiated_by,
            "sourceIdentity": {
                "id": oid,
                "displayName": upn.split("@")[0],
                "identityType": "User",
                "details": {"UserPrincipalName": upn},
            },
            "targetIdentity": {
                "id": f"sandbox-{oid[:8]}" if ok else "",
                "displayName": "",
                "identityType": "User",
                "details": {},
            },
            "provisioningStatusInfo": {
                "status": "success" if ok else "failure",
                "errorInformation": error,
            },
            "provisioningSteps": [],
            "modifiedProperties": [],
        }

    def _cycle(self, begin: int, items: list[tuple[str, str, bool]], step: int) -> int:
        cycle = self.d.guid()
        t = begin
        for oid, upn, ok in items:
            self.records.append(self._record(t, cycle, oid, upn, ok))
            t += step
        end = t - step
        self.cycles.append({"cycle_id": cycle, "began": begin, "ended": end, "events": len(items)})
        return end

    def simulate(self) -> None:
        """Run the initial cycle, six short incremental ones and a slow one; then nothing."""
        step = int(SANDBOX_MINUTES_PER_OBJECT * MINUTE)
        failing = [(oid, upn, False) for oid, upn in self.accounts[:SANDBOX_FAILING]]
        ok = [(oid, upn, True) for oid, upn in self.accounts[SANDBOX_FAILING:]]
        end = self._cycle(self.joined_at + 20 * MINUTE, failing + ok, step)
        for i in range(SANDBOX_SHORT_CYCLES):
            retry = failing[3 * i : 3 * i + 3]
            end = self._cycle(end + 40 * MINUTE, retry, 2 * SECOND)
        self._cycle(end + 40 * MINUTE, failing[100 : 100 + SANDBOX_SLOW_RETRIES], step)

    def write(self) -> list[Path]:
        """Write the sandbox app's provisioning pages, job, assignment and members files."""
        out = self.sim.out
        paths = []
        ordered = sorted(self.records, key=lambda r: r["activityDateTime"], reverse=True)
        for n, first in enumerate(range(0, len(ordered), PAGE), start=1):
            page = {"@odata.context": PROVISIONING_CONTEXT, "value": ordered[first : first + PAGE]}
            paths.append(write_json(out / f"provisioning-sandbox-{n:02d}.json", page))
        last = self.cycles[-1]
        execution = {
            "activityIdentifier": last["cycle_id"],
            "countEntitled": len(self.accounts),
            "countEscrowed": SANDBOX_FAILING,
            "countExported": 0,
            "countImported": last["events"],
            "state": "EntryLevelErrors",
            "timeBegan": fmt_graph_time(last["began"]),
            "timeEnded": fmt_graph_time(last["ended"]),
        }
        job = {
            "id": self.job_id,
            "templateId": "scim",
            "schedule": {"expiration": None, "interval": "PT40M", "state": "Active"},
            "status": {
                "code": "Active",
                "lastExecution": execution,
                "lastSuccessfulExecution": None,
                "quarantine": None,
                "steadyStateFirstAchievedTime": fmt_graph_time(self.cycles[0]["ended"]),
                "steadyStateLastAchievedTime": fmt_graph_time(self.cycles[0]["ended"]),
            },
        }
        ctx = f"{GRAPH_ROOT}/$metadata#servicePrincipals('{self.sp_id}')"
        paths.append(
            write_json(
                out / f"jobs-{self.sp_id}.json",
                {"@odata.context": f"{ctx}/synchronization/jobs", "value": [job]},
            )
        )
        assignment = {
            "id": self.d.hex(32),
            "deletedDateTime": None,
            "appRoleId": self.role_id,
            "createdDateTime": fmt_graph_time(self.assigned_at),
            "principalDisplayName": LOAD_TEST_GROUP,
            "principalId": self.group_id,
            "principalType": "Group",
            "resourceDisplayName": SANDBOX_NAME,
            "resourceId": self.sp_id,
        }
        paths.append(
            write_json(
                out / f"assignments-{self.sp_id}.json",
                {"@odata.context": f"{ctx}/appRoleAssignedTo", "value": [assignment]},
            )
        )
        members = [
            {
                "@odata.type": "#microsoft.graph.user",
                "id": oid,
                "displayName": upn.split("@")[0],
                "mail": None,
                "userPrincipalName": upn,
            }
            for oid, upn in self.accounts
        ]
        paths.append(
            write_json(
                out / f"members-{self.group_id}.json",
                {"@odata.context": f"{GRAPH_ROOT}/$metadata#directoryObjects", "value": members},
            )
        )
        return paths

    def audit_records(self) -> list[dict[str, Any]]:
        """Return the bulk "Add member to group" records of the load-test accounts."""
        return [
            _audit(self.d, self.joined_at, self.group_id, LOAD_TEST_GROUP, oid, upn)
            for oid, upn in self.accounts
        ]


def plant(sim: Simulator) -> tuple[list[Path], dict[str, Any]]:
    """Write the directory audit (and, when planted, the sandbox app); return paths and truth."""
    d = Draw(np.random.default_rng([sim.sc.seed, 4242]))
    truth: dict[str, Any] = {"planted": bool(sim.sc.planted)}
    paths: list[Path] = []
    extra_audit: list[dict[str, Any]] = []
    if sim.sc.planted:
        box = Sandbox(sim, d)
        box.simulate()
        paths += box.write()
        extra_audit = box.audit_records()
        removed = sim.planted_removals
        truth.update(
            {
                "sandbox": {
                    "service_principal_id": box.sp_id,
                    "service_principal_name": SANDBOX_NAME,
                    "job_id": box.job_id,
                    "group_id": box.group_id,
                    "events": len(box.records),
                    "failing_objects": SANDBOX_FAILING,
                    "succeeded_objects": SANDBOX_OK,
                    "cycles": [
                        {
                            "cycle_id": c["cycle_id"],
                            "started_at": fmt_graph_time(c["began"]),
                            "ended_at": fmt_graph_time(c["ended"]),
                            "events": c["events"],
                        }
                        for c in box.cycles
                    ],
                    "slow_cycle_id": box.cycles[-1]["cycle_id"],
                    "last_run_ended_at": fmt_graph_time(box.cycles[-1]["ended"]),
                    "access_breached_user_ids": [oid for oid, _ in box.accounts[SANDBOX_FAILING:]],
                },
                "missed_deprovisioning": {
                    "user_ids": sorted({u.oid for _, _, u in removed}),
                    "removed_at": fmt_graph_time(removed[0][0]) if removed else None,
                },
            }
        )
    audit = write_directory_audit(sim, d)
    if extra_audit:
        import orjson

        doc = orjson.loads(audit.read_bytes())
        doc["value"] = sorted(
            [*doc["value"], *extra_audit],
            key=lambda r: (r["activityDateTime"], r["id"]),
            reverse=True,
        )
        write_json(audit, doc)
    truth["directory_audit_records"] = (
        len(_joins(sim)) + len(sim.planted_removals) + len(extra_audit)
    )
    return [audit, *paths], truth
