"""Graph settings, credentials, pacing arithmetic and the progress bar."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from email.utils import format_datetime
from pathlib import Path

import pandas as pd
import pytest
from azure.identity import DefaultAzureCredential, DeviceCodeCredential, EnvironmentCredential

from ingest.errors import UsageError
from ingest.graph import (
    GraphSession,
    PullConfig,
    SlidingWindowPacer,
    StaticTokenProvider,
    Stats,
    build_client,
    build_credential,
    credential_source,
    graph_root,
    log_filter,
    pull_logs,
)
from ingest.graph.client import _device_code_prompt, _retry_after
from ingest.store import Store
from provlens.cli import main
from provlens.commands.ingest_graph import _Bar
from tests.support.graph_server import GraphFixture

SP = "6f1c1e5a-1111-4b7e-9d2a-0c5a1b2c3d4e"
AZURE = (
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PATH",
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        *AZURE,
        "PROVLENS_GRAPH_TOKEN",
        "PROVLENS_GRAPH_URL",
        "PROVLENS_GRAPH_RATE",
        "PROVLENS_GRAPH_DEVICE_CODE",
        "AZURE_USERNAME",
        "AZURE_FEDERATED_TOKEN_FILE",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def g() -> Iterator[GraphFixture]:
    with GraphFixture() as server:
        yield server


@pytest.mark.parametrize(
    ("given", "root"),
    [
        (None, "https://graph.microsoft.com"),
        ("https://graph.microsoft.us/", "https://graph.microsoft.us"),
        ("https://dod-graph.microsoft.us/v1.0", "https://dod-graph.microsoft.us"),
        ("http://127.0.0.1:8765", "http://127.0.0.1:8765"),
    ],
)
def test_graph_root(given: str | None, root: str) -> None:
    assert graph_root(given) == root


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("graph.microsoft.com", "is not a URL"),
        ("http://graph.microsoft.com", "must use https"),
        ("https://graph.microsoft.com/beta/users", "has a path"),
    ],
)
def test_graph_root_rejects(given: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        graph_root(given)


def test_graph_url_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVLENS_GRAPH_URL", "https://graph.microsoft.us")
    assert graph_root(None) == "https://graph.microsoft.us"


def test_rate_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert PullConfig.from_settings().rate == (5, 10.0)
    monkeypatch.setenv("PROVLENS_GRAPH_RATE", "3/5")
    assert PullConfig.from_settings().rate == (3, 5.0)
    monkeypatch.setenv("PROVLENS_GRAPH_RATE", "fast")
    with pytest.raises(UsageError, match="PROVLENS_GRAPH_RATE"):
        PullConfig.from_settings()


def test_credential_choice(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert isinstance(build_credential(), DefaultAzureCredential)
    assert "DefaultAzureCredential" in credential_source()
    monkeypatch.setenv("AZURE_CLIENT_ID", "c")
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "not-logged")
    assert "service principal" in credential_source()
    assert "not-logged" not in credential_source()
    monkeypatch.setenv("PROVLENS_GRAPH_DEVICE_CODE", "1")
    assert isinstance(build_credential(), DeviceCodeCredential)
    _device_code_prompt("https://microsoft.com/devicelogin", "ABCD-EFGH", None)
    shown = capsys.readouterr()
    assert shown.out == "" and "https://microsoft.com/devicelogin" in shown.err
    assert "ABCD-EFGH" in shown.err
    assert "device code" in credential_source()
    monkeypatch.setenv("PROVLENS_GRAPH_TOKEN", "t")
    assert "PROVLENS_GRAPH_TOKEN" in credential_source()


def test_ready_token_goes_to_the_graph_host_only() -> None:
    provider = StaticTokenProvider("secret", "graph.microsoft.com")
    got = asyncio.run(provider.get_authorization_token("https://graph.microsoft.com/v1.0/x"))
    assert got == "secret"
    assert asyncio.run(provider.get_authorization_token("https://evil.example/v1.0/x")) == ""


def test_unavailable_credential_is_a_configuration_error(g: GraphFixture, tmp_path: Path) -> None:
    """A real azure-identity credential with nothing configured: exit 2, saying what to set."""
    g.seed(5)
    cfg = PullConfig(rate=(1000, 1.0))

    async def run() -> None:
        client, http = build_client(g.root, cfg, credential=EnvironmentCredential())
        session = GraphSession(client, cfg, base_url=g.base)
        try:
            await pull_logs(
                session,
                Store(tmp_path),
                service_principal_id=None,
                since=pd.Timestamp("2026-11-01T00:00:00Z"),
                now=pd.Timestamp("2026-11-02T00:00:00Z"),
            )
        finally:
            await http.aclose()

    with pytest.raises(UsageError) as err:
        asyncio.run(run())
    assert err.value.exit_code == 2
    assert "no Graph credential is available" in str(err.value)
    assert "AZURE_CLIENT_SECRET" in str(err.value) and "PROVLENS_GRAPH_TOKEN" in str(err.value)
    assert g.requests() == []  # nothing was sent without a token


def test_filter_quotes_are_escaped() -> None:
    start, end = pd.Timestamp("2026-11-01T00:00:00Z"), pd.Timestamp("2026-11-02T00:00:00.5Z")
    assert log_filter(start, end, "a'b") == (
        "activityDateTime gt 2026-10-31T23:59:59Z and activityDateTime lt 2026-11-02T00:00:00Z"
        " and servicePrincipal/id eq 'a''b'"
    )


def test_retry_after_forms() -> None:
    assert _retry_after("3") == 3.0
    assert _retry_after("0") is None  # "no advice": back off instead of hammering
    assert _retry_after(None) is None and _retry_after("soon") is None
    later = (pd.Timestamp.now(tz="UTC") + pd.Timedelta(seconds=30)).to_pydatetime()
    got = _retry_after(format_datetime(later, usegmt=True))
    assert got is not None and 25 < got <= 30


def test_sliding_window_arithmetic() -> None:
    now = [0.0]
    pacer = SlidingWindowPacer(5, 10.0, margin=0.0, clock=lambda: now[0])
    for t in (0.0, 1.0, 2.0, 3.0, 4.0):
        now[0] = t
        assert pacer.delay() == 0.0
        pacer.record()
    now[0] = 4.5
    assert pacer.delay() == pytest.approx(5.5)  # the 6th waits until the 1st leaves the window
    now[0] = 10.0
    assert pacer.delay() == 0.0
    pacer.record()
    now[0] = 10.5
    assert pacer.delay() == pytest.approx(0.5)  # the 7th waits for the 2nd (t=1)
    pacer.mark_done()  # the answer came at 10.5: the window counts from there
    assert pacer._sent[-1] == 10.5


def test_progress_bar_shows_records_pages_and_waits(capsys: pytest.CaptureFixture[str]) -> None:
    bar = _Bar(True)
    bar.update(Stats(requests=3, pages=2, records=1000, throttled=1, paced_s=4.0, waited_s=2.0))
    bar.close()
    err = capsys.readouterr().err
    assert "1000" in err and "pages=2" in err and "throttled=1" in err and "waits=6s" in err
    _Bar(False).update(Stats(records=5))  # disabled: draws nothing
    assert capsys.readouterr().err == ""


def test_service_principal_id_must_be_a_guid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["--store", str(tmp_path), "ingest", "graph", "--service-principal-id", "TheOrgWiki"]
    )
    assert code == 2
    assert "is not an object id" in capsys.readouterr().err


def test_since_after_the_watermark_leaves_it_alone(
    g: GraphFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading a later window must not move the watermark over the gap before it."""
    monkeypatch.setenv("PROVLENS_GRAPH_TOKEN", "test-token")
    g.seed(40, start="2026-11-01T00:00:00Z", end="2026-11-05T00:00:00Z")
    store = Store(tmp_path)
    cfg = PullConfig(rate=(1000, 1.0), top=50)

    def pull(since: str, now: str) -> None:
        async def run() -> None:
            client, http = build_client(g.root, cfg)
            session = GraphSession(client, cfg, base_url=g.base)
            try:
                await pull_logs(
                    session,
                    store,
                    service_principal_id=None,
                    since=pd.Timestamp(since),
                    now=pd.Timestamp(now),
                )
            finally:
                await http.aclose()

        asyncio.run(run())

    pull("2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z")
    assert store.watermark("graph:*") == pd.Timestamp("2026-11-02T00:00:00Z")
    pull("2026-11-04T00:00:00Z", "2026-11-05T00:00:00Z")
    assert store.watermark("graph:*") == pd.Timestamp("2026-11-02T00:00:00Z")
    assert store.info()["rows"]["events"] == 20
