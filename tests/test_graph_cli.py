"""`provlens ingest graph` and `provlens doctor` end to end against the loopback Graph server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from ingest.store import Store
from provlens.cli import main
from tests.support.graph_server import DEFAULT_ACCESS, Fault, GraphFixture, sync_job
from tests.support.scim_server import TOKEN as SCIM_TOKEN
from tests.support.scim_server import running_scim_server, seed_walkthrough

SP = "6f1c1e5a-1111-4b7e-9d2a-0c5a1b2c3d4e"
NOW = "2026-11-09T00:00:00Z"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVLENS_GRAPH_TOKEN", "test-token")
    monkeypatch.setenv("PROVLENS_GRAPH_RATE", "1000/1")  # the pacing itself is tested elsewhere
    for name in (
        "PROVLENS_GRAPH_URL",
        "PROVLENS_SCIM_URL",
        "PROVLENS_SCIM_TOKEN",
        "PROVLENS_STORE",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def g() -> Iterator[GraphFixture]:
    with GraphFixture() as server:
        server.seed(90, start="2026-11-01T00:00:00Z", end="2026-11-08T00:00:00Z")
        server.jobs[SP] = [sync_job("scim.aaaa.bbbb")]
        server.add_user("u1", "u1@contoso.example")
        server.add_user("u2", "u2@contoso.example")
        server.add_group("g1", "wiki users", ["u1"])
        server.assign(SP, "g1", "11111111-2222-3333-4444-555555555555")
        server.assign(SP, "u2", DEFAULT_ACCESS)
        yield server


def test_ingest_graph_pulls_logs_then_discovers_apps(
    g: GraphFixture, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "store"
    code = main(["--store", str(store), "--now", NOW, "ingest", "graph", "--graph-url", g.root])
    out = capsys.readouterr().out
    assert code == 0
    assert f"read 90 provisioning records (30 pages) from {g.root} for all apps" in out
    assert f"{SP}: 1 jobs, 2 assignments, 1 members of 1 assigned groups" in out
    s = Store(store)
    assert s.info()["rows"]["events"] == 90
    assert s.read("assignments")["default_access"].tolist().count(True) == 1
    assert s.watermark("graph:*") == pd.Timestamp(NOW)
    # the first run reads the default 30 days, one slice per day
    assert len(g.requests("/auditLogs/provisioning")) == 30
    # then the assigned group's membership changes: one query per activity
    assert len(g.requests("/auditLogs/directoryAudits")) == 2


def test_ingest_graph_for_one_app_with_days(
    g: GraphFixture, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "store"
    args = ["--store", str(store), "--now", NOW, "ingest", "graph", "--graph-url", g.root + "/v1.0"]
    code = main([*args, "--service-principal-id", SP, "--days", "3"])
    assert code == 0
    want = [r for r in g.records if r["activityDateTime"] >= "2026-11-06"]
    assert 0 < len(want) < 90
    assert f"read {len(want)} provisioning records" in capsys.readouterr().out
    assert Store(store).watermark(f"graph:{SP}") == pd.Timestamp(NOW)
    logs = g.requests("/auditLogs/provisioning")
    assert all(f"servicePrincipal/id eq '{SP}'" in r.query["$filter"] for r in logs)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--days", "0"], "--days must be at least 1"),
        (["--graph-url", "ftp://graph.example"], "is not a URL"),
        (["--graph-url", "http://graph.example"], "must use https"),
    ],
)
def test_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    code = main(["--store", str(tmp_path), "ingest", "graph", *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and err.count("\n") == 1


def test_ingest_graph_403_exits_4_naming_the_permission(
    g: GraphFixture, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    g.denied["/auditLogs"] = "Insufficient privileges to complete the operation."
    g.denied["/synchronization/jobs"] = ""
    argv = ["--store", str(tmp_path), "--now", NOW, "ingest", "graph", "--graph-url", g.root]
    code = main([*argv, "--service-principal-id", SP])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 4
    assert len(err) == 1  # one clear line, even though job status was refused too
    assert err[0].startswith("provlens: Graph access denied (HTTP 403")
    assert "AuditLog.Read.All" in err[0]
    assert err[0].endswith("(and 1 more problem(s); run with -v to see them)")


def test_doctor_all_ok_and_missing_permission(
    g: GraphFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["doctor", "--graph-url", g.root]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "ok" in rows["provisioning"] and "ok" in rows["job"] and "ok" in rows["assignments"]
    assert "ok" in rows["group"] and "skipped" in rows["wiki"]
    g.denied["/synchronization/jobs"] = ""
    os.environ["PROVLENS_SCIM_URL"] = "http://127.0.0.1:9/scim/v2"
    assert main(["doctor", "--graph-url", g.root, "--service-principal-id", SP]) == 4
    out = capsys.readouterr().out
    job = next(line for line in out.splitlines() if line.startswith("job status"))
    assert "FAIL" in job and "Synchronization.Read.All" in job
    scim = next(line for line in out.splitlines() if line.startswith("wiki SCIM"))
    assert "FAIL" in scim and "PROVLENS_SCIM_TOKEN is not set" in scim
    assert "2 check(s) failed" in out


def _committed(store: Path) -> bool:
    return (store / "manifest.json").exists() and len(_events(store)) > 0


def _events(store: Path) -> pd.DataFrame:
    return Store(store).read("events", columns=["id"])


def test_killed_run_resumes_with_every_record_exactly_once(tmp_path: Path) -> None:
    store = tmp_path / "store"
    with GraphFixture() as g:
        recs = g.seed(600, start="2026-10-10T00:00:00Z", end=NOW)  # 20 a day for 30 days
        g.script(Fault("slow", delay=0.15, times=10_000))  # a slow Graph, so the kill lands mid-way
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        cmd = [sys.executable, "-m", "provlens", "--store", str(store), "--now", NOW]
        cmd += ["ingest", "graph", "--graph-url", g.root]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        # kill it right after its first batch is committed (batches hold 10 pages)
        while not _committed(store) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        partial = _events(store)
        assert 0 < len(partial) < 600  # killed mid-way, some batches committed
        g.faults.clear()
        # the re-run (in-process: same CLI, one interpreter start less) resumes from the watermark
        assert main(cmd[3:]) == 0
        ids = _events(store)["id"]
        assert len(ids) == 600 and ids.is_unique
        assert set(ids) == {r["id"] for r in recs}
        assert Store(store).info()["rows"]["steps"] == 1200
        assert Store(store).watermark("graph:*") == pd.Timestamp(NOW)


def test_doctor_checks_the_wikis_scim_endpoint(
    g: GraphFixture, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with running_scim_server() as wiki:
        seed_walkthrough(wiki)
        monkeypatch.setenv("PROVLENS_SCIM_URL", wiki.base_url)
        monkeypatch.setenv("PROVLENS_SCIM_TOKEN", SCIM_TOKEN)
        assert main(["doctor", "--graph-url", g.root, "--service-principal-id", SP]) == 0
        line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("wiki SCIM"))
        assert "ok" in line and "PATCH supported: True" in line
        monkeypatch.setenv("PROVLENS_SCIM_TOKEN", "wrong-token")
        assert main(["doctor", "--graph-url", g.root, "--service-principal-id", SP]) == 4
        out = capsys.readouterr().out
        line = next(x for x in out.splitlines() if x.startswith("wiki SCIM"))
        assert "FAIL" in line and "401" in line
        assert "wrong-token" not in out
