"""The SCIM state pull against a real scim2-server on loopback."""

from __future__ import annotations

import logging
import time

import pandas as pd
import pytest

from ingest.errors import RemoteError, UsageError
from ingest.scim import build_client, pull_state
from provlens.cli import main
from tests.support.scim_server import (
    TOKEN,
    Misbehaviour,
    Seeded,
    running_scim_server,
    seed_walkthrough,
)

NOW = pd.Timestamp("2026-11-20T10:30:00Z")


@pytest.fixture(scope="module")
def seeded_server():
    """A scim2-server seeded like Entra's walkthrough (module-wide: it is only read)."""
    with running_scim_server() as server:
        seeded = seed_walkthrough(server)
        yield server, seeded


@pytest.fixture
def wiki(seeded_server):
    """The seeded server for one test, which may set ``server.misbehaviour`` (reset after)."""
    server, seeded = seeded_server
    server.misbehaviour = Misbehaviour()
    yield server, seeded
    server.misbehaviour = Misbehaviour()


def _expected(seeded: Seeded) -> pd.DataFrame:
    rows = [
        ("User", u["id"], u["externalId"], u["userName"], u.get("displayName"), u["active"])
        for u in seeded.users.values()
    ] + [
        ("Group", g["id"], g["externalId"], None, g["displayName"], None)
        for g in seeded.groups.values()
    ]
    return pd.DataFrame(
        rows, columns=["resource_type", "id", "external_id", "user_name", "display_name", "active"]
    ).sort_values("id", ignore_index=True)


def _core(frame: pd.DataFrame) -> pd.DataFrame:
    cols = ["resource_type", "id", "external_id", "user_name", "display_name", "active"]
    out = frame[cols].sort_values("id", ignore_index=True)
    return out.astype(object).where(out.notna(), None)


