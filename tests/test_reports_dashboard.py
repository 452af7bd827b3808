"""The reports behind the dashboard's new views: diagnosis, events, job-header, recent-failures,
hourly SCIM traffic; and the CLI reproduces them (`provlens report NAME --param KEY=VALUE`)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from ingest.errors import UsageError
from provlens.cli import main
from reports import Filters, Inputs, run_report
from reports.export import support_pack
from tests.e2e import fixture_data as fx

NOW = pd.Timestamp(fx.NOW)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dashreports") / "store"
    fx.build_store(path)
    return path


@pytest.fixture(scope="module")
def inputs(store: Path) -> Inputs:
    from ingest.store import Store

    s = Store(store)
    return Inputs(**{t: s.read(t) for t in Inputs.__dataclass_fields__})


def test_diagnosis_of_a_failed_user(inputs: Inputs) -> None:
    d = run_report("diagnosis", inputs, now=NOW, user="katherine@contoso.com").data
    assert d["verdict"] == "failed"
    assert d["headline"] == (
        "katherine@contoso.com is in scope, but Entra's last attempt to provision them failed."
    )
    assert d["wiki_answer"]["status_code"] == 409
    assert d["wiki_line"].startswith("The wiki last answered 409 to POST ")
    assert d["fix_line"].startswith("Fix (TheOrgWikiEntryConflict): ")
    assert d["owner_line"] == "Owner: data_owner."
    assert d["when_line"] == (
        "Access only once the fix above is made (owner: data_owner); Entra retries every cycle."
    )


def test_diagnosis_of_a_user_whose_failure_was_cleared(inputs: Inputs) -> None:
    d = run_report("diagnosis", inputs, now=NOW, user="edsger@contoso.com").data
    assert d["verdict"] == "provisioned"
    assert d["fix_line"].startswith("Nothing to fix now: the last failure")
    assert d["owner_line"] is None
    assert d["when_line"] == "Has access since 2026-11-20 08:10 UTC."


def test_diagnosis_of_an_out_of_scope_user_and_an_unknown_one(inputs: Inputs) -> None:
    d = run_report("diagnosis", inputs, now=NOW, user="oos@contoso.com").data
    assert d["verdict"] == "excluded"
    assert d["when_line"].startswith("Never: assigned with Default Access")
    unknown = run_report("diagnosis", inputs, now=NOW, user="nobody@contoso.com").data
    assert unknown["found"] is False
    assert "not found" in unknown["headline"]
    with pytest.raises(UsageError):
        run_report("diagnosis", inputs, now=NOW)


def test_support_pack_user_sheet_is_the_diagnosis_summary(inputs: Inputs) -> None:
    pack = support_pack(inputs, "katherine@contoso.com", Filters(), NOW)
    sheet = dict(zip(pack["user"]["key"], pack["user"]["value"], strict=True))
    d = run_report("diagnosis", inputs, now=NOW, user="katherine@contoso.com").data
    for key in ("verdict", "recommended_fix", "fix_owner", "last_error_code"):
        assert sheet[key] == d[key]


def test_events_by_change_cycle_user_and_search(inputs: Inputs) -> None:
    one = run_report("events", inputs, change="ch-009")
    assert list(one.frame["id"]) == ["ev-009"]
    pane = one.data["details"]
    assert pane["summary"]["change_id"] == "ch-009"
    assert pane["troubleshooting"]["error_code"] == "TheOrgWikiEntryConflict"
    assert pane["troubleshooting"]["fix_owner"] == "data_owner"
    cycle = run_report("events", inputs, cycle="cycle-1", include_noise=True).frame
    ev = inputs.events
    assert sorted(cycle["id"]) == sorted(ev.loc[ev["cycle_id"] == "cycle-1", "id"])
    assert cycle["activity_at"].is_monotonic_decreasing
    hidden = run_report("events", inputs, cycle="cycle-1")
    assert hidden.hidden_noise == 1 and len(hidden.frame) == len(cycle) - 1
    # A change id is found whatever the time range says.
    narrow = Filters(since=pd.Timestamp("2026-11-20T00:00:00Z"))
    assert list(run_report("events", inputs, narrow, change="ch-009").frame["id"]) == ["ev-009"]
    assert run_report("events", inputs, narrow).data["matches"] < len(ev)
    found = run_report("events", inputs, search="KATHERINE").frame
    assert set(found["source_upn"]) == {"katherine@contoso.com"}
    steps = run_report("events", inputs, event="ev-003").data["details"]["steps"]
    assert [s["name"] for s in steps] == ["EntryImportAdd", "EntryExportAdd"]


def test_job_status_overdue_and_links(inputs: Inputs) -> None:
    row = run_report("job-header", inputs, now=NOW).frame.iloc[0]
    assert row["app"] == fx.SP_NAME and row["job_id"] == fx.JOB
    assert row["cycle_id"] == "cycle-3" and not row["cycle_running"]
    assert row["next_run_at"] == pd.Timestamp("2026-11-20T08:50:00Z")
    assert row["overdue_min"] == 24 * 60 + 10
    assert row["logs_url"].endswith(f"/ProvisioningLogs/objectId/{fx.SP}")
    # Before the next run is due, nothing is overdue.
    early = run_report("job-header", inputs, now=pd.Timestamp("2026-11-20T08:40:00Z"))
    assert pd.isna(early.frame.iloc[0]["overdue_min"])


def test_recent_failures_group_retries(inputs: Inputs) -> None:
    frame = run_report("recent-failures", inputs).frame
    kath = frame.loc[frame["source_upn"] == "katherine@contoso.com"].iloc[0]
    assert kath["failures"] == 2 and not kath["cleared_by_success"]
    assert kath["last_change_id"] == "ch-009"
    edsger = frame.loc[frame["source_upn"] == "edsger@contoso.com"].iloc[0]
    assert bool(edsger["cleared_by_success"]) is True


def test_scim_traffic_by_hour(inputs: Inputs) -> None:
    hours = run_report("scim-traffic", inputs, granularity="hour").frame
    assert set(hours["granularity"]) == {"hour"}
    assert int(hours["requests"].sum()) == len(inputs.scim_requests)
    assert (hours["period_end"] - hours["period_start"] == pd.Timedelta(hours=1)).all()


def test_cli_reproduces_the_events_report(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--store", str(store), "--now", fx.NOW, "report", "events", "--format", "json"]
    assert main([*argv, "--param", "change=ch-009"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in rows] == ["ev-009"]
    assert main([*argv, "--param", "nonsense"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err
    assert (
        main(
            [
                "--store",
                str(store),
                "--now",
                fx.NOW,
                "report",
                "diagnosis",
                "--user",
                "katherine@contoso.com",
            ]
        )
        == 0
    )
    assert "Owner: data_owner." in capsys.readouterr().out
