"""Crash safety: kill -9 at random points during ingest; the store stays consistent and a re-run
completes with exact counts. Readers running during ingest never error and never see half a batch.

Each kill runs the CLI (``provlens.cli.main``) in a child process: forked from the test process
(whose imports are already warm, so a ~1 s ingest is not dwarfed by a 5-10 s interpreter start),
plus real ``python -m provlens`` subprocesses. The parent kills the child with SIGKILL after a
seeded random delay spread over the whole run (parse, part writes, key resolution, manifest
replace, clean-up), then checks:

* the manifest parses; every part it lists exists; its row counts equal the parts' row counts;
  ``store info`` and a read of every table work and agree;
* all-or-nothing: the batch's records carry the batch's label either all or none (each batch
  relabels its records, overlapping earlier ones, so a half batch would show a mix);
* no duplicate ``events.id``, no child row without its event;
* a re-run of the same ingest ends with exactly the expected rows, and no debris is left.

The ingests run with ``--no-model``: these kills are about the store's commit (the derived model
built after it is a cache of a committed version, tests/test_cli_prepare.py).

Iterations: ``CRASH_ITERATIONS`` file kills (20 in CI, ``PROVLENS_STRESS=1``: 200),
``GRAPH_CRASH_ITERATIONS`` Graph kills (5 / 50), ``SUBPROCESS_KILLS`` kills of a real
``python -m provlens`` (1 / 10).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pyarrow.parquet as pq
import pytest

from ingest import graph, schema
from ingest.store import MANIFEST, Store
from provlens.cli import main
from tests.support.graph_server import Fault, GraphFixture, make_record

STRESS = os.environ.get("PROVLENS_STRESS") == "1"
# The larger counts need longer than the suite-wide 300 s per test.
pytestmark = pytest.mark.timeout(7200 if STRESS else 300)
CRASH_ITERATIONS = 200 if STRESS else 20
GRAPH_CRASH_ITERATIONS = 50 if STRESS else 5
SUBPROCESS_KILLS = 10 if STRESS else 1
UNIVERSE = 12_000  # record ids rec-000000 .. ; each batch relabels a window of them
BATCH = 3_000  # records per ingest: about a second of work
ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 11, 1, tzinfo=UTC)

_TEMPLATE = make_record(random.Random(1), T0, "6f1c1e5a-1111-4b7e-9d2a-0c5a1b2c3d4e", "Wiki")
STEPS_PER_RECORD = len(_TEMPLATE["provisioningSteps"])
PROPS_PER_RECORD = len(_TEMPLATE["modifiedProperties"])


def write_batch(path: Path, start: int, n: int, label: str) -> dict[str, str]:
    """Write records ``start .. start+n`` (mod UNIVERSE) labelled ``label``; return id -> label."""
    recs = []
    for k in range(n):
        i = (start + k) % UNIVERSE
        r = dict(_TEMPLATE)
        r["id"] = f"rec-{i:06d}"
        r["changeId"] = f"chg-{i:06d}"
        r["jobId"] = label
        r["activityDateTime"] = (T0 + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ")
        recs.append(r)
    path.write_bytes(orjson.dumps({"value": recs}))
    return {r["id"]: label for r in recs}


def run_forked(argv: list[str], kill_after: float | None) -> tuple[bool, float]:
    """Run ``main(argv)`` in a forked child; SIGKILL it after ``kill_after`` s.

    Return (killed before it finished, seconds it ran).
    """
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:  # child: quiet, run the CLI, leave without any parent clean-up
        code = 1
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            code = main(argv)
        finally:
            os._exit(code)
    if kill_after is None:
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        return False, time.monotonic() - t0
    deadline = t0 + kill_after
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return False, time.monotonic() - t0
        time.sleep(0.005)
    os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == -signal.SIGKILL, time.monotonic() - t0


def check_consistent(store_dir: Path) -> dict[str, pd.DataFrame]:
    """Assert the store on disk is consistent; return every table as read."""
    if not (store_dir / MANIFEST).exists():
        return {t: schema.empty_frame(t) for t in schema.TABLES}
    raw = orjson.loads((store_dir / MANIFEST).read_bytes())
    for table, parts in raw["parts"].items():
        for rel in parts:
            assert (store_dir / rel).is_file(), f"manifest lists missing part {rel}"
        rows = sum(pq.ParquetFile(store_dir / rel).metadata.num_rows for rel in parts)
        assert rows == raw["rows"][table], (table, rows, raw["rows"][table])
    store = Store(store_dir)
    info = store.info()
    cli = _store_info_cli(store_dir)
    assert cli["rows"] == info["rows"] == {t: raw["rows"].get(t, 0) for t in schema.TABLES}
    frames = {t: store.read(t) for t in schema.TABLES}
    for t, df in frames.items():
        assert len(df) == info["rows"][t], t
    ev = frames["events"]
    assert ev["id"].is_unique
    known = set(ev["id"])
    for child in ("steps", "modified_properties"):
        assert set(frames[child]["event_id"]) <= known, f"{child} without their event"
    assert len(frames["steps"]) == STEPS_PER_RECORD * len(ev)
    assert len(frames["modified_properties"]) == PROPS_PER_RECORD * len(ev)
    return frames


def _store_info_cli(store_dir: Path) -> dict[str, Any]:
    """Run `provlens store info --format json` (in-process) and return its document."""
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["--store", str(store_dir), "store", "info", "--format", "json"]) == 0
    return json.loads(buf.getvalue())


def assert_no_debris(store_dir: Path) -> None:
    """After a completed batch: only listed parts on disk, no temporary manifests."""
    raw = orjson.loads((store_dir / MANIFEST).read_bytes())
    listed = {p for parts in raw["parts"].values() for p in parts}
    on_disk = {
        p.relative_to(store_dir).as_posix() for p in (store_dir / "parts").rglob("*") if p.is_file()
    }
    assert on_disk == listed, sorted(on_disk ^ listed)[:5]
    leftovers = [p.name for p in store_dir.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == [], leftovers


def labels(frames: dict[str, pd.DataFrame]) -> dict[str, str]:
    ev = frames["events"]
    return dict(zip(ev["id"], ev["job_id"]))


def _kill_loop(
    tmp_path: Path,
    iterations: int,
    seed: int,
    runner: Callable[[list[str], float | None], tuple[bool, float]],
) -> dict[str, int]:
    """Kill ingests at random points; check after each; re-run; return counts for the report."""
    rng = random.Random(seed)
    store_dir = tmp_path / "store"
    expected: dict[str, str] = {}
    stats = {"iterations": 0, "killed": 0, "killed_before_commit": 0, "killed_after_commit": 0}
    full: float | None = None
    recent: list[float] = []
    for it in range(iterations):
        label = f"batch-{it}"
        src = tmp_path / f"in-{it % 2}.json"
        batch = write_batch(src, rng.randrange(UNIVERSE), BATCH, label)
        argv = ["--store", str(store_dir), "ingest", "file", "--no-model", str(src)]
        if full is None:  # measure one uninterrupted run of this size first
            before_full = labels(check_consistent(store_dir))
            _, full = runner(argv, None)
            recent = [full]
            expected.update(batch)
            assert labels(check_consistent(store_dir)) == {**before_full, **batch}
            continue
        before = dict(expected)  # the state the previous iteration checked after its re-run
        killed, _ = runner(argv, rng.uniform(0.0, full * 1.15))
        frames = check_consistent(store_dir)
        after = labels(frames)
        got = {i: after.get(i) for i in batch}
        committed = all(v == label for v in got.values())
        untouched = after == before
        assert committed or untouched, (
            f"iteration {it}: half a batch: {sum(v == label for v in got.values())} of "
            f"{len(batch)} records carry the batch label"
        )
        if committed:
            assert after == {**before, **batch}
        stats["iterations"] += 1
        stats["killed"] += killed
        stats["killed_before_commit"] += killed and untouched
        stats["killed_after_commit"] += killed and committed
        # the re-run completes with exact counts (its duration keeps the kill window honest:
        # later batches overlap stored ones and take longer)
        _, took = runner(argv, None)
        recent = [*recent[-4:], took]
        full = sorted(recent)[len(recent) // 2]  # a median: one slow outlier must not widen it
        expected.update(batch)
        final = check_consistent(store_dir)
        assert labels(final) == expected
        assert len(final["events"]) == len(expected)
        assert_no_debris(store_dir)
    return stats


CRASH_REPORT: dict[str, Any] = {}


def test_kill_file_ingest_at_random_points(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stats = _kill_loop(tmp_path, CRASH_ITERATIONS + 1, seed=2026, runner=run_forked)
    CRASH_REPORT["file"] = stats
    print(f"\nfile ingest kills: {stats}")
    assert stats["iterations"] == CRASH_ITERATIONS
    # the seeded delays must actually land on both sides of the commit
    assert stats["killed_before_commit"] >= 1
    assert stats["killed"] >= CRASH_ITERATIONS // 4


def _run_subprocess(argv: list[str], kill_after: float | None) -> tuple[bool, float]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "provlens", *argv],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    if kill_after is None:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        return False, time.monotonic() - t0
    try:
        proc.wait(timeout=kill_after)
        return False, time.monotonic() - t0
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return True, time.monotonic() - t0


def test_kill_python_m_provlens_subprocess(tmp_path: Path) -> None:
    """The same, with a real interpreter per run (the delay spans interpreter start too)."""
    stats = _kill_loop(tmp_path, SUBPROCESS_KILLS + 1, seed=7, runner=_run_subprocess)
    CRASH_REPORT["subprocess"] = stats
    assert stats["iterations"] == SUBPROCESS_KILLS


# ---- kills at every step of a commit -----------------------------------------------------------

# (module attribute the store calls, how many calls to try). The child kills itself right before
# or right after the n-th call: staged part written, part renamed into place, manifest written,
# manifest replaced, superseded part deleted.
HOOKS = [
    ("ingest.store.pq.write_table", 4 if STRESS else 2),
    ("ingest.store.os.replace", 4 if STRESS else 3),
    ("ingest.store._fsync_write", 1),
    ("ingest.store.os.fsync", 4 if STRESS else 3),
    ("pathlib.Path.unlink", 3 if STRESS else 2),
]


def _kill_on_call(target: str, nth: int, after: bool) -> None:
    """In the child: SIGKILL this process around the ``nth`` call of ``target``."""
    import importlib

    mod_name, attr = target.rsplit(".", 1)
    try:
        owner: Any = importlib.import_module(mod_name)
    except ModuleNotFoundError:
        pkg, cls = mod_name.rsplit(".", 1)
        owner = getattr(importlib.import_module(pkg), cls)
    real = getattr(owner, attr)
    calls = [0]

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == nth and not after:
            os.kill(os.getpid(), signal.SIGKILL)
        out = real(*args, **kwargs)
        if calls[0] == nth and after:
            os.kill(os.getpid(), signal.SIGKILL)
        return out

    setattr(owner, attr, wrapper)


def test_kill_at_every_step_of_a_commit(tmp_path: Path) -> None:
    """Deterministic kills before/after each write, rename, fsync and delete of a commit."""
    small = 300
    store_dir = tmp_path / "store"
    expected: dict[str, str] = {}
    base = tmp_path / "base.json"
    expected.update(write_batch(base, 0, small * 2, "base"))
    assert main(["--store", str(store_dir), "ingest", "file", "--no-model", str(base)]) == 0
    tried = landed = 0
    for target, calls in HOOKS:
        for nth in range(1, calls + 1):
            for after in (False, True):
                label = f"{target.rsplit('.', 1)[1]}-{nth}-{'after' if after else 'before'}"
                src = tmp_path / "in.json"
                # overlap stored records, so the commit also rewrites and deletes parts
                batch = write_batch(src, small + tried * 37 % small, small, label)
                argv = ["--store", str(store_dir), "ingest", "file", "--no-model", str(src)]
                before = labels(check_consistent(store_dir))
                pid = os.fork()
                if pid == 0:
                    code = 1
                    try:
                        devnull = os.open(os.devnull, os.O_WRONLY)
                        os.dup2(devnull, 1)
                        os.dup2(devnull, 2)
                        _kill_on_call(target, nth, after)
                        code = main(argv)
                    finally:
                        os._exit(code)
                _, status = os.waitpid(pid, 0)
                killed = os.waitstatus_to_exitcode(status) == -signal.SIGKILL
                tried += 1
                landed += killed
                after_state = labels(check_consistent(store_dir))
                committed = after_state == {**before, **batch}
                assert committed or after_state == before, f"half a batch at {label}"
                assert main(argv) == 0
                expected.update(batch)
                assert labels(check_consistent(store_dir)) == expected
                assert_no_debris(store_dir)
    CRASH_REPORT["phases"] = {"tried": tried, "killed": landed}
    print(f"\ncommit-step kills: {landed} of {tried} runs killed at a write/rename/fsync/delete")
    assert landed >= tried // 2


# ---- concurrent readers -----------------------------------------------------------------------


def _reader(store_dir: Path, stop: Path, out: Path, allowed: list[list[int]]) -> None:
    """Read every table in a loop until ``stop`` exists; write counts and violations to ``out``."""
    store = Store(store_dir)
    reads = 0
    problems: list[str] = []
    allowed_events = {tuple(a) for a in allowed}
    sizes = {sum(a) for a in allowed}
    while not stop.exists() and len(problems) < 20:
        try:
            ev = store.read("events", columns=["id", "job_id"])
            counts = ev["job_id"].value_counts().to_dict()
            vector = tuple(counts.get(f"batch-{k}", 0) for k in range(len(allowed[0])))
            if vector not in allowed_events:
                problems.append(f"events in no committed state: {vector}")
            steps = store.read("steps", columns=["event_id"])
            if len(steps) not in {STEPS_PER_RECORD * s for s in sizes}:
                problems.append(f"steps in no committed state: {len(steps)}")
            for t in schema.TABLES:
                store.read(t)
            store.info()
            reads += 1
        except Exception as exc:  # any error is a failure of the guarantee
            problems.append(f"{type(exc).__name__}: {exc}")
    out.write_text(json.dumps({"reads": reads, "problems": problems}))


def test_readers_during_ingest_never_error_or_see_half_a_batch(tmp_path: Path) -> None:
    rng = random.Random(11)
    store_dir = tmp_path / "store"
    n_batches = 6
    windows = [(rng.randrange(UNIVERSE), BATCH) for _ in range(n_batches)]
    # The label counts of every committed state (version 0 .. n), computed up front.
    state: dict[str, int] = {}
    allowed = [[0] * n_batches]
    for k, (start, n) in enumerate(windows):
        for j in range(n):
            state[f"rec-{(start + j) % UNIVERSE:06d}"] = k
        allowed.append([sum(1 for v in state.values() if v == b) for b in range(n_batches)])
    stop, out = tmp_path / "stop", tmp_path / "reader.json"
    pid = os.fork()
    if pid == 0:
        try:
            _reader(store_dir, stop, out, allowed)
        finally:
            os._exit(0)
    try:
        time.sleep(0.3)
        for k, (start, n) in enumerate(windows):
            src = tmp_path / f"in-{k}.json"
            write_batch(src, start, n, f"batch-{k}")
            assert main(["--store", str(store_dir), "ingest", "file", "--no-model", str(src)]) == 0
        time.sleep(0.3)
    finally:
        stop.touch()
        os.waitpid(pid, 0)
    result = json.loads(out.read_text())
    CRASH_REPORT["reader"] = result["reads"]
    print(f"\nconcurrent reader: {result['reads']} full reads during {n_batches} commits")
    assert result["problems"] == []
    assert result["reads"] >= n_batches


# ---- Graph ingest ------------------------------------------------------------------------------

SP = "6f1c1e5a-1111-4b7e-9d2a-0c5a1b2c3d4e"
GRAPH_NOW = "2026-11-08T00:00:00Z"


@pytest.fixture
def graph_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("PROVLENS_GRAPH_TOKEN", "crash-token")
    monkeypatch.setenv("PROVLENS_GRAPH_RATE", "1000/1")
    monkeypatch.delenv("PROVLENS_GRAPH_URL", raising=False)
    fast = graph.PullConfig(rate=(1000, 1.0), top=25, backoff_base_s=0.01, backoff_max_s=0.05)
    fast.slice = pd.Timedelta(hours=12)
    fast.pages_per_batch = 2
    monkeypatch.setattr(graph.PullConfig, "from_settings", classmethod(lambda cls: fast))
    yield


def test_kill_graph_ingest_at_random_points(tmp_path: Path, graph_env: None) -> None:
    rng = random.Random(5)
    killed_total = 0
    for it in range(GRAPH_CRASH_ITERATIONS):
        with GraphFixture(token="crash-token") as g:
            g._server.handle_error = lambda request, address: None  # type: ignore[union-attr]
            recs = g.seed(300, start="2026-11-01T00:00:00Z", end=GRAPH_NOW, seed=it)
            # Each answer waits 0.15 s, so the whole pull takes a few seconds however idle the
            # machine is, and a kill drawn inside that window lands mid-run.
            g.script(Fault("slow", delay=0.15, times=100_000))
            store_dir = tmp_path / f"store-{it}"
            argv = ["--store", str(store_dir), "--now", GRAPH_NOW, "ingest", "graph"]
            argv += ["--graph-url", g.root, "--since", "2026-11-01T00:00:00Z"]
            killed, _ = run_forked(argv, rng.uniform(0.2, 1.5))
            killed_total += killed
            frames = check_consistent(store_dir)
            ids = frames["events"]["id"]
            assert set(ids) <= {r["id"] for r in recs}
            mark = Store(store_dir).watermark("graph:*") if store_dir.exists() else None
            if mark is not None:  # the watermark never runs ahead of what is stored
                done = {r["id"] for r in recs if pd.Timestamp(r["activityDateTime"]) < mark}
                assert done <= set(ids)
            g.faults.clear()
            assert main([*argv[:-2]]) == 0  # resume from the watermark (no --since)
            final = check_consistent(store_dir)
            assert sorted(final["events"]["id"]) == sorted(r["id"] for r in recs)
            assert_no_debris(store_dir)
    CRASH_REPORT["graph"] = {"iterations": GRAPH_CRASH_ITERATIONS, "killed": killed_total}
    print(f"\ngraph ingest kills: {killed_total} of {GRAPH_CRASH_ITERATIONS} runs killed mid-way")
    assert killed_total >= 1
