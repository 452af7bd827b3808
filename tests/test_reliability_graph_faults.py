"""Fault injection for `provlens ingest graph`: every fault ends in success or one clear exit 4,
and a re-run ends with every record exactly once.

Runs the real CLI (``provlens.cli.main``, msgraph-sdk client) against the loopback Graph server
(``tests/support/graph_server.py``) with scripted faults: 429 storms with and without
``Retry-After``, 500/502/503/504, connection resets and truncated bodies mid-page, answers slower
than the client timeout, a token that expires mid-run, a nextLink that 404s, malformed pages, and
faults on the job-status and scope endpoints. Only the waits are shrunk (``PullConfig`` back-off,
give-up and timeout); the retry logic, slicing, watermark and store are the real ones.

The seeded "chaos" test mixes random faults over many runs: ``CHAOS_RUNS`` (8 in CI,
``PROVLENS_STRESS=1``: 100). Every response the server answered with a fault is counted and the
total is printed (RELIABILITY.md quotes it).
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest import graph
from ingest.store import Store
from provlens.cli import main
from tests.support.graph_server import DEFAULT_ACCESS, Fault, GraphFixture, sync_job

STRESS = os.environ.get("PROVLENS_STRESS") == "1"
# The larger counts need longer than the suite-wide 300 s per test.
pytestmark = pytest.mark.timeout(7200 if STRESS else 300)
CHAOS_RUNS = 100 if STRESS else 8
SP = "6f1c1e5a-1111-4b7e-9d2a-0c5a1b2c3d4e"
NOW = "2026-11-08T00:00:00Z"
SINCE = "2026-11-05T00:00:00Z"
TOKEN = "fault-token-3b1f0c2e"
LOGS = "/auditLogs/provisioning"

FAULTS_SERVED: list[int] = []  # faults the server answered with, per test


@pytest.fixture(autouse=True)
def _count_and_quiet(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Count every scripted fault served (slow ones included); keep server-thread noise
    (a client that hung up on a slow answer) out of the stderr under test."""
    served = [0]
    take, start = GraphFixture._take_fault, GraphFixture.start

    def counting(self: GraphFixture, url: str) -> Fault | None:
        fault = take(self, url)
        served[0] += fault is not None
        return fault

    def quiet_start(self: GraphFixture) -> GraphFixture:
        out = start(self)
        assert self._server is not None
        self._server.handle_error = lambda request, address: None  # type: ignore[method-assign]
        return out

    monkeypatch.setattr(GraphFixture, "_take_fault", counting)
    monkeypatch.setattr(GraphFixture, "start", quiet_start)
    yield
    FAULTS_SERVED.append(served[0])


