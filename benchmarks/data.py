"""Benchmark data: demo-simulator tenants sized to a number of provisioning events.

The demo simulator (``demo``) writes a realistic tenant: Graph list-response pages of
provisioning records (2-6 steps, several modified properties, failures, skips), the wiki's SCIM
audit log and the scope/state files. For a tier of ``n`` events we simulate enough users, then
write the first ``n`` records of its pages as one Graph list response ``graph-<n>.json``
(``{"@odata.context", "value": [...]}``): the hardest case for memory, one large document.

Generated data is cached under the data directory, keyed by the tier, so re-runs are quick.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import orjson

# Events the demo writes per simulated user (measured: 1.24 at 10k users, 1.05 at 830k, as the
# initial cycle dominates); we simulate a
# margin more and cut the record stream at exactly n.
EVENTS_PER_USER = 0.98
MINUTES_PER_OBJECT = 0.01  # the fastest documented rate, so a 800k-user initial cycle fits 7 days
CONTEXT = "https://graph.microsoft.com/v1.0/$metadata#auditLogs/provisioning"


@dataclass(frozen=True)
class Tier:
    """The files of one benchmark size."""

    events: int
    root: Path

    @property
    def demo_dir(self) -> Path:
        """Directory holding the simulator's raw files (pages, audit, state)."""
        return self.root / "demo"

    @property
    def document(self) -> Path:
        """The single Graph list response holding exactly ``events`` records."""
        return self.root / f"graph-{self.events}.json"

    def pages(self) -> list[Path]:
        """The simulator's Graph pages, in order."""
        return sorted(self.demo_dir.glob("provisioning-*.json"))

    def state_files(self) -> list[Path]:
        """Every non-provisioning raw file of the tenant (audit log, jobs, scope, wiki state)."""
        return sorted(
            p
            for p in self.demo_dir.iterdir()
            if p.suffix in (".json", ".jsonl")
            and not p.name.startswith("provisioning-")
            and p.name != "scenario.json"
        )


def _users_for(events: int) -> int:
    return max(100, min(1_000_000, math.ceil(events / EVENTS_PER_USER)))


def prepare(events: int, data_dir: Path, log: object = None) -> Tier:
    """Return the tier of ``events`` events, simulating and writing it unless cached."""
    from demo import Scenario, generate

    tier = Tier(events, data_dir / f"tier-{events}")
    done = tier.root / ".complete"
    if done.exists() and tier.document.exists():
        return tier
    if tier.root.exists():
        shutil.rmtree(tier.root)
    tier.root.mkdir(parents=True)
    generate(
        Scenario(users=_users_for(events), minutes_per_object=MINUTES_PER_OBJECT),
        tier.demo_dir,
    )
    written = _write_document(tier.pages(), tier.document, events)
    if written < events:
        raise RuntimeError(f"the simulator wrote {written} events, fewer than {events}")
    done.write_text("ok\n")
    return tier


def _write_document(pages: list[Path], out: Path, limit: int) -> int:
    """Write the first ``limit`` records of ``pages`` as one Graph list response; return count."""
    n = 0
    with out.open("wb", buffering=1 << 22) as fh:
        fh.write(b'{"@odata.context":' + orjson.dumps(CONTEXT) + b',"value":[')
        for page in pages:
            records = orjson.loads(page.read_bytes())["value"]
            for rec in records:
                if n >= limit:
                    break
                if n:
                    fh.write(b",")
                fh.write(orjson.dumps(rec))
                n += 1
            if n >= limit:
                break
        fh.write(b"]}")
    return n
