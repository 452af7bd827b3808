"""The demo's ground truth: the planted failures and what ``scenario.json`` says happened.

:class:`Simulator` is the whole demo tenant (:class:`demo.entra.Entra` and below) plus the planted
persistent failures and the ground truth the reports are checked against.
"""

from __future__ import annotations

from typing import Any

from demo.entra import Entra
from demo.scenario import (
    APP_NAME,
    CONTRACTORS,
    DOCS_MAX_MINUTES_PER_OBJECT,
    DOCS_MIN_MINUTES_PER_OBJECT,
    TENANT_NAME,
    WIKI_HOST,
)
from demo.writers import fmt_graph_time
from ingest.errors import UsageError


class Simulator(Entra):
    """Runs the scenario and writes the raw files; ``truth`` holds the ground truth."""

    def plan_failures(self) -> None:
        """Pick the users whose provisioning fails persistently, and the planned transients."""
        counts = self.sc.failure_counts()
        candidates = [
            u.idx
            for u in self.users
            if u.special is None and self.in_scope(u) and u.department != CONTRACTORS
        ]
        need = sum(counts.values()) + self.sc.wiki_missing
        if len(candidates) < need:
            raise UsageError("too few users for the injected failures; raise --users")
        order = self.rng.permutation(len(candidates)).tolist()
        picks = iter(candidates[i] for i in order)
        window = self.end - self.start
        for kind in ("conflict", "mandatory_missing"):
            for k in range(counts[kind]):
                u = self.users[next(picks)]
                u.special = kind
                if k < round(counts[kind] * self.sc.fixed_fraction):
                    u.fix_at = self.start + int(window * (0.55 + 0.35 * self.d.u()))
                if kind == "mandatory_missing":
                    u.mail = None
                else:
                    self._stale_account(u)
        for kind in ("throttled", "server_error"):
            for _ in range(counts[kind]):
                self.planned_initial[next(picks)] = kind
        for _ in range(self.sc.wiki_missing):
            u = self.users[next(picks)]
            u.special = "wiki_missing"
            self.entra_only.append(u.oid)

    def truth(self, files: list[str]) -> dict[str, Any]:
        """Return the ground truth written to scenario.json."""
        in_scope = [u for u in self.users if self.in_scope(u)]
        out = [u for u in self.users if not u.deleted and not self.in_scope(u)]
        nested = {g.idx for g in self.groups if g.role is None}
        groups = [g for g in self.groups if g.role in ("user", "admin")]
        wiki_users = [
            u for u in self.users if u.wiki_attrs is not None and u.special != "wiki_missing"
        ]
        cycles = [
            {
                "cycle_id": c.cycle_id,
                "started_at": fmt_graph_time(c.first_event),
                "ended_at": fmt_graph_time(c.last_event or c.first_event),
                "events": c.events,
                "kind": "initial" if i == 0 else "incremental",
                "quarantined": c.quarantined,
            }
            for i, c in enumerate(self.cycles)
            if c.first_event is not None
        ]
        correlation = dict(sorted(self.correlation.items()))
        correlation["wiki_only"] = len(self.wiki_only)
        return {
            "label": f"{TENANT_NAME}: simulated data, not a real tenant",
            "scenario": self.sc.to_json(),
            "tenant": {
                "tenant_id": self.tenant_id,
                "tenant_name": TENANT_NAME,
                "service_principal_id": self.sp_id,
                "service_principal_name": APP_NAME,
                "app_id": self.app_id,
                "job_id": self.job_id,
                "wiki_host": WIKI_HOST,
            },
            "window": {"start": fmt_graph_time(self.start), "end": fmt_graph_time(self.end)},
            "rate": {
                "minutes_per_object": self.sc.minutes_per_object,
                "objects_per_min": self.sc.objects_per_min,
                "docs_min_minutes_per_object": DOCS_MIN_MINUTES_PER_OBJECT,
                "docs_max_minutes_per_object": DOCS_MAX_MINUTES_PER_OBJECT,
            },
            "initial_cycle": self.initial,
            "cycles": cycles,
            "cycles_run": len(self.cycles),
            "events": {
                "total": self.pages.records,
                "by_action_status": self.by_action_status,
            },
            "failures": {
                k: {
                    "error_code": v["error_code"],
                    "events": v["events"],
                    "objects": len(v["objects"]),
                }
                for k, v in self.truth_fail.items()
            },
            "skips": {
                k: {
                    "skip_reason": "NotEffectivelyEntitled",
                    "events": v["events"],
                    "objects": len(v["objects"]),
                }
                for k, v in self.truth_skip.items()
            },
            "noise": {
                "skip_events": sum(v["events"] for v in self.truth_skip.values()),
                "noop_update_events": self.noise_noop,
            },
            "changes": self.changes,
            "scope_at_end": {
                "users_total": sum(1 for u in self.users if not u.deleted),
                "in_scope_users": len(in_scope),
                "scoping_filtered_users": sum(1 for u in in_scope if u.department == CONTRACTORS),
                "nested_group_users_not_in_scope": sum(
                    1 for u in out if any(gi in nested for gi in u.groups)
                ),
                "default_access_users_not_in_scope": sum(
                    1 for u in out if u.direct_role == "default" or 0 in u.groups
                ),
                "unassigned_users": sum(1 for u in out if not u.groups and not u.direct_role),
                "assigned_groups": len(groups),
                "objects_in_scope": len(in_scope) + len(groups),
                "escrowed": len(self.escrowed),
            },
            "wiki": {
                "requests": self.requests,
                "users": len(wiki_users) + sum(1 for r in self.wiki_extra if r),
                "users_active": sum(1 for u in wiki_users if u.wiki_active)
                + sum(1 for r in self.wiki_extra if r and r["active"]),
                "groups": sum(1 for g in self.groups if g.scim_id is not None),
                "wiki_only_request_ids": self.wiki_only,
                "orphan_user_ids": self.orphans,
                "entra_only_user_ids": self.entra_only,
                "stale_conflict_accounts": sum(1 for r in self.wiki_extra if r) - len(self.orphans),
            },
            "expected_reports": {
                "correlation_verdicts": correlation,
                "coverage_verdicts": self.expected_coverage(),
            },
            "files": files,
        }

    def expected_coverage(self) -> dict[str, int]:
        """Return the DESIGN.md coverage verdict counts the final state should produce."""
        listed: set[int] = set()
        for g in self.groups:
            listed.update(g.members)  # every members file (assigned, default, nested groups)
        counts: dict[str, int] = {}
        for u in self.users:
            in_wiki = u.wiki_attrs is not None and u.special != "wiki_missing"
            stale = u.idx in self.stale_by_user
            assigned = u.direct_role is not None and not u.deleted
            known = assigned or u.idx in listed or u.idx in self.last_status or in_wiki or stale
            if not known:
                continue
            scope = self.in_scope(u)
            wiki = (
                "active"
                if in_wiki and u.wiki_active
                else ("inactive" if in_wiki or stale else "absent")
            )
            last = self.last_status.get(u.idx)
            if scope and wiki == "active":
                verdict = "provisioned"
            elif scope and last == "failure":
                verdict = "failed"
            elif scope and last == "skipped":
                verdict = "skipped"
            elif scope and last is None:
                verdict = "pending"
            elif scope and last == "success":
                verdict = "missing_in_wiki"
            elif not scope and wiki == "active" and last is not None:
                verdict = "should_be_disabled"
            else:
                verdict = "excluded"
            counts[verdict] = counts.get(verdict, 0) + 1
        counts["orphaned"] = len(self.orphans)
        return dict(sorted(counts.items()))
