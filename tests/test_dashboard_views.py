"""The dashboard's small pure helpers and its launcher (no Streamlit server needed)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from dashboard import auth, launch, views
from ingest.errors import UsageError
from provlens.cli import main
from tests.e2e import fixture_data as fx


def test_scale_estimate_is_linear_in_objects() -> None:
    est = {
        "objects_in_scope": 100,
        "docs_min_minutes": 1.0,
        "docs_max_minutes": 8.0,
        "estimate_minutes_p50": 5.0,
        "estimate_minutes_p90": 7.0,
        "observed_objects_per_min": 20.0,
    }
    out = views.scale_estimate(est, 1000)
    assert out["objects_in_scope"] == 1000
    assert (out["docs_min_minutes"], out["docs_max_minutes"]) == (10.0, 80.0)
    assert (out["estimate_minutes_p50"], out["estimate_minutes_p90"]) == (50.0, 70.0)
    assert est["docs_min_minutes"] == 1.0  # input untouched
    # From an empty scope only the documented rate and the median throughput can speak.
    empty = views.scale_estimate({**est, "objects_in_scope": 0}, 40)
    assert empty["docs_max_minutes"] == pytest.approx(3.2)
    assert empty["estimate_minutes_p50"] == 2.0 and empty["estimate_minutes_p90"] is None


def test_coverage_funnel_nests_and_counts_verdicts() -> None:
    cov = pd.DataFrame(
        {
            "in_scope": [True, True, True, True, False],
            "last_status": ["success", "success", "failure", None, "success"],
            "wiki_state": ["active", "absent", "absent", "absent", "active"],
            "verdict": [
                "provisioned",
                "missing_in_wiki",
                "failed",
                "pending",
                "should_be_disabled",
            ],
        }
    )
    funnel = views.coverage_funnel(cov)
    assert list(funnel["users"]) == [4, 3, 2, 1]
    counts = views.verdict_counts(cov)
    assert list(counts) == list(views.VERDICTS)
    assert counts["provisioned"] == 1 and counts["orphaned"] == 0


def test_status_classes_long_keeps_429_apart() -> None:
    minutes = pd.DataFrame(
        {
            "period_start": pd.to_datetime(["2026-11-18T08:00Z", "2026-11-18T08:01Z"], utc=True),
            "status_2xx": [3, 0],
            "status_4xx": [2, 1],
            "throttled_429": [1, 1],
        }
    )
    long = views.status_classes_long(
        minutes, {"2xx": "status_2xx", "4xx": "status_4xx_other", "429": "throttled_429"}
    )
    got = sorted(zip(long["period_start"].dt.minute, long["status"], long["requests"], strict=True))
    assert got == [(0, "2xx", 3), (0, "429", 1), (0, "4xx", 1), (1, "429", 1)]


def test_search_and_user_keys() -> None:
    users = pd.DataFrame(
        {
            "source_id": ["obj-1", None],
            "source_name": [fx.XSS_NAME, "Grace"],
            "source_upn": ["xss@contoso.com", "grace@contoso.com"],
            "target_id": ["w1", None],
        }
    )
    assert list(views.search_users(users, "XSS@")["source_id"]) == ["obj-1"]
    assert list(views.user_key(users)) == ["obj-1", "grace@contoso.com"]
    assert views.user_choices(users) == {
        "obj-1": f"{fx.XSS_NAME} · xss@contoso.com · obj-1",
        "grace@contoso.com": "Grace · grace@contoso.com",
    }


def test_plot_escape_and_short_id() -> None:
    assert views.plot_escape(fx.XSS_NAME) == "&lt;img src=x onerror=alert(1)&gt;"
    assert views.short_id("scim.0123456789abcdef.0123") == "scim.0123456789abc…"
    assert views.short_id("short") == "short"


def test_allow_list_matches_users_and_groups_case_insensitively() -> None:
    users, groups = ["Alice@Contoso.com"], ["GID-1"]
    assert auth.is_allowed({"email": "alice@contoso.com"}, users, groups)
    assert auth.is_allowed({"preferred_username": "ALICE@contoso.com"}, users, groups)
    assert auth.is_allowed({"email": "bob@x", "groups": ["gid-1"]}, users, groups)
    assert not auth.is_allowed({"email": "bob@x", "groups": ["gid-2"]}, users, groups)
    assert not auth.is_allowed({"email": "bob@x", "groups": "gid-1"}, users, groups)
    assert not auth.is_allowed({}, [], [])


def test_launch_binds_loopback_unless_sign_in_is_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    for address in ("localhost", "127.0.0.1", "::1"):
        launch.validate(8501, address)
    with pytest.raises(UsageError, match=r"--address 0\.0\.0\.0 .*configure sign-in"):
        launch.validate(8501, "0.0.0.0")
    with pytest.raises(UsageError, match="not a TCP port"):
        launch.validate(70000, "localhost")
    secrets = tmp_path / ".streamlit" / "secrets.toml"
    secrets.parent.mkdir()
    secrets.write_text('[auth]\ncookie_secret = "x"\n', encoding="utf-8")
    with pytest.raises(UsageError):  # sign-in without an allow-list lets nobody in: still refused
        launch.validate(8501, "0.0.0.0")
    secrets.write_text(
        '[auth]\ncookie_secret = "x"\n[provlens]\nallowed_users = ["a@contoso.com"]\n',
        encoding="utf-8",
    )
    launch.validate(8501, "0.0.0.0")
    cmd = launch.command(8502, "0.0.0.0")
    assert "--server.address=0.0.0.0" in cmd and "--server.port=8502" in cmd
    assert "--server.headless=true" in cmd and cmd[-1].startswith("--theme")
    env = launch.environment(tmp_path / "store", pd.Timestamp("2026-11-21T09:00Z"))
    assert env["PROVLENS_STORE"] == str(tmp_path / "store")
    assert env["PROVLENS_NOW"].startswith("2026-11-21T09:00:00")


def test_cli_refuses_open_address_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    code = main(["--store", str(tmp_path / "s"), "dashboard", "--address", "0.0.0.0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("provlens: --address 0.0.0.0")
