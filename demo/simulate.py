"""The demo tenant simulator: Entra provisioning users and groups into the wiki over SCIM.

:func:`generate` builds a tenant (users, assigned and nested groups, direct and Default Access
assignments), runs one initial cycle at the scenario's throughput and then incremental cycles about
every 40 minutes (joiners, movers, leavers, out-of-scope noise, escrowed retries, an optional
quarantine), and writes what each side would record: Graph provisioning-log pages, the sync job,
the app's role assignments and group members, the wiki's SCIM audit log and its final SCIM state,
plus ``scenario.json`` with the ground truth. Times are derived from ``Scenario.end`` only.

The simulator is split by concern: :mod:`demo.tenant` (seeded draws, users, groups),
:mod:`demo.wiki` (SCIM side), :mod:`demo.entra` (provisioning cycles and events),
:mod:`demo.truth` (planted failures, ground truth), :mod:`demo.writers` (file formats).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from demo.planted import plant
from demo.scenario import Scenario
from demo.tenant import MINUTE
from demo.truth import Simulator
from demo.writers import fmt_graph_time, write_json


def generate(sc: Scenario, out: Path, tick: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Simulate ``sc`` and write every raw file plus scenario.json into ``out``; return truth."""
    out.mkdir(parents=True, exist_ok=True)
    sim = Simulator(sc, out, tick)
    sim.build_tenant()
    sim.plan_failures()
    sim.run_initial_cycle()
    sim.run_incremental_cycles()
    if not sim.extras_done:
        sim.wiki_side_extras(sim.cycles[-1].ended + MINUTE)
    pages = sim.pages.close()
    audit = sim.audit.close()
    paths = [*pages, audit, *sim.write_state_files()]
    if sim.quarantine_snapshot is not None:
        snap = sim.quarantine_snapshot
        captured = snap.pop("_captured")
        path = write_json(out / f"jobs-{sim.sp_id}-quarantine.json", snap)
        paths.append(path)
        sim.quarantine_captured_at = fmt_graph_time(captured)
    planted_paths, planted = plant(sim)
    paths += planted_paths
    files = sorted(p.name for p in paths)
    truth = sim.truth(files)
    truth["planted"] = planted
    sandbox = planted.get("sandbox")
    if sandbox:
        # The sandbox app's records and load-test accounts are part of what the reports see.
        truth["events"]["total"] += sandbox["events"]
        verdicts = truth["expected_reports"]["coverage_verdicts"]
        verdicts["failed"] = verdicts.get("failed", 0) + sandbox["failing_objects"]
        verdicts["missing_in_wiki"] = (
            verdicts.get("missing_in_wiki", 0) + sandbox["succeeded_objects"]
        )
        truth["expected_reports"]["coverage_verdicts"] = dict(sorted(verdicts.items()))
    if sim.quarantine_snapshot is not None:
        truth["quarantine"] = {
            "snapshot_file": f"jobs-{sim.sp_id}-quarantine.json",
            "captured_at": sim.quarantine_captured_at,
        }
    write_json(out / "scenario.json", truth)
    return truth