def fast_config() -> graph.PullConfig:
    """The real PullConfig with test-sized waits (the CLI reads it through from_settings)."""
    return graph.PullConfig(
        rate=(1000, 1.0),
        top=20,
        backoff_base_s=0.01,
        backoff_max_s=0.05,
        give_up_after_s=1.5,
        timeout_s=0.5,
        max_retry_after_s=2.0,
    )


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVLENS_GRAPH_TOKEN", TOKEN)
    for name in ("PROVLENS_GRAPH_URL", "PROVLENS_GRAPH_RATE", "PROVLENS_STORE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(graph.PullConfig, "from_settings", classmethod(lambda cls: fast_config()))


@pytest.fixture
def g() -> Iterator[GraphFixture]:
    with GraphFixture(token=TOKEN) as server:
        server.seed(90, start=SINCE, end=NOW)  # 30 a day: 3 slices of one day, 2 pages each
        server.jobs[SP] = [sync_job("scim.aaaa.bbbb")]
        server.add_user("u1", "u1@contoso.example")
        server.add_user("u2", "u2@contoso.example")
        server.add_group("g1", "wiki users", ["u1"])
        server.assign(SP, "g1", "11111111-2222-3333-4444-555555555555")
        server.assign(SP, "u2", DEFAULT_ACCESS)
        yield server


def ingest(store: Path, g: GraphFixture, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run `provlens ingest graph` once; return (exit code, stderr)."""
    argv = ["--store", str(store), "--now", NOW, "ingest", "graph", "--graph-url", g.root]
    argv += ["--since", SINCE]
    code = main(argv)
    return code, capsys.readouterr().err


def assert_exactly_once(store: Path, g: GraphFixture) -> None:
    """Every seeded record is stored once, with all its steps and modified properties."""
    s = Store(store)
    ids = s.read("events", columns=["id"])["id"]
    assert ids.is_unique
    assert set(ids) == {r["id"] for r in g.records}
    rows = s.info()["rows"]
    assert rows["events"] == len(g.records)
    assert rows["steps"] == sum(len(r["provisioningSteps"]) for r in g.records)
    assert rows["modified_properties"] == sum(len(r["modifiedProperties"]) for r in g.records)
    assert rows["sync_jobs"] >= 1 and rows["assignments"] == 2


def assert_one_clear_line(err: str, strict: bool = False) -> None:
    """A failed run says what and where in one line: `provlens: ...` naming Graph and a URL.

    ``strict`` requires the error line alone; otherwise WARNING lines before it are tolerated
    (a run that survived a fault may warn).
    """
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if not strict:
        lines = [ln for ln in lines if not ln.startswith("provlens: WARNING ")]
    assert len(lines) == 1, err
    assert lines[0].startswith("provlens: "), err
    assert "Traceback" not in err
    assert "http://127.0.0.1" in lines[0] or "Graph" in lines[0], err


# Faults a run survives: it finishes with exit 0 and every record exactly once.
SURVIVED = {
    "429-storm-retry-after": [Fault("status", status=429, retry_after="0.05", times=6)],
    "429-storm-no-retry-after": [Fault("status", status=429, times=6)],
    "429-http-date": [Fault("status", status=429, retry_after="Wed, 21 Oct 2015 07:28:00 GMT")],
    "500": [Fault("status", status=500, times=2)],
    "502": [Fault("status", status=502, times=2, skip=3)],
    "503-retry-after": [Fault("status", status=503, retry_after="0.05", times=2)],
    "504": [Fault("status", status=504, times=2, skip=1)],
    "reset-mid-page": [Fault("reset", skip=2, times=2)],
    "truncated-mid-page": [Fault("truncate", skip=1, times=2)],
    "slower-than-timeout": [Fault("slow", delay=1.0, skip=2)],
    "token-expired-mid-run": [Fault("status", status=401, skip=4)],
    "nextlink-404": [Fault("status", status=404, match="$skiptoken", skip=1)],
    "malformed-once": [Fault("malformed", skip=3)],
    "jobs-503": [Fault("status", status=503, match="/synchronization/jobs", times=2)],
    "members-reset": [Fault("reset", match="/transitiveMembers")],
    "assignments-429": [Fault("status", status=429, match="/appRoleAssignedTo", times=3)],
}


@pytest.mark.parametrize("case", sorted(SURVIVED))
def test_fault_survived(
    case: str, g: GraphFixture, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    g.script(*SURVIVED[case])
    code, err = ingest(tmp_path / "store", g, capsys)
    assert code == 0, err
    assert not g.faults, "the scripted fault was served"
    assert_exactly_once(tmp_path / "store", g)
    # and a re-run adds nothing
    assert ingest(tmp_path / "store", g, capsys)[0] == 0
    assert_exactly_once(tmp_path / "store", g)


# Faults a run cannot get past: one clear line, exit 4; the next run completes exactly once.
STOPPED = {
    "429-forever": ([Fault("status", status=429, retry_after="0.05", times=10_000)], "429"),
    "503-forever": ([Fault("status", status=503, times=10_000)], "503"),
    "one-day-down": (
        [Fault("status", status=500, match="lt 2026-11-07T00:00:00Z", times=10_000)],
        "500",
    ),
    "reset-forever": ([Fault("reset", times=10_000, skip=3)], "kept failing"),
    "slow-forever": ([Fault("slow", delay=0.8, times=10_000, skip=2)], "kept failing"),
    "nextlink-404-forever": (
        [Fault("status", status=404, match="$skiptoken", times=10_000)],
        "404",
    ),
    "malformed-forever": ([Fault("malformed", skip=2, times=10_000)], "not valid JSON"),
    "retry-after-too-long": ([Fault("status", status=429, retry_after="3600")], "429"),
    "jobs-403": ([Fault("status", status=403, match="/synchronization/jobs")], "403"),
}


@pytest.mark.parametrize("case", sorted(STOPPED))
def test_fault_stops_with_one_line_then_rerun_completes(
    case: str, g: GraphFixture, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    faults, expect = STOPPED[case]
    g.script(*faults)
    store = tmp_path / "store"
    code, err = ingest(store, g, capsys)
    assert code == 4, err
    assert_one_clear_line(err)
    assert expect in err, err
    assert TOKEN not in err
    if (store / "manifest.json").exists():  # whatever was committed is consistent
        ids = Store(store).read("events", columns=["id"])["id"]
        assert ids.is_unique and set(ids) <= {r["id"] for r in g.records}
    g.faults.clear()
    code, err = ingest(store, g, capsys)
    assert code == 0, err
    assert_exactly_once(store, g)


def test_failed_run_prints_exactly_one_line(
    g: GraphFixture, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No WARNING lines before the error (was 2-5 lines until fd17007)."""
    for faults in (
        [Fault("status", status=503, times=10_000)],
        [Fault("status", status=404, match="$skiptoken", times=10_000)],
        [Fault("status", status=503, match="/synchronization/jobs", times=10_000)],
    ):
        g.faults.clear()
        g.script(*faults)
        code, err = ingest(tmp_path / "store", g, capsys)
        assert code == 4
        assert_one_clear_line(err, strict=True)


def test_token_rotated_mid_run_then_rerun_with_the_new_token(
    g: GraphFixture, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    """The token expires for good mid-run (rotated): exit 4 naming 401; the next run resumes."""
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    monkeypatch.delenv("PROVLENS_GRAPH_TOKEN")
    monkeypatch.setenv("PROVLENS_GRAPH_TOKEN_FILE", str(token_file))
    store = tmp_path / "store"
    served = 0
    original = GraphFixture._take_fault  # the counting wrapper

    def rotate(self: GraphFixture, url: str) -> Fault | None:
        nonlocal served
        served += 1
        if served == 5:
            self.token = "rotated-token-77"
        return original(self, url)

    monkeypatch.setattr(GraphFixture, "_take_fault", rotate)
    code, err = ingest(store, g, capsys)
    assert code == 4, err
    assert_one_clear_line(err)
    assert "401" in err and "PROVLENS_GRAPH_TOKEN" in err
    assert TOKEN not in err and "rotated-token-77" not in err
    partial = Store(store).read("events", columns=["id"])["id"] if store.exists() else []
    assert len(partial) < len(g.records)
    token_file.write_text("rotated-token-77\n")
    code, err = ingest(store, g, capsys)
    assert code == 0, err
    assert_exactly_once(store, g)


KINDS = [
    lambda r: Fault("status", status=r.choice([429, 500, 502, 503, 504]), times=r.randint(1, 3)),
    lambda r: Fault("status", status=429, retry_after="0.02", times=r.randint(1, 8)),
    lambda r: Fault("reset", times=r.randint(1, 2)),
    lambda r: Fault("truncate", times=r.randint(1, 2)),
    lambda r: Fault("slow", delay=0.7, times=1),
    lambda r: Fault("malformed", times=r.randint(1, 3)),
    lambda r: Fault("status", status=401, times=1),
    lambda r: Fault("status", status=404, match="$skiptoken", times=r.randint(1, 2)),
    lambda r: Fault("status", status=503, match="/servicePrincipals/", times=r.randint(1, 2)),
    lambda r: Fault("status", status=503, times=r.randint(20, 60)),  # an outage
]


def test_chaos_random_faults_then_reruns_exactly_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Seeded random fault mixes; re-run until success (as cron would); nothing lost or doubled."""
    total_faults = 0
    stopped = 0
    for run in range(CHAOS_RUNS):
        rng = random.Random(run)
        with GraphFixture(token=TOKEN) as g:
            g.seed(rng.randint(20, 100), start=SINCE, end=NOW, seed=run)
            g.jobs[SP] = [sync_job("scim.aaaa.bbbb")]
            g.add_user("u2", "u2@contoso.example")
            g.add_user("u1", "u1@contoso.example")
            g.add_group("g1", "wiki users", ["u1"])
            g.assign(SP, "g1", "11111111-2222-3333-4444-555555555555")
            g.assign(SP, "u2", DEFAULT_ACCESS)
            for _ in range(rng.randint(3, 8)):
                fault = rng.choice(KINDS)(rng)
                fault.skip = rng.randint(0, 4)
                g.script(fault)
            store = tmp_path / f"store-{run}"
            for attempt in range(6):
                code, err = ingest(store, g, capsys)
                assert code in (0, 4), (run, attempt, err)
                if code == 0:
                    break
                stopped += 1
                assert_one_clear_line(err)
                assert TOKEN not in err
                if attempt >= 2:
                    g.faults.clear()  # the outage ends
            assert code == 0, (run, err)
            assert_exactly_once(store, g)
            total_faults += sum(1 for r in g.log if r.fault)
    print(
        f"\nchaos: {CHAOS_RUNS} runs, {total_faults} faults served, {stopped} runs stopped (exit 4)"
    )
    assert total_faults > CHAOS_RUNS


def test_zz_fault_count_report() -> None:
    """Print the faults injected by this module (for RELIABILITY.md)."""
    print(f"\nfaults served by the Graph server in this module: {sum(FAULTS_SERVED)}")
