"""Build the demo: simulate the tenant into raw files, then load them through ``ingest_files``."""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson
import pandas as pd

from demo.scenario import TENANT_NAME, Scenario
from demo.simulate import generate
from demo.tenant import HOUR
from ingest.errors import UsageError
from ingest.files import IngestResult, ingest_files
from ingest.formats import Options
from ingest.store import Store

log = logging.getLogger(__name__)

DEMO_STORE_DIR: Final = "demo-store"
SCENARIO_FILE: Final = "scenario.json"
# Names the demo writes; only these are removed from a raw directory before a new run.
_OWN_PATTERNS: Final = (
    "provisioning-*.json",
    "jobs-*.json",
    "assignments-*.json",
    "members-*.json",
    "wiki-users.json",
    "wiki-groups.json",
    "wiki-scim-audit.jsonl",
    "directory-audit.json",
    SCENARIO_FILE,
)


def demo_store_path() -> Path:
    """Return the demo's own store (beside, never equal to, the default store)."""
    import platformdirs

    return Path(platformdirs.user_data_dir("provlens", appauthor=False)) / DEMO_STORE_DIR


def end_of_window(now: pd.Timestamp) -> str:
    """Return ``now`` floored to the hour as the ISO end of the demo's data window."""
    ts = now.tz_convert("UTC") if now.tzinfo is not None else now.tz_localize("UTC")
    return ts.floor("h").strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class DemoResult:
    """What a demo build produced and how long each half took."""

    store_path: Path
    raw_dir: Path
    truth: dict[str, Any]
    generate_seconds: float
    ingest_seconds: float
    ingest: list[IngestResult]


def _written_by_demo(raw_dir: Path) -> bool:
    marker = raw_dir / SCENARIO_FILE
    if not marker.is_file():
        return False
    try:
        label = orjson.loads(marker.read_bytes()).get("label", "")
    except (orjson.JSONDecodeError, AttributeError):
        return False
    return isinstance(label, str) and label.startswith(TENANT_NAME)


def clear_raw(raw_dir: Path) -> int:
    """Remove the files an earlier demo wrote into ``raw_dir``; return how many.

    Refuses (UsageError) when the directory holds files of those names that a demo did not write,
    so ``--out`` never deletes a real download.
    """
    found = sorted({p for pattern in _OWN_PATTERNS for p in raw_dir.glob(pattern)})
    if not found:
        return 0
    if not _written_by_demo(raw_dir):
        raise UsageError(
            f"{raw_dir}: already holds {found[0].name} and other files the demo did not write; "
            "choose an empty directory for --out"
        )
    for p in found:
        p.unlink()
    return len(found)


def build(
    scenario: Scenario,
    store_path: Path,
    raw_dir: Path | None = None,
    *,
    fresh_store: bool = False,
    progress: bool = False,
) -> DemoResult:
    """Simulate ``scenario`` into ``raw_dir`` (default ``<store>/raw``) and ingest it."""
    raw = raw_dir if raw_dir is not None else store_path / "raw"
    if fresh_store and store_path.exists():
        if store_path.name != DEMO_STORE_DIR:
            raise UsageError(f"{store_path}: refusing to reset a store that is not the demo's")
        log.info("resetting the demo store %s", store_path)
        shutil.rmtree(store_path)
    raw.mkdir(parents=True, exist_ok=True)
    removed = clear_raw(raw)
    if removed:
        log.info("removed %d files of an earlier demo from %s", removed, raw)

    t0 = time.perf_counter()
    bar = None
    tick = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=scenario.days * 24, unit="h", desc="demo: simulating", leave=False)
        start_ticks: list[int] = []

        def tick(t: int) -> None:
            if not start_ticks:
                start_ticks.append(t)
            assert bar is not None
            hours = min(bar.total, int((t - start_ticks[0]) // HOUR))
            if hours != bar.n:
                bar.update(hours - bar.n)

    try:
        truth = generate(scenario, raw, tick)
    finally:
        if bar is not None:
            bar.close()
    generated = time.perf_counter() - t0
    log.info("demo: generated %d events in %.1f s", truth["events"]["total"], generated)

    t1 = time.perf_counter()
    store = Store(store_path)
    end = pd.Timestamp(truth["window"]["end"])
    quarantine = truth.get("quarantine", {}).get("snapshot_file")
    paths = [raw / f for f in truth["files"] if f != quarantine]
    results = [
        ingest_files(
            store, paths, options=Options(origin="demo", captured_at=end), progress=progress
        )
    ]
    if quarantine:
        # A second snapshot of the job, taken while it was quarantined.
        captured = pd.Timestamp(truth["quarantine"]["captured_at"])
        results.append(
            ingest_files(
                store, [raw / quarantine], options=Options(origin="demo", captured_at=captured)
            )
        )
    ingested = time.perf_counter() - t1
    log.info("demo: ingested %d files in %.1f s", len(truth["files"]), ingested)
    return DemoResult(store_path, raw, truth, generated, ingested, results)
