"""The dashboard's small pure helpers and its launcher (no Streamlit server needed)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from dashboard import auth, launch, views
from ingest.errors import UsageError
from provlens.cli import main
from reports.pages import bucket_for
from tests.e2e import fixture_data as fx


def test_bucket_for_and_cycle_bands() -> None:
    assert bucket_for(pd.Timedelta(hours=6)) == "5min"
    assert bucket_for(pd.Timedelta(days=1)) == "h"
    assert bucket_for(pd.Timedelta(days=30)) == "D"
    assert bucket_for(pd.Timedelta(days=90)) == "W"
    start, end = pd.Timestamp("2026-11-18T08:00Z"), pd.Timestamp("2026-11-18T08:10Z")
    (band,) = views.cycle_bands(pd.Series([start]), pd.Series([end]))
    assert (band["x0"], band["x1"], band["yref"], band["layer"]) == (start, end, "paper", "below")
    assert views.safe_file_part("../a b<c>@d.com") == "a_b_c_d.com"


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


def test_md_escape_keeps_hostile_text_literal() -> None:
    from dashboard.views import md_escape

    assert md_escape("**bold**") == r"\*\*bold\*\*"
    assert md_escape("<img src=x>") == r"\<img src\=x\>"
    assert md_escape(":red[x]") == r"\:red\[x\]"
    assert md_escape("a\nb") == "a  \nb"


def test_relative_and_local_times() -> None:
    from dashboard.views import local_and_utc, relative

    now = pd.Timestamp("2026-12-03T11:30:00Z")
    assert relative(pd.Timestamp("2026-12-03T11:42:00Z"), now) == "in 12 min"
    assert relative(pd.Timestamp("2026-12-03T11:17:00Z"), now) == "13 min ago"
    assert relative(pd.Timestamp("2026-12-03T09:25:00Z"), now) == "2 h 05 min ago"
    assert relative(None, now) == "—"
    assert (
        local_and_utc(pd.Timestamp("2026-12-03T11:05:00Z"), now, "Europe/Paris")
        == "2026-12-03 11:05 UTC · 12:05 Europe/Paris · 25 min ago"
    )
    assert local_and_utc(pd.Timestamp("2026-12-03T11:05:00Z"), now, "UTC") == (
        "2026-12-03 11:05 UTC · 25 min ago"
    )


def test_theme_follows_the_viewer() -> None:
    import tomllib
    from pathlib import Path

    from dashboard import launch

    cmd = launch.command(8501, "localhost")
    assert not any(a.startswith(("--theme.base", "--theme.primaryColor")) for a in cmd)
    config = tomllib.loads(
        (Path(__file__).resolve().parent.parent / ".streamlit" / "config.toml").read_text()
    )
    theme = config.get("theme", {})
    assert "base" not in theme and "primaryColor" not in theme
    assert theme["light"]["primaryColor"] and theme["dark"]["primaryColor"]


def test_time_bars_stack_or_group_each_bucket_and_keep_the_counts() -> None:
    series = pd.DataFrame(
        {
            "bucket": pd.to_datetime(
                ["2026-11-13T00:00Z", "2026-11-13T00:00Z", "2026-11-14T00:00Z"]
            ),
            "status": ["success", "failure", "mystery"],
            "count": [900_000, 12, 3],
        }
    )
    palette = {"success": "#16a34a", "failure": "#dc2626"}
    data, spec = views.time_bars(series, "status", "D", palette, log_y=False)
    day = 86_400_000
    start = int(pd.Timestamp("2026-11-13T00:00Z").timestamp() * 1000)
    # Stacked: every bar spans (most of) its day, counts as given, times in UTC.
    assert list(data["count"]) == [900_000, 12, 3]
    assert list(data["when"]) == ["2026-11-13 00:00 UTC"] * 2 + ["2026-11-14 00:00 UTC"]
    assert start < data["x0"].iloc[0] < data["x1"].iloc[0] < start + day
    assert data["x0"].iloc[0] == data["x0"].iloc[1]
    bars = spec["layer"][0]["encoding"]
    assert (bars["y"]["field"], bars["y2"]["field"]) == ("y1", "y0") and "scale" not in bars["y"]
    stack = spec["transform"][0]
    assert list(data["order"]) == [0, 1, 2]  # the legend's order
    assert (stack["stack"], stack["groupby"], stack["as"]) == ("count", ["x0"], ["y0", "y1"])
    assert bars["x"]["scale"] == {"type": "utc"}
    # Known statuses keep their colour; others get one that is neither red nor green.
    assert bars["color"]["scale"]["domain"] == ["success", "failure", "mystery"]
    assert bars["color"]["scale"]["range"][:2] == ["#16a34a", "#dc2626"]
    assert bars["color"]["scale"]["range"][2] == views.CATEGORY_COLORS[0]
    assert len(spec["layer"]) == 1
    # Log axis: side by side, each status in its own third of the day, not stacked; labelled.
    data, spec = views.time_bars(series, "status", "D", palette, log_y=True)
    assert spec["layer"][0]["encoding"]["y"]["stack"] is None
    assert spec["layer"][0]["encoding"]["y"]["scale"] == {"type": "log", "domainMin": 0.7}
    assert start <= data["x0"].iloc[0] < data["x1"].iloc[0] <= start + day / 3
    assert start + day / 3 <= data["x0"].iloc[1] < data["x1"].iloc[1] <= start + 2 * day / 3
    assert spec["layer"][1]["mark"]["type"] == "text"


def test_bucket_width_and_time_points() -> None:
    assert views.bucket_width("W") == pd.Timedelta(days=7)
    assert views.bucket_width("5min") == pd.Timedelta(minutes=5)
    assert views.bucket_width("h") == pd.Timedelta(hours=1)
    events = pd.DataFrame(
        {
            "activity_at": pd.to_datetime(["2026-11-20T08:05:00Z"]),
            "action": ["create"],
            "status": ["failure"],
            "error_code": [None],
            "cycle_id": [fx.XSS_NAME],
        }
    )
    window = views.time_window(events["activity_at"].min(), events["activity_at"].max())
    data, spec = views.time_points(events, {"failure": "#dc2626"}, window)
    assert data.iloc[0]["at"] == int(pd.Timestamp("2026-11-20T08:05Z").timestamp() * 1000)
    assert data.iloc[0]["when"] == "2026-11-20 08:05:00 UTC"
    assert data.iloc[0]["error_code"] == "—"
    assert data.iloc[0]["cycle_id"] == fx.XSS_NAME  # Vega draws text, its tooltips escape HTML
    lo, hi = spec["encoding"]["x"]["scale"]["domain"]
    assert (lo, hi) == ("2026-11-20T07:05:00.000Z", "2026-11-20T09:05:00.000Z")


def test_md_escape_links_no_email_or_url() -> None:
    """A UPN or URL from the logs reads the same but is never an autolink (GFM links
    ``ada@contoso.com``, ``https://…`` and ``www.…`` even when their punctuation is escaped)."""
    import re

    from dashboard.views import WORD_JOINER, md_escape

    text = "Ada ada.lovelace@contoso.com — see https://wiki.example/x or WWW.contoso.com"
    out = md_escape(text)
    # Reads the same: drop the invisible joiners and the backslash escapes.
    assert re.sub(r"\\(.)", r"\1", out.replace(WORD_JOINER, "")) == text
    # What GFM's autolink literals need is broken at each place.
    assert re.search(r"@[A-Za-z0-9]", out.replace("\\", "")) is None
    assert "://" not in out.replace("\\", "")
    assert re.search(r"(?i)www\\\.", out) is None
    assert md_escape("a:b and 50 % off") == r"a\:b and 50 \% off"


def test_a_missing_time_reads_as_a_dash_not_none() -> None:
    """A wiki_only correlation row has no event time: its cell reads `—` (the table would show
    an NaT as `None`); times keep their text form and order; a column without gaps stays typed."""
    from dashboard import ui
    from dashboard.views import for_display

    frame = pd.DataFrame(
        {
            "activity_at": pd.to_datetime(
                ["2026-11-20T10:00:05Z", None, "2026-11-19T23:59:59Z"], utc=True
            ),
            "wiki_first_at": pd.to_datetime(["2026-11-20T10:00:06Z"] * 3, utc=True),
        }
    )
    shown = for_display(frame)
    assert shown["activity_at"].tolist() == ["2026-11-20 10:00:05", "—", "2026-11-19 23:59:59"]
    assert isinstance(shown["wiki_first_at"].dtype, pd.DatetimeTZDtype)
    settings = ui.column_settings(frame, None, shown)
    assert settings["activity_at"]["label"] == "Activity at (UTC)"
    assert settings["activity_at"]["type_config"]["type"] == "text"
    assert settings["wiki_first_at"]["type_config"]["type"] == "datetime"
