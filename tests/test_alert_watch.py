"""`provlens watch`: rounds of Graph ingest + alert in a real subprocess; SIGTERM between steps."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ingest.store import Store
from provlens.commands.watch import parse_duration
from tests.support.graph_server import Fault, GraphFixture, sync_job
from tests.support.webhook_server import WebhookReceiver

SP = "6f1c1e5a-1111-4b7e-9d2a-0c5a1b2c3d4e"
JOB = "scim.70aca1e926115901dd06f27f8f063cd2.6f1c1e5a-1111-4b7e-9d2a-0c5a1b2c3d4e"
HOOK_SECRET = "WATCHHOOKSECRET"


@pytest.fixture
def graph() -> Iterator[GraphFixture]:
    with GraphFixture() as g:
        now = datetime.now(UTC)
        g.seed(
            40,
            start=now - timedelta(hours=30),
            end=now - timedelta(hours=1),
            service_principals=[SP],
        )
        began = (now - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
        g.jobs[SP] = [
            sync_job(
                JOB,
                code="Quarantine",
                quarantine={
                    "currentBegan": began,
                    "nextAttempt": None,
                    "reason": "EncounteredQuarantineException",
                    "seriesBegan": began,
                    "seriesCount": 1,
                },
            )
        ]
        yield g


@pytest.fixture
def hook() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as h:
        yield h


def start(tmp_path: Path, graph: GraphFixture, hook: WebhookReceiver, *extra: str):
    cfg = tmp_path / "watch.toml"
    cfg.write_text(
        f'[sources.graph]\ngraph_url = "{graph.root}"\ndays = 2\n'
        "[delivery]\nattempts = 2\nbackoff_s = 0.01\n",
        encoding="utf-8",
    )
    env = {
        **os.environ,
        "PROVLENS_GRAPH_TOKEN": "test-token",
        "PROVLENS_GRAPH_RATE": "100/1",
        "PROVLENS_ALERT_WEBHOOK": hook.url(f"/{HOOK_SECRET}"),
    }
    log_file = tmp_path / "watch.log"
    cmd = [
        sys.executable, "-m", "provlens", "-v", "--log-file", str(log_file),
        "--store", str(tmp_path / "store"), "watch", "--config", str(cfg), *extra,
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    return proc, log_file


def test_parse_duration() -> None:
    assert parse_duration("40m") == 2400
    assert parse_duration("1h30m") == 5400
    assert parse_duration("90s") == 90
    assert parse_duration("15") == 900
    with pytest.raises(Exception, match="not a duration"):
        parse_duration("soon")


def test_rounds_ingest_then_alert_one_line_each(tmp_path, graph, hook) -> None:
    proc, log_file = start(tmp_path, graph, hook, "--every", "1s", "--rounds", "2")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 2, out
    assert "round 1: graph: read 40 provisioning records" in lines[0]
    assert "alerts: 1 raised, 0 resolved, 1 firing, 0 pending" in lines[0]
    assert "round 2: graph: read" in lines[1]
    assert "alerts: 0 raised, 0 resolved, 1 firing, 0 pending" in lines[1]
    assert [a["rule"] for a in hook.received[0].body["alerts"]] == ["quarantine"]
    assert len(hook.received) == 1
    for text in (out, err, log_file.read_text(encoding="utf-8")):
        assert HOOK_SECRET not in text and "test-token" not in text


def test_sigterm_mid_ingest_finishes_the_step_and_stops(tmp_path, graph, hook) -> None:
    graph.script(Fault("slow", match="/auditLogs/provisioning", delay=3.0))
    proc, _ = start(tmp_path, graph, hook, "--every", "1h")
    deadline = time.monotonic() + 60
    while graph.faults and graph.faults[0].times > 0 and time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    time.sleep(0.3)  # the slow request is in flight now
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 1, out
    assert "graph: read 40 provisioning records" in lines[0]
    assert "stopped by SIGTERM" in lines[0]
    assert "alerts:" not in lines[0]  # stopped between ingest and alert
    assert "watch stopped by SIGTERM after 1 round(s)" in err
    assert hook.log == []
    # the step that was running committed whole
    store = Store(tmp_path / "store")
    assert len(store.read("events")) == 40
    assert len(store.read("sync_jobs")) == 1
    assert store.read("alerts").empty


def test_sigterm_while_waiting_exits_at_once(tmp_path, graph, hook) -> None:
    proc, _ = start(tmp_path, graph, hook, "--every", "1h")
    deadline = time.monotonic() + 90
    while not hook.received and time.monotonic() < deadline:
        time.sleep(0.1)
    assert hook.received, proc.poll()
    time.sleep(0.3)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert time.monotonic() - t0 < 10
    assert proc.returncode == 0, err
    assert len(out.strip().splitlines()) == 1
    assert Store(tmp_path / "store").read("alerts")["rule"].tolist() == ["quarantine"]


def test_a_failing_source_is_reported_and_the_round_goes_on(tmp_path) -> None:
    cfg = tmp_path / "scim.toml"
    cfg.write_text('[sources.scim]\nscim_url = "https://wiki.example/scim/v2"\n', encoding="utf-8")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PROVLENS_SCIM_TOKEN", "PROVLENS_SCIM_TOKEN_FILE")
    }
    out = subprocess.run(
        [sys.executable, "-m", "provlens", "--store", str(tmp_path / "s"), "watch", "--every", "1s",
         "--rounds", "1", "--config", str(cfg)],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    line = out.stdout.strip()
    assert "round 1: scim failed: " in line and "PROVLENS_SCIM_TOKEN" in line
    assert line.endswith("alerts: 0 raised, 0 resolved, 0 firing, 0 pending")