def test_cli_ingest_scim_stores_exactly_what_was_created(
    seeded_server, tmp_path, monkeypatch, capsys
):
    server, seeded = seeded_server
    monkeypatch.setenv("PROVLENS_SCIM_TOKEN", server.token)
    store = tmp_path / "store"
    code = main(
        [
            "--store",
            str(store),
            "--now",
            "2026-11-20T10:30:00Z",
            "ingest",
            "scim",
            "--scim-url",
            server.base_url,
            "--page-size",
            "2",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "3 users (1 inactive) and 1 groups" in out
    from ingest.store import Store

    stored = Store(store).read("scim_resources")
    assert len(stored) == 4
    assert (stored["captured_at"] == NOW).all()
    pd.testing.assert_frame_equal(_core(stored), _core(_expected(seeded)))
    bob = stored[stored["user_name"] == "bob@contoso.example"].iloc[0]
    assert bool(bob["active"]) is False
    assert stored["created_at"].notna().all() and stored["modified_at"].notna().all()
    # page size 2, 3 users: pages at 1 (2 users), 3 (1 user), 4 (empty: the end).
    pulls = [r for r in server.requests_seen if r.startswith("GET /v2/Users?startIndex")]
    assert pulls[-3:] == [
        "GET /v2/Users?startIndex=1&count=2",
        "GET /v2/Users?startIndex=3&count=2",
        "GET /v2/Users?startIndex=4&count=2",
    ]


def test_token_never_logged_or_printed(seeded_server, tmp_path, monkeypatch, capsys, caplog):
    server, _ = seeded_server
    monkeypatch.setenv("PROVLENS_SCIM_TOKEN", server.token)
    log_file = tmp_path / "debug.log"
    with caplog.at_level(logging.DEBUG):
        code = main(
            [
                "--store",
                str(tmp_path / "s"),
                "--log-file",
                str(log_file),
                "-v",
                "ingest",
                "scim",
                "--scim-url",
                server.base_url,
            ]
        )
    out, err = capsys.readouterr()
    assert code == 0, err
    everything = out + err + log_file.read_text() + caplog.text
    assert server.token not in everything


def test_wrong_token_is_a_remote_error_naming_the_token(
    seeded_server, tmp_path, monkeypatch, capsys
):
    server, _ = seeded_server
    monkeypatch.setenv("PROVLENS_SCIM_TOKEN", "not-the-token")
    code = main(["--store", str(tmp_path / "s"), "ingest", "scim", "--scim-url", server.base_url])
    _, err = capsys.readouterr()
    assert code == 4
    assert err.count("\n") == 1
    assert "401" in err and "PROVLENS_SCIM_TOKEN is wrong or expired" in err
    assert "not-the-token" not in err
    assert not (tmp_path / "s").exists() or not any((tmp_path / "s").rglob("*.parquet"))


def test_missing_token_and_url_are_usage_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("PROVLENS_SCIM_TOKEN", raising=False)
    monkeypatch.delenv("PROVLENS_SCIM_TOKEN_FILE", raising=False)
    monkeypatch.delenv("PROVLENS_SCIM_URL", raising=False)
    assert main(["--store", str(tmp_path), "ingest", "scim", "--scim-url", "http://x"]) == 2
    assert "PROVLENS_SCIM_TOKEN" in capsys.readouterr().err
    assert main(["--store", str(tmp_path), "ingest", "scim"]) == 2
    assert "--scim-url" in capsys.readouterr().err
    monkeypatch.setenv("PROVLENS_SCIM_TOKEN", "t")
    with pytest.raises(UsageError):
        build_client("ftp://wiki.example/scim", "t")


def test_403_says_the_token_lacks_rights(wiki):
    server, _ = wiki
    server.misbehaviour = Misbehaviour(fail_status=403)
    client = build_client(server.base_url, server.token)
    with client, pytest.raises(RemoteError) as exc:
        pull_state(client, NOW)
    assert "403" in str(exc.value) and "lacks rights" in str(exc.value)
    assert server.token not in str(exc.value)


@pytest.mark.parametrize(
    "misbehaviour",
    [
        Misbehaviour(force_count=1000),  # ignores count: everything in one page
        Misbehaviour(force_count=1),  # ignores count: smaller pages than asked
        Misbehaviour(force_count=2, total_results_delta=-2),  # totalResults too low
        Misbehaviour(total_results_delta=+5),  # totalResults too high
        Misbehaviour(force_count=2, drop_total_results=True),  # no totalResults at all
    ],
    ids=["count-ignored-all", "count-ignored-small", "total-low", "total-high", "total-missing"],
)
def test_paging_survives_servers_that_ignore_count_or_misreport_totals(wiki, misbehaviour):
    server, seeded = wiki
    server.misbehaviour = misbehaviour
    with build_client(server.base_url, TOKEN) as client:
        frame = pull_state(client, NOW, page_size=3)
    pd.testing.assert_frame_equal(_core(frame), _core(_expected(seeded)))


def test_429_with_retry_after_waits_then_succeeds(wiki):
    server, seeded = wiki
    server.misbehaviour = Misbehaviour(throttle_first=2, retry_after="1")
    started = time.monotonic()
    with build_client(server.base_url, TOKEN) as client:
        frame = pull_state(client, NOW)
    elapsed = time.monotonic() - started
    statuses = [r["status"] for r in server.audit[-6:]]
    assert 2.0 <= elapsed < 10.0  # waited Retry-After (1 s) twice
    assert statuses[:2] == [429, 429]
    pd.testing.assert_frame_equal(_core(frame), _core(_expected(seeded)))


def test_429_forever_gives_up_after_bounded_retries(wiki):
    server, _ = wiki
    server.misbehaviour = Misbehaviour(throttle_first=100, retry_after="0")
    before = len(server.audit)
    with build_client(server.base_url, TOKEN) as client, pytest.raises(RemoteError) as exc:
        pull_state(client, NOW)
    attempts = len(server.audit) - before
    assert "429" in str(exc.value) and "6 times" in str(exc.value)
    assert attempts == 6


def test_unreachable_server_is_a_remote_error():
    client = build_client("http://127.0.0.1:9/v2", TOKEN)
    client.max_retries = 1
    client.sleep = lambda _s: None
    with client, pytest.raises(RemoteError) as exc:
        pull_state(client, NOW)
    assert "cannot reach" in str(exc.value)


def test_token_absent_from_http_library_debug_logs(seeded_server, caplog):
    """Even with httpx/httpcore at DEBUG (someone debugging), the token is never logged."""
    server, _ = seeded_server
    for name in ("httpx", "httpcore", "ingest.scim"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        with caplog.at_level(logging.DEBUG), build_client(server.base_url, server.token) as client:
            frame = pull_state(client, NOW)
            assert server.token not in repr(client.http.headers)
    finally:
        for name in ("httpx", "httpcore", "ingest.scim"):
            logging.getLogger(name).setLevel(logging.NOTSET)
    assert len(frame) == 4
    assert any(r.name.startswith("httpcore") for r in caplog.records)  # the libraries did log
    assert all(server.token not in r.getMessage() for r in caplog.records)


def test_probe_reports_patch_support_and_checks_the_token(seeded_server):
    from ingest.scim import probe

    server, _ = seeded_server
    with build_client(server.base_url, server.token) as client:
        assert probe(client) == {"patch_supported": True, "users": 3}
    with build_client(server.base_url, "wrong") as client, pytest.raises(RemoteError) as exc:
        probe(client)  # /ServiceProviderConfig answers without a token; /Users does not
    assert "401" in str(exc.value)


@pytest.mark.parametrize(
    ("misbehaviour", "page_size", "message"),
    [
        (Misbehaviour(ignore_start_index=True), 2, "of totalResults=3 read"),
        (
            Misbehaviour(ignore_start_index=True, drop_total_results=True),
            2,
            "gives no totalResults",
        ),
    ],
    ids=["with-total", "without-total"],
)
def test_server_ignoring_start_index_fails_rather_than_losing_users(
    wiki, misbehaviour, page_size, message
):
    server, _ = wiki
    server.misbehaviour = misbehaviour
    client = build_client(server.base_url, TOKEN)
    with client, pytest.raises(RemoteError) as exc:
        pull_state(client, NOW, page_size=page_size)
    assert "same" in str(exc.value) and message in str(exc.value)
    assert "nothing was stored" in str(exc.value)


def test_server_ignoring_start_index_but_returning_everything_is_fine(wiki):
    server, seeded = wiki
    server.misbehaviour = Misbehaviour(
        ignore_start_index=True, force_count=1000, drop_total_results=True
    )
    with build_client(server.base_url, TOKEN) as client:
        frame = pull_state(client, NOW, page_size=2)
    pd.testing.assert_frame_equal(_core(frame), _core(_expected(seeded)))


def test_503_with_retry_after_is_retried(wiki):
    server, seeded = wiki
    server.misbehaviour = Misbehaviour(throttle_first=2, throttle_status=503, retry_after="0")
    with build_client(server.base_url, TOKEN) as client:
        frame = pull_state(client, NOW)
    statuses = [r["status"] for r in server.audit[-6:]]
    assert statuses[:2] == [503, 503]
    pd.testing.assert_frame_equal(_core(frame), _core(_expected(seeded)))


def test_wiki_without_groups_endpoint_stores_users(wiki, caplog):
    server, seeded = wiki
    server.misbehaviour = Misbehaviour(fail_status=404, fail_path_prefix="/v2/Groups")
    with caplog.at_level(logging.WARNING), build_client(server.base_url, TOKEN) as client:
        frame = pull_state(client, NOW)
    assert sorted(frame["id"]) == sorted(u["id"] for u in seeded.users.values())
    assert "no /Groups endpoint" in caplog.text


def test_users_endpoint_404_is_a_remote_error_naming_the_url(wiki):
    server, _ = wiki
    server.misbehaviour = Misbehaviour(fail_status=404)
    client = build_client(server.base_url, TOKEN)
    with client, pytest.raises(RemoteError) as exc:
        pull_state(client, NOW)
    assert f"{server.base_url}/Users: the wiki's SCIM server answered 404" in str(exc.value)
    assert "--scim-url" in str(exc.value)
