"""`ingest log-analytics`: the real LogsQueryClient against the loopback workspace (la_server)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from ingest import log_analytics as la
from ingest.store import Store
from provlens.cli import main
from tests.support.la_server import WORKSPACE, Fault, LaFixture, make_rows

ROOT = Path(__file__).resolve().parents[1]
START = datetime(2026, 11, 20, tzinfo=UTC)
NOW = pd.Timestamp("2026-11-23T00:00:00Z")
SINCE = pd.Timestamp("2026-11-19T00:00:00Z")
N = 300


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVLENS_LA_TOKEN", "la-test-token")
    for name in ("PROVLENS_LA_URL", "PROVLENS_LA_WORKSPACE_ID", "PROVLENS_STORE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def ws() -> Iterator[LaFixture]:
    # 40 rows per answer at most: a one-day slice (100 rows) must be split to arrive whole.
    with LaFixture(max_rows=40) as server:
        server.add_rows(make_rows(N, START, timedelta(days=3)))
        yield server


def _session(server: LaFixture, **config: object) -> la.LaSession:
    cfg = la.LaConfig(**config)  # type: ignore[arg-type]
    return la.LaSession(
        la.build_client(server.url, cfg),
        cfg,
        root=server.url,
        workspace=server.workspace_id,
        sleep=lambda s: None,
    )


def _counts(store: Store) -> tuple[int, int, int, int]:
    ev = store.read("events")
    return (
        len(ev),
        int(ev["id"].nunique()),
        len(store.read("steps")),
        len(store.read("modified_properties")),
    )


def test_pull_splits_too_large_slices_and_reads_every_row_once(
    ws: LaFixture, tmp_path: Path
) -> None:
    store = Store(tmp_path / "s")
    result = la.pull(_session(ws), store, since=SINCE, now=NOW)
    assert result.rows == N
    assert result.splits >= 2
    truncated = [entry for entry in ws.log if entry.partial == "rows"]
    assert len(truncated) == result.splits  # every split answered a too-large partial error
    assert _counts(store) == (N, N, 2 * N, 2 * N)
    ev = store.read("events")
    assert set(ev["origin"]) == {"log_analytics"}
    assert result.watermark == NOW
    assert store.watermark(f"la:{WORKSPACE}") == NOW
    # The ids stored are exactly the workspace's.
    cur = ws._con.cursor()
    ids = {r[0] for r in cur.execute("SELECT Id FROM _rows").fetchall()}
    assert set(ev["id"]) == ids
    # Every query asked the server to wait (Prefer: wait) and carried the bearer token.
    assert {entry.prefer for entry in ws.log} == {"wait=600"}
    assert {entry.authorization for entry in ws.log} == {"Bearer la-test-token"}


def test_size_limit_forces_splits_too(tmp_path: Path) -> None:
    with LaFixture(max_bytes=60_000) as server:  # about 22 rows of ~2.7 kB
        server.add_rows(make_rows(120, START, timedelta(days=1)))
        store = Store(tmp_path / "s")
        result = la.pull(_session(server), store, since=SINCE, now=NOW)
    assert result.rows == 120
    assert any(entry.partial == "bytes" for entry in server.log)
    assert _counts(store) == (120, 120, 240, 240)


def test_rerun_adds_nothing_and_rereads_only_the_overlap(ws: LaFixture, tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    la.pull(_session(ws), store, since=SINCE, now=NOW)
    before = _counts(store)
    ws.log.clear()
    again = la.pull(_session(ws), store, since=None, now=NOW)
    assert _counts(store) == before == (N, N, 2 * N, 2 * N)
    assert again.start == NOW - pd.Timedelta(hours=6)  # watermark minus the overlap
    # 300 rows over 72 h: the last 6 h hold 25 of them.
    assert again.rows == 25


def test_parser_reads_the_columns_of_a_row(ws: LaFixture, tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    la.pull(_session(ws), store, since=SINCE, now=NOW)
    ev = store.read("events").set_index("id")
    cur = ws._con.cursor()
    row = cur.execute(
        "SELECT Id, ProvisioningAction, ResultType, json_extract_string(SourceIdentity, '$.Id'),"
        " json_extract_string(ServicePrincipal, '$.Name'), CycleId FROM _rows "
        "WHERE ResultType = 'Failure' LIMIT 1"
    ).fetchone()
    assert row is not None
    e = ev.loc[row[0]]
    assert e["action"] == row[1].lower()
    assert e["status"] == "failure"
    assert e["source_id"] == (row[3] or None)
    assert e["service_principal_name"] == row[4]
    assert e["cycle_id"] == row[5]
    assert e["error_code"] is not None


def test_legacy_action_column_is_read(tmp_path: Path) -> None:
    with LaFixture(legacy_action=True) as server:
        server.add_rows(
            [
                {**r, "Action": r.pop("ProvisioningAction")}
                for r in make_rows(20, START, timedelta(hours=5))
            ]
        )
        store = Store(tmp_path / "s")
        la.pull(_session(server), store, since=SINCE, now=NOW)
    ev = store.read("events")
    assert len(ev) == 20
    assert "unknown" not in set(ev["action"])


# --- error paths ---------------------------------------------------------------------------------


def test_429_with_retry_after_is_honoured(ws: LaFixture, tmp_path: Path) -> None:
    waits: list[float] = []
    ws.faults.append(Fault("status", status=429, retry_after="7", times=2))
    cfg = la.LaConfig()
    session = la.LaSession(
        la.build_client(ws.url, cfg),
        cfg,
        root=ws.url,
        workspace=ws.workspace_id,
        sleep=waits.append,
    )
    store = Store(tmp_path / "s")
    result = la.pull(session, store, since=SINCE, now=NOW)
    assert waits == [7.0, 7.0]
    assert session.throttled == 2
    assert result.rows == N
    assert _counts(store)[0] == N
    assert [e.status for e in ws.log[:3]] == [429, 429, 200]


def test_504_is_retried_then_gives_up_with_one_line(ws: LaFixture, tmp_path: Path) -> None:
    ws.faults.append(Fault("status", status=504, times=1))
    store = Store(tmp_path / "s")
    assert la.pull(_session(ws), store, since=SINCE, now=NOW).rows == N

    ws.faults.append(Fault("status", status=504, times=100))
    store2 = Store(tmp_path / "s2")
    with pytest.raises(la.LaHTTPError) as info:
        la.pull(_session(ws, max_attempts=3), store2, since=SINCE, now=NOW)
    assert "kept failing" in str(info.value) and "HTTP 504" in str(info.value)
    assert info.value.exit_code == 4
    assert _counts(store2)[0] == 0


def _cli(server_url: str, store: Path, *extra: str) -> list[str]:
    return [
        "--store",
        str(store),
        "--now",
        NOW.isoformat(),
        "ingest",
        "log-analytics",
        "--workspace-id",
        WORKSPACE,
        "--la-url",
        server_url,
        "--since",
        SINCE.isoformat(),
        *extra,
    ]


@pytest.mark.parametrize(
    ("status", "word"), [(401, "authentication failed"), (403, "access denied")]
)
def test_401_403_exit_4_naming_the_role(
    status: int, word: str, ws: LaFixture, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if status == 403:
        ws.denied = (
            "The provided credentials have insufficient access to perform the requested operation"
        )
    else:
        ws.token = "another-token"
    code = main(_cli(ws.url, tmp_path / "s"))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 4
    assert len(err) == 1
    assert word in err[0] and f"HTTP {status}" in err[0]
    assert "Log Analytics Reader role on the workspace" in err[0]
    assert "la-test-token" not in err[0]


def test_partial_error_not_about_size_stops_keeping_earlier_slices(
    ws: LaFixture, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Fail the second day's query: the first day stays stored and the watermark ends there.
    ws.faults.append(
        Fault("partial", match="TimeGenerated >= datetime(2026-11-20T00:00:00", times=1)
    )
    ws.max_rows = 1000
    code = main(_cli(ws.url, tmp_path / "s"))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 4
    assert len(err) == 1 and "partial error" in err[0] and "E_QUERY_CANCELLED" in err[0]
    store = Store(tmp_path / "s")
    assert _counts(store)[0] == 0  # 2026-11-19 has no rows; the failed day stored nothing
    assert store.watermark(f"la:{WORKSPACE}") == pd.Timestamp("2026-11-20T00:00:00Z")
    # Run again: everything arrives, once.
    assert main(_cli(ws.url, tmp_path / "s")) == 0
    assert _counts(Store(tmp_path / "s")) == (N, N, 2 * N, 2 * N)


def test_unreachable_workspace_url_exits_4_fast_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    url = f"http://127.0.0.1:{port}"
    t0 = time.monotonic()
    code = main(_cli(url, tmp_path / "s"))
    took = time.monotonic() - t0
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 4
    assert took < 30
    assert len(err) == 1
    assert f"{url}/v1/workspaces/{WORKSPACE}/query" in err[0] and "cannot reach" in err[0]


def test_cli_prints_counts(
    ws: LaFixture, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_cli(ws.url, tmp_path / "s")) == 0
    out = capsys.readouterr().out
    assert f"read {N} provisioning rows from workspace {WORKSPACE}" in out
    assert f"watermark la:{WORKSPACE} 2026-11-23T00:00:00Z" in out


def test_bad_workspace_id_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["--store", str(tmp_path / "s"), "ingest", "log-analytics", "--workspace-id", "nope"]
    )
    assert code == 2
    assert "not a GUID" in capsys.readouterr().err


# --- kill -9 mid-pull, then resume ---------------------------------------------------------------

_CHILD = """
import sys, pandas as pd
from ingest import log_analytics as la
from ingest.store import Store
cfg = la.LaConfig(slice=pd.Timedelta(hours=2), rows_per_batch=10)
url, store = sys.argv[1], sys.argv[2]
s = la.LaSession(la.build_client(url, cfg), cfg, root=url, workspace=sys.argv[3])
since = None if sys.argv[4] == '-' else pd.Timestamp(sys.argv[4])
r = la.pull(s, Store(store), since=since, now=pd.Timestamp(sys.argv[5]))
print(r.rows)
"""


def test_kill_mid_pull_then_resume_reads_every_row_exactly_once(
    ws: LaFixture, tmp_path: Path
) -> None:
    store_dir = tmp_path / "s"
    ws.faults.append(Fault("slow", delay=0.05, times=10_000))  # a pull takes ~2 s: room to kill
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PROVLENS_LA_TOKEN": "la-test-token"}
    argv = [
        sys.executable,
        "-c",
        _CHILD,
        ws.url,
        str(store_dir),
        WORKSPACE,
        SINCE.isoformat(),
        NOW.isoformat(),
    ]
    kills = 0
    marks: list[pd.Timestamp | None] = []
    for extra in (0.0, 0.3, 0.8):
        before = Store(store_dir).watermark(f"la:{WORKSPACE}") if store_dir.exists() else None
        proc = subprocess.Popen(
            argv, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 60
        # Kill once this run has committed something (its watermark moved), plus a little.
        while time.monotonic() < deadline and proc.poll() is None:
            if store_dir.exists() and Store(store_dir).watermark(f"la:{WORKSPACE}") != before:
                break
            time.sleep(0.05)
        time.sleep(extra)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=60)
        store = Store(store_dir)
        marks.append(store.watermark(f"la:{WORKSPACE}"))
        ev = store.read("events")
        # Whatever was committed is whole: each event with its 2 steps and 2 properties.
        assert len(ev) == ev["id"].nunique()
        assert _counts(store)[2:] == (2 * len(ev), 2 * len(ev))
        # Once a watermark exists, runs resume from it (minus the overlap), as without --since.
        argv[-2] = "-" if marks[-1] is not None else SINCE.isoformat()
    assert kills == 3
    assert all(m is not None and m < NOW for m in marks)  # every kill landed mid-pull
    known = [m for m in marks if m is not None]
    assert known == sorted(known)  # and each run moved on from the previous one
    done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert _counts(Store(store_dir)) == (N, N, 2 * N, 2 * N)
    assert Store(store_dir).watermark(f"la:{WORKSPACE}") == NOW


def test_la_token_never_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "la-SECRET-7f3c9d"
    monkeypatch.setenv("PROVLENS_LA_TOKEN", secret)
    logfile = tmp_path / "provlens.log"
    with LaFixture(token=secret) as server:
        server.add_rows(make_rows(30, START, timedelta(hours=3)))
        ok = main(["-v", "--log-file", str(logfile), *_cli(server.url, tmp_path / "s")])
        server.token = "another"  # now the service refuses it: the error path must not echo it
        denied = main(["-v", "--log-file", str(logfile), *_cli(server.url, tmp_path / "s")])
        sent = {entry.authorization for entry in server.log}
    assert (ok, denied) == (0, 4)
    assert f"Bearer {secret}" in sent  # it was really used
    out = capsys.readouterr()
    assert secret not in out.out + out.err
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert logfile in written
    assert all(secret.encode() not in p.read_bytes() for p in written)


def test_no_credential_is_a_usage_error(
    ws: LaFixture,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PROVLENS_LA_TOKEN")
    for name in list(os.environ):
        if name.startswith("AZURE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PATH", "/nonexistent")  # no Azure CLI / azd to ask either
    code = main(_cli(ws.url, tmp_path / "s"))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert "no Log Analytics credential is available" in err[-1]
    assert "PROVLENS_LA_TOKEN" in err[-1]
    assert ws.log == []  # nothing was sent without a token


def test_read_timeout_is_set_and_a_slow_answer_is_retried(ws: LaFixture, tmp_path: Path) -> None:
    ws.faults.append(Fault("slow", delay=2.0, times=1))
    session = _session(ws, read_timeout_s=0.7)
    store = Store(tmp_path / "s")
    t0 = time.monotonic()
    result = la.pull(session, store, since=SINCE, now=NOW)
    assert time.monotonic() - t0 < 30
    assert session.retries == 1  # the first answer was not waited for past 0.7 s
    assert result.rows == N and _counts(store)[0] == N
