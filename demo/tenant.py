"""The demo tenant's directory: seeded draws, users, groups and their assignments.

:class:`Tenant` holds the seeded random source and the Entra side's directory objects as they stand
at the start of the window, plus the movers' attribute changes. The SCIM side is in
:mod:`demo.wiki`, provisioning in :mod:`demo.entra`, the ground truth in :mod:`demo.truth`.
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np

from demo import payloads as P
from demo.scenario import (
    CONTRACTORS,
    DEPARTMENTS,
    DOMAIN,
    FAMILY_NAMES,
    GIVEN_NAMES,
    JOB_TITLES,
    TRICKY_USERS,
    Scenario,
)

SECOND: Final = 10_000_000  # ticks of 100 ns
MINUTE: Final = 60 * SECOND
HOUR: Final = 60 * MINUTE
DAY: Final = 24 * HOUR
DEFAULT_ACCESS: Final = "00000000-0000-0000-0000-000000000000"


class Draw:
    """Buffered draws from one seeded numpy Generator: cheap scalars, reproducible order."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self._u: list[float] = []
        self._ui = 0
        self._b = b""
        self._bi = 0

    def u(self) -> float:
        """Return a uniform float in [0, 1)."""
        if self._ui >= len(self._u):
            self._u = self.rng.random(1 << 16).tolist()
            self._ui = 0
        v = self._u[self._ui]
        self._ui += 1
        return v

    def below(self, lo: int, hi: int) -> int:
        """Return an integer in [lo, hi)."""
        return lo + int(self.u() * (hi - lo))

    def choice(self, seq: tuple | list) -> Any:
        """Return one element of ``seq``."""
        return seq[int(self.u() * len(seq))]

    def bytes(self, n: int) -> bytes:
        """Return ``n`` random bytes."""
        if self._bi + n > len(self._b):
            self._b = self.rng.bytes(1 << 20)
            self._bi = 0
        v = self._b[self._bi : self._bi + n]
        self._bi += n
        return v

    def guid(self) -> str:
        """Return a random (version 4) GUID string."""
        h = bytearray(self.bytes(16))
        h[6] = (h[6] & 0x0F) | 0x40
        h[8] = (h[8] & 0x3F) | 0x80
        x = h.hex()
        return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"

    def hex(self, n: int) -> str:
        """Return ``n`` random hex digits."""
        return self.bytes((n + 1) // 2).hex()[:n]


@dataclass(slots=True)
class User:
    """An Entra user and, in ``wiki``, what the wiki holds for it."""

    idx: int
    oid: str
    given: str
    family: str
    display: str
    upn: str
    mail: str | None
    department: str
    title: str
    direct_role: str | None = None  # "user", "admin" or "default"
    groups: list[int] = field(default_factory=list)  # direct memberships
    deleted: bool = False
    special: str | None = None  # conflict, mandatory_missing, wiki_missing, tricky
    fix_at: int | None = None  # when an admin fixes the persistent failure
    scim_id: str | None = None
    wiki_active: bool = False
    wiki_attrs: tuple[str, str, str, str | None, str, str] | None = None
    created_at: int = 0
    modified_at: int = 0
    assigned_at: int = 0


@dataclass(slots=True)
class Group:
    """An Entra group: assigned with a role, with Default Access, or nested in another group."""

    idx: int
    oid: str
    name: str
    role: str | None  # "user", "admin", "default" or None (nested, not assigned)
    parent: int | None = None
    members: list[int] = field(default_factory=list)
    scim_id: str | None = None
    created_at: int = 0
    modified_at: int = 0
    assigned_at: int = 0


class Pool:
    """A set of user indexes with O(1) add, remove and random pick."""

    def __init__(self) -> None:
        self.items: list[int] = []
        self.pos: dict[int, int] = {}

    def add(self, x: int) -> None:
        """Add ``x`` (no-op when present)."""
        if x not in self.pos:
            self.pos[x] = len(self.items)
            self.items.append(x)

    def remove(self, x: int) -> None:
        """Remove ``x`` (no-op when absent)."""
        i = self.pos.pop(x, None)
        if i is None:
            return
        last = self.items.pop()
        if i < len(self.items):
            self.items[i] = last
            self.pos[last] = i

    def pick(self, d: Draw) -> int | None:
        """Return a random member, or None when empty."""
        return self.items[d.below(0, len(self.items))] if self.items else None

    def __len__(self) -> int:
        return len(self.items)


def parse_end(text: str) -> int:
    """Return the ISO time ``text`` (UTC) as ticks since the Unix epoch."""
    t = text.rstrip("Z").replace("T", " ")
    st = time.strptime(t[:19], "%Y-%m-%d %H:%M:%S")
    return calendar.timegm(st) * SECOND


class Tenant:
    """The seeded draws and the directory: users, groups, assignments."""

    def __init__(self, sc: Scenario, out: Path, tick: Callable[[int], None] | None = None) -> None:
        self.sc = sc
        self.out = out
        self.tick = tick or (lambda _t: None)
        self.rng = np.random.default_rng(sc.seed)
        self.d = Draw(self.rng)
        self.end = parse_end(sc.end)
        self.start = self.end - sc.days * DAY
        d = self.d
        self.tenant_id = d.guid()
        self.sp_id = d.guid()
        self.app_id = d.guid()
        self.job_id = f"scim.{d.hex(32)}.{d.guid()}"
        self.role_ids = {"user": d.guid(), "admin": d.guid(), "default": DEFAULT_ACCESS}
        self.C = P.Constants(
            self.tenant_id, self.job_id, self.sp_id, self.app_id, d.guid(), d.guid()
        )
        self.users: list[User] = []
        self.groups: list[Group] = []
        self.upns: dict[str, int] = {}
        self.active = Pool()
        self.outscope = Pool()

    def _new_user(
        self,
        at: int,
        given: str | None = None,
        family: str | None = None,
        display: str | None = None,
    ) -> User:
        d = self.d
        given = given or d.choice(GIVEN_NAMES)
        family = family or d.choice(FAMILY_NAMES)
        base = f"{given}.{family}".lower()
        n = self.upns.get(base, 0) + 1
        self.upns[base] = n
        local = base if n == 1 else f"{base}{n}"
        dept = d.choice(DEPARTMENTS)
        u = User(
            idx=len(self.users),
            oid=d.guid(),
            given=given,
            family=family,
            display=display or f"{given} {family}",
            upn=f"{local}@{DOMAIN}",
            mail=f"{local}@{DOMAIN}",
            department=dept,
            title=d.choice(JOB_TITLES[dept]),
            created_at=at,
        )
        self.users.append(u)
        return u

    def build_tenant(self) -> None:
        """Create users, groups and assignments as they stand at the start of the window."""
        sc, d = self.sc, self.d
        before = self.start - 400 * DAY
        ng = sc.group_count
        n_nested = max(1, ng // 10)
        # group 0: All Staff with Default Access; then nested groups; the rest assigned.
        names = self._group_names(ng)
        for i in range(ng):
            role: str | None
            if i == 0:
                role = "default"
            elif i <= n_nested:
                role = None
            else:
                role = "admin" if i % 7 == 0 else "user"
            g = Group(i, d.guid(), names[i], role, created_at=before + d.below(0, 300) * DAY)
            g.assigned_at = self.start - d.below(1, 60) * DAY - d.below(0, DAY)
            self.groups.append(g)
        assigned = [g.idx for g in self.groups if g.role in ("user", "admin")]
        for g in self.groups[1 : n_nested + 1]:
            g.parent = assigned[d.below(0, len(assigned))]
        for given, family, display in TRICKY_USERS:
            u = self._new_user(before, given, family, display)
            u.special = "tricky"
            self._join(u, assigned[d.below(0, len(assigned))])
        while len(self.users) < sc.users:
            u = self._new_user(before + d.below(0, 390) * DAY)
            r = d.u()
            if r < 0.08:
                u.direct_role = "admin" if d.u() < 0.1 else "user"
                u.assigned_at = self.start - d.below(1, 90) * DAY
                if d.u() < 0.3:
                    self._join(u, assigned[d.below(0, len(assigned))])
            elif r < 0.80:
                self._join(u, assigned[d.below(0, len(assigned))])
                if d.u() < 0.15:
                    self._join(u, assigned[d.below(0, len(assigned))])
            elif r < 0.85:
                self._join(u, d.below(1, n_nested + 1))  # only through a nested group
            elif r < 0.90:
                if d.u() < 0.1:
                    u.direct_role = "default"
                    u.assigned_at = self.start - d.below(1, 90) * DAY
                else:
                    self._join(u, 0)
            # else: not assigned at all
            if d.u() < 0.2 and 0 not in u.groups:
                self._join(u, 0)  # All Staff is assigned with Default Access only
            if r < 0.80 and d.u() < 0.02:
                u.department, u.title = CONTRACTORS, "Contractor"

    def _group_names(self, n: int) -> list[str]:
        names = ["All Staff (Default Access)"]
        teams = [f"Wiki Readers - {dep}" for dep in DEPARTMENTS]
        teams += [f"Wiki Editors - {dep}" for dep in DEPARTMENTS]
        nested = [f"{dep} Interns" for dep in DEPARTMENTS]
        n_nested = max(1, n // 10)
        for i in range(n_nested):
            names.append(nested[i % len(nested)] + ("" if i < len(nested) else f" {i}"))
        i = 0
        while len(names) < n:
            base = teams[i % len(teams)]
            names.append(base if i < len(teams) else f"{base} {i // len(teams) + 1}")
            i += 1
        return names

    def _join(self, u: User, gi: int) -> None:
        if gi not in u.groups:
            u.groups.append(gi)
            self.groups[gi].members.append(u.idx)

    def _leave_all(self, u: User) -> list[int]:
        """Remove ``u`` from its direct assignment and assigned groups; return the groups left."""
        left = [gi for gi in u.groups if self.groups[gi].role in ("user", "admin")]
        for gi in left:
            self.groups[gi].members.remove(u.idx)
        u.groups = [gi for gi in u.groups if gi not in left]
        if u.direct_role in ("user", "admin"):
            u.direct_role = None
        return left

    def in_scope(self, u: User) -> bool:
        """True when assigned directly or as a direct group member with a non-default role."""
        if u.deleted:
            return False
        if u.direct_role in ("user", "admin"):
            return True
        return any(self.groups[gi].role in ("user", "admin") for gi in u.groups)

    def _move(self, u: User) -> list[tuple[str, str, str, str]]:
        """Change a mover's attributes in Entra; return (SCIM path, property, old, new)."""
        d = self.d
        r = d.u()
        if r < 0.6:
            dept = d.choice([x for x in DEPARTMENTS if x != u.department])
            title = d.choice(JOB_TITLES[dept])
            out = [
                (P.DEPARTMENT_PATH, P.DEPARTMENT_PATH, u.department, dept),
                ("title", "title", u.title, title),
            ]
            u.department, u.title = dept, title
        elif r < 0.85 and u.special != "tricky":
            family = d.choice([x for x in FAMILY_NAMES if x != u.family][:40])
            display = f"{u.given} {family}"
            out = [
                ("name.familyName", "name.familyName", u.family, family),
                ("displayName", "displayName", u.display, display),
            ]
            u.family, u.display = family, display
        else:
            title = d.choice([x for x in JOB_TITLES[u.department] if x != u.title] or [u.title])
            out = [("title", "title", u.title, title)]
            u.title = title
        return out
