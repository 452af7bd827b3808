"""The demo wiki's side: SCIM resources, the audit log of every request, wiki-only accounts.

:class:`Wiki` adds to :class:`demo.tenant.Tenant` what the wiki records: each SCIM request as an
audit line (``wiki-scim-audit.jsonl``), the resources it answers with, the stale and orphan accounts
Entra does not manage, and the final ``wiki-users.json``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import orjson

from demo import payloads as P
from demo.scenario import DOMAIN, Scenario
from demo.tenant import DAY, MINUTE, SECOND, Group, Tenant, User
from demo.writers import OrderedJsonLines, fmt_ms_time

ENTRA_CLIENTS: Final = ("203.0.113.7", "203.0.113.12", "203.0.113.29")
ADMIN_CLIENT: Final = "198.51.100.23"
MEMBERS_PER_PATCH: Final = 50
AUDIT_FILE: Final = "wiki-scim-audit.jsonl"


class Wiki(Tenant):
    """The tenant plus the wiki's SCIM side."""

    def __init__(self, sc: Scenario, out: Path, tick: Callable[[int], None] | None = None) -> None:
        super().__init__(sc, out, tick)
        self.wiki_extra: list[dict[str, Any]] = []  # stale and orphan accounts, as resources
        self.stale_by_user: dict[int, int] = {}  # user idx -> index in wiki_extra
        self.wiki_only: list[str] = []
        self.orphans: list[str] = []
        self.requests = 0
        self._last_rid = ""
        self.extras_done = False
        self._req_buf: list[int] = []  # statuses of the requests made for the next event
        # Requests run up to a minute after their event; hold lines 5 minutes to write in order.
        self.audit = OrderedJsonLines(out / AUDIT_FILE, horizon=5 * MINUTE)

    def request(
        self,
        t: int,
        method: str,
        path: str,
        status: int,
        request: dict[str, Any] | None = None,
        response: dict[str, Any] | None = None,
        client: str | None = None,
    ) -> str:
        """Write one wiki audit record at ``t``; return its request id."""
        rid = f"r-{self.d.hex(16)}"
        rec: dict[str, Any] = {
            "time": fmt_ms_time(t),
            "request_id": rid,
            "method": method,
            "path": path,
            "status": status,
            "latency_ms": self.d.below(12, 90) if method == "GET" else self.d.below(25, 240),
            "client": client or self.d.choice(ENTRA_CLIENTS),
        }
        if request is not None:
            rec["request"] = request
        if response is not None:
            rec["response"] = response
        self.audit.add_at(t, rec)
        self.requests += 1
        self._last_rid = rid
        self._req_buf.append(status)
        return rid

    def _resource(
        self,
        scim_id: str,
        external_id: str | None,
        user_name: str,
        given: str,
        family: str,
        display: str,
        mail: str | None,
        department: str | None,
        title: str | None,
        active: bool,
        created: int,
        modified: int,
    ) -> dict[str, Any]:
        res: dict[str, Any] = {"schemas": [P.CORE_USER, P.ENTERPRISE_USER], "id": scim_id}
        if external_id:
            res["externalId"] = external_id
        res["userName"] = user_name
        res["name"] = {"formatted": f"{given} {family}", "familyName": family, "givenName": given}
        res["displayName"] = display
        res["active"] = active
        if mail:
            res["emails"] = [{"value": mail, "type": "work", "primary": True}]
        if title:
            res["title"] = title
        if department:
            res[P.ENTERPRISE_USER] = {"department": department}
        res["meta"] = {
            "resourceType": "User",
            "created": fmt_ms_time(created),
            "lastModified": fmt_ms_time(modified),
            "location": P.location(P.user_path(scim_id)),
        }
        return res

    def user_resource(self, u: User) -> dict[str, Any]:
        """Return the wiki's SCIM resource for ``u`` as the wiki currently holds it."""
        assert u.scim_id is not None and u.wiki_attrs is not None
        display, given, family, mail, dept, title = u.wiki_attrs
        return self._resource(
            u.scim_id,
            u.oid,
            u.upn,
            given,
            family,
            display,
            mail,
            dept,
            title,
            u.wiki_active,
            u.created_at,
            u.modified_at,
        )

    def _post_body(self, u: User) -> dict[str, Any]:
        body: dict[str, Any] = {
            "schemas": [P.CORE_USER, P.ENTERPRISE_USER],
            "externalId": u.oid,
            "userName": u.upn,
            "active": True,
            "displayName": u.display,
            "emails": [{"primary": True, "type": "work", "value": u.mail}],
            "meta": {"resourceType": "User"},
            "name": {
                "formatted": f"{u.given} {u.family}",
                "familyName": u.family,
                "givenName": u.given,
            },
            "title": u.title,
            P.ENTERPRISE_USER: {"department": u.department},
            "roles": [],
        }
        return body

    def _group_resource(self, g: Group) -> dict[str, Any]:
        assert g.scim_id is not None
        return {
            "schemas": [P.CORE_GROUP],
            "id": g.scim_id,
            "externalId": g.oid,
            "displayName": g.name,
            "meta": {
                "resourceType": "Group",
                "created": fmt_ms_time(g.created_at),
                "lastModified": fmt_ms_time(g.modified_at),
                "location": P.location(P.group_path(g.scim_id)),
            },
        }

    def _member_patches(self, g: Group, t: int, adds: list[int], removes: list[int]) -> None:
        """PATCH the group's members in batches, within a minute after the event at ``t``."""
        assert g.scim_id is not None
        ops: list[tuple[str, list[int]]] = [
            ("Add", adds[i : i + MEMBERS_PER_PATCH]) for i in range(0, len(adds), MEMBERS_PER_PATCH)
        ]
        ops += [
            ("Remove", removes[i : i + MEMBERS_PER_PATCH])
            for i in range(0, len(removes), MEMBERS_PER_PATCH)
        ]
        if not ops:
            return
        gap = min(SECOND, 60 * SECOND // len(ops))
        for k, (op, chunk) in enumerate(ops, start=1):
            value = [{"$ref": None, "value": self.users[m].scim_id} for m in chunk]
            self.request(
                t + k * gap,
                "PATCH",
                P.group_path(g.scim_id),
                204,
                P.patch_body([(op, "members", value)]),
            )
        g.modified_at = t + len(ops) * gap
        self._req_buf.clear()  # these follow the group's event, which is already counted

    def _stale_account(self, u: User) -> None:
        """A deactivated wiki account holding ``u``'s userName in other letter case."""
        local, domain = u.upn.split("@")
        user_name = ".".join(p.capitalize() for p in local.split(".")) + "@" + domain
        created = self.start - self.d.below(200, 700) * DAY
        res = self._resource(
            self.d.hex(20),
            None,
            user_name,
            u.given,
            u.family,
            f"{u.given} {u.family}",
            user_name,
            None,
            None,
            False,
            created,
            created + self.d.below(1, 150) * DAY,
        )
        self.stale_by_user[u.idx] = len(self.wiki_extra)
        self.wiki_extra.append(res)

    def wiki_side_extras(self, t: int) -> None:
        """Orphans: accounts the wiki has that Entra does not manage (one made over SCIM at t)."""
        d = self.d
        self.extras_done = True
        for k in range(self.sc.wiki_orphans):
            given, family = ("Wiki", "Backup") if k == 0 else ("Legacy", f"Admin{k}")
            user_name = f"svc-{given.lower()}-{family.lower()}@{DOMAIN}"
            scim_id = d.hex(20)
            if k == 0:
                body = {
                    "schemas": [P.CORE_USER],
                    "userName": user_name,
                    "active": True,
                    "displayName": f"{given} {family} (service account)",
                    "name": {"givenName": given, "familyName": family},
                    "emails": [{"primary": True, "type": "work", "value": user_name}],
                }
                res = self._resource(
                    scim_id,
                    None,
                    user_name,
                    given,
                    family,
                    f"{given} {family} (service account)",
                    user_name,
                    None,
                    None,
                    True,
                    t,
                    t,
                )
                self.request(t, "POST", P.user_path(), 201, body, res, client=ADMIN_CLIENT)
                self.wiki_only.append(self._last_rid)
                self.request(
                    t + 3 * SECOND,
                    "GET",
                    P.user_path(scim_id),
                    200,
                    response=res,
                    client=ADMIN_CLIENT,
                )
                self.wiki_only.append(self._last_rid)
            else:
                created = self.start - d.below(100, 900) * DAY
                res = self._resource(
                    scim_id,
                    None,
                    user_name,
                    given,
                    family,
                    f"{given} {family}",
                    user_name,
                    None,
                    None,
                    True,
                    created,
                    created,
                )
            self.wiki_extra.append(res)
            self.orphans.append(scim_id)
        self._req_buf.clear()  # wiki-only traffic belongs to no event

    def _write_wiki_users(self) -> Path:
        """The wiki's users as one ListResponse, streamed resource by resource."""
        chunks = []
        count = 0
        for u in self.users:
            if u.scim_id is not None and u.wiki_attrs is not None and u.special != "wiki_missing":
                chunks.append(orjson.dumps(self.user_resource(u)))
                count += 1
        for res in self.wiki_extra:
            if res:
                chunks.append(orjson.dumps(res))
                count += 1
        head = orjson.dumps(
            {
                "schemas": [P.LIST_RESPONSE],
                "totalResults": count,
                "itemsPerPage": count,
                "startIndex": 1,
            }
        )
        path = self.out / "wiki-users.json"
        path.write_bytes(head[:-1] + b',"Resources":[' + b",".join(chunks) + b"]}")
        return path
