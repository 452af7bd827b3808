"""Finding 7: a source that cannot be reached on the first request ends at once (exit 4, one line
naming the URL); a service that answered before is still retried, and long waits say so."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest import graph
from ingest.errors import RemoteError
from ingest.net import Unreachable
from ingest.scim import build_client
from provlens.cli import main
from tests.support.graph_server import Fault, GraphFixture, sync_job
from tests.support.scim_server import TOKEN as SCIM_TOKEN
from tests.support.scim_server import running_scim_server

SP = "6f1c1e5a-1111-4b7e-9d2a-0c5a1b2c3d4e"
NOW = "2026-11-09T00:00:00Z"
LIMIT_S = 30.0


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVLENS_GRAPH_TOKEN", "test-token")
    monkeypatch.setenv("PROVLENS_GRAPH_RATE", "1000/1")
    for name in ("PROVLENS_GRAPH_URL", "PROVLENS_SCIM_URL", "PROVLENS_SCIM_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def closed_port() -> int:
    """Return a loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def plain_http() -> Iterator[GraphFixture]:
    """A loopback Graph speaking plain HTTP: asking it for https is a TLS mismatch."""
    with GraphFixture(token="test-token") as server:
        yield server


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, float]:
    t0 = time.monotonic()
    code = main(argv)
    return code, capsys.readouterr().err, time.monotonic() - t0


def one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("case", ["refused", "unknown-host", "tls-mismatch"])
def test_ingest_graph_unreachable_ends_at_once(
    case: str, tmp_path: Path, plain_http: GraphFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    url, reason = {
        "refused": (f"http://127.0.0.1:{closed_port()}", "connection refused"),
        "unknown-host": ("https://provlens-no-such-host.invalid", "unknown host"),
        "tls-mismatch": (f"https://127.0.0.1:{plain_http.port}", "TLS handshake failed"),
    }[case]
    argv = ["--store", str(tmp_path / "s"), "--now", NOW, "ingest", "graph", "--graph-url", url]
    code, err, took = run_cli(argv, capsys)
    assert code == 4, err
    line = one_line(err)
    assert line.startswith(f"provlens: cannot reach Microsoft Graph at {url}/v1.0: {reason}"), line
    assert took < LIMIT_S
    assert not (tmp_path / "s" / "manifest.json").exists()  # nothing was stored
    assert plain_http.requests() == []  # the TLS hello never became a Graph request


def test_graph_that_answered_before_is_retried_not_given_up(tmp_path: Path) -> None:
    """Connection refused after an answer is a bad minute: back off and retry (real msgraph)."""
    config = graph.PullConfig(backoff_base_s=0.01, backoff_max_s=0.02, max_attempts=3)
    with GraphFixture(token="test-token") as g:
        g.service_principals[SP] = "TheOrgWiki"
        g.jobs[SP] = [sync_job("scim.aaaa.bbbb")]
        root = g.root

        async def go() -> None:
            client, http = graph.build_client(root, config)
            session = graph.GraphSession(client, config, base_url=f"{root}/v1.0")
            jobs = client.service_principals.by_service_principal_id(SP).synchronization.jobs
            url = f"{root}/v1.0/servicePrincipals/{SP}/synchronization/jobs"
            try:
                doc = await session.get_json(jobs, url, "jobs", paced=False)
                assert [j["id"] for j in doc["value"]] == ["scim.aaaa.bbbb"]
                assert session.answered
                # the service goes away mid-pull: a reset on the open connection, then nothing
                # listens (connection refused) for the retries
                g.script(Fault("reset", match="/synchronization/jobs"))
                g.stop()
                with pytest.raises(graph.GraphHTTPError, match="after 3 attempts") as info:
                    await session.get_json(jobs, url, "jobs", paced=False)
                assert not isinstance(info.value, Unreachable)
                assert session.stats.retries == 2
            finally:
                await http.aclose()

        graph.run(go)


def test_long_retry_after_wait_prints_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    with GraphFixture(token="test-token") as g:
        g.seed(5, start="2026-11-08T00:00:00Z", end="2026-11-08T12:00:00Z")
        g.script(Fault("status", status=429, retry_after="1.1", times=1))
        argv = ["--store", str(tmp_path / "s"), "--now", NOW, "ingest", "graph"]
        argv += ["--graph-url", g.root, "--since", "2026-11-08T00:00:00Z"]
        argv += ["--service-principal-id", SP]
        code = main(argv)
        err = capsys.readouterr().err
    assert code == 0, err
    waits = [ln for ln in err.splitlines() if "waiting" in ln]
    assert len(waits) == 1, err
    assert waits[0].startswith("provlens: WARNING ")
    assert "HTTP 429" in waits[0] and "waiting 1.1 s as Retry-After asks" in waits[0]


def test_short_backoff_stays_quiet_at_default_verbosity(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Sub-second retries are not a wait a user notices: INFO (shown with -v), not WARNING."""
    config = graph.PullConfig(backoff_base_s=0.01, backoff_max_s=0.02)
    with GraphFixture(token="test-token") as g:
        g.service_principals[SP] = "TheOrgWiki"
        g.jobs[SP] = [sync_job("scim.aaaa.bbbb")]
        g.script(Fault("status", status=503, match="/synchronization/jobs"))

        async def go() -> None:
            client, http = graph.build_client(g.root, config)
            session = graph.GraphSession(client, config, base_url=g.base)
            jobs = client.service_principals.by_service_principal_id(SP).synchronization.jobs
            try:
                await session.get_json(jobs, f"{g.base}/x", "jobs", paced=False)
            finally:
                await http.aclose()

        with caplog.at_level(logging.INFO, logger="ingest.graph.client"):
            graph.run(go)
    waits = [r for r in caplog.records if "waiting" in r.getMessage()]
    assert [r.levelno for r in waits] == [logging.INFO]


def test_scim_unreachable_ends_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"http://127.0.0.1:{closed_port()}/scim/v2"
    monkeypatch.setenv("PROVLENS_SCIM_TOKEN", SCIM_TOKEN)
    argv = ["--store", str(tmp_path / "s"), "ingest", "scim", "--scim-url", url]
    code, err, took = run_cli(argv, capsys)
    assert code == 4, err
    line = one_line(err)
    assert line.startswith(f"provlens: cannot reach the wiki's SCIM server at {url}: connection")
    assert took < LIMIT_S
    assert SCIM_TOKEN not in err


def test_scim_unknown_host_and_tls_mismatch(plain_http: GraphFixture) -> None:
    for url, reason in (
        ("https://provlens-no-such-host.invalid/scim/v2", "unknown host"),
        (f"https://127.0.0.1:{plain_http.port}/scim/v2", "TLS handshake failed"),
    ):
        slept: list[float] = []
        with build_client(url, SCIM_TOKEN) as client:
            client.sleep = slept.append
            with pytest.raises(Unreachable) as info:
                client.get_json("Users")
        assert info.value.reason.startswith(reason), info.value
        assert info.value.url == url
        assert slept == []  # no backoff for a server never reached


def test_scim_that_answered_before_is_retried() -> None:
    with running_scim_server() as wiki:
        client = build_client(wiki.base_url, SCIM_TOKEN)
    slept: list[float] = []
    client.sleep = slept.append
    try:
        # the server answered once, then went away (the context manager stopped it)
        client.answered = True
        with pytest.raises(RemoteError, match="after 6 attempts") as info:
            client.get_json("Users")
        assert not isinstance(info.value, Unreachable)
        assert slept == [1.0, 2.0, 4.0, 8.0, 16.0]
    finally:
        client.close()


def test_scim_answered_flag_is_set_by_a_real_answer() -> None:
    with running_scim_server() as wiki, build_client(wiki.base_url, SCIM_TOKEN) as client:
        assert not client.answered
        client.get_json("ServiceProviderConfig")
        assert client.answered


def test_doctor_unreachable_graph_fails_fast_and_skips_the_rest(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    code = None
    t0 = time.monotonic()
    code = main(["doctor", "--graph-url", url, "--service-principal-id", SP])
    took = time.monotonic() - t0
    out = capsys.readouterr().out
    assert code == 4
    assert took < LIMIT_S
    rows = {ln.split("  ")[0].strip(): ln for ln in out.splitlines()[1:]}
    logs = rows["provisioning logs"]
    assert "FAIL" in logs and f"cannot reach Microsoft Graph at {url}/v1.0" in logs
    for name in ("service principal", "job status", "assignments"):
        assert "skipped" in rows[name] and "cannot be reached" in rows[name]
    assert "1 check(s) failed" in out


def test_doctor_unreachable_scim_is_one_fail_line(
    g_ok: GraphFixture, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"http://127.0.0.1:{closed_port()}/scim/v2"
    monkeypatch.setenv("PROVLENS_SCIM_URL", url)
    monkeypatch.setenv("PROVLENS_SCIM_TOKEN", SCIM_TOKEN)
    t0 = time.monotonic()
    code = main(["doctor", "--graph-url", g_ok.root, "--service-principal-id", SP])
    took = time.monotonic() - t0
    out = capsys.readouterr().out
    assert code == 4 and took < LIMIT_S
    scim = [ln for ln in out.splitlines() if ln.startswith("wiki SCIM")]
    assert len(scim) == 1
    assert "FAIL" in scim[0] and f"cannot reach the wiki's SCIM server at {url}" in scim[0]
    assert "job status" in out and "1 check(s) failed" in out  # Graph itself was fine


@pytest.fixture
def g_ok() -> Iterator[GraphFixture]:
    with GraphFixture(token="test-token") as server:
        server.service_principals[SP] = "TheOrgWiki"
        server.jobs[SP] = [sync_job("scim.aaaa.bbbb")]
        yield server
