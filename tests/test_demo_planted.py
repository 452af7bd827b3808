"""The demo's planted conditions show in the reports `provlens alert` reads; --healthy has none."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from demo import run as demo_run
from demo.scenario import Scenario
from ingest.store import Store
from provlens.cli import main
from reports import Filters, Inputs, run_report

END = "2026-11-20T10:00:00Z"
NOW = pd.Timestamp(END)
INTERVAL = pd.Timedelta(minutes=40)


def _build(path: Path, planted: bool) -> tuple[Inputs, dict]:
    sc = Scenario(users=300, days=3, seed=7, end=END, planted=planted)
    result = demo_run.build(sc, path)
    store = Store(path)
    return Inputs(**{t: store.read(t) for t in Inputs.__dataclass_fields__}), result.truth


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Inputs, dict]:
    return _build(tmp_path_factory.mktemp("planted") / "store", True)


@pytest.fixture(scope="module")
def healthy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Inputs, dict]:
    return _build(tmp_path_factory.mktemp("healthy") / "store", False)


def _slow_jobs(inputs: Inputs) -> set[str]:
    """Jobs whose latest incremental cycle took over 2x the p90 of their earlier ones."""
    cycles = run_report("cycles", inputs, now=NOW).frame
    out = set()
    for job, rows in cycles.loc[cycles["kind"] == "incremental"].groupby("job_id"):
        rows = rows.sort_values("started_at")
        p90 = rows["duration_s"].iloc[:-1].astype(float).quantile(0.9)
        if len(rows) > 5 and float(rows["duration_s"].iloc[-1]) > 2 * p90:
            out.add(str(job))
    return out


def _stalled_jobs(inputs: Inputs) -> set[str]:
    """Active scheduled jobs whose last cycle ended over 3 intervals before the end."""
    cycles = run_report("cycles", inputs, now=NOW).frame
    last = cycles.groupby("job_id")["ended_at"].max()
    jobs = inputs.sync_jobs.sort_values("captured_at").drop_duplicates("job_id", keep="last")
    active = jobs.loc[(jobs["status_code"] == "Active") & jobs["schedule_interval_s"].notna()]
    return {
        str(j["job_id"])
        for _, j in active.iterrows()
        if NOW - last[j["job_id"]] > 3 * pd.Timedelta(seconds=int(j["schedule_interval_s"]))
    }


def _in_window(inputs: Inputs) -> Filters:
    return Filters(since=inputs.events["activity_at"].min())


def test_planted_conditions_are_in_the_reports(planted: tuple[Inputs, dict]) -> None:
    inputs, truth = planted
    box = truth["planted"]["sandbox"]
    risk = run_report("quarantine-risk", inputs, now=NOW).frame.set_index("job_id")
    assert risk.loc[box["job_id"], "risk"] == "approaching"
    assert int(risk.loc[box["job_id"], "failures"]) == box["failing_objects"] == 4100
    assert (risk.drop(index=box["job_id"])["risk"] == "low").all()
    assert _slow_jobs(inputs) == {box["job_id"]}
    cycles = run_report("cycles", inputs, now=NOW).frame
    slow = cycles.set_index("cycle_id").loc[box["slow_cycle_id"]]
    assert slow["kind"] == "incremental" and float(slow["duration_s"]) > 400 * 0.02 * 60 - 2
    assert _stalled_jobs(inputs) == {box["job_id"]}
    coverage = run_report("coverage", inputs, now=NOW).frame
    missed = coverage.loc[coverage["verdict"] == "should_be_disabled"]
    assert missed["principal_id"].tolist() == truth["planted"]["missed_deprovisioning"]["user_ids"]
    assert (NOW - missed["last_at"] > pd.Timedelta(hours=24)).all()  # past the 24 h grace
    access = run_report("access-time", inputs, _in_window(inputs), now=NOW).frame
    breached = access.loc[access["breached"]]
    assert sorted(breached["principal_id"]) == sorted(box["access_breached_user_ids"])
    assert set(breached["assigned_at_source"]) == {"directory_audit"}
    assert (breached["minutes_to_access"] > 60).all()


def test_healthy_variant_has_none_of_them(healthy: tuple[Inputs, dict]) -> None:
    inputs, truth = healthy
    assert "sandbox" not in truth["planted"]
    risk = run_report("quarantine-risk", inputs, now=NOW).frame
    assert risk["risk"].tolist() == ["low"]
    assert _slow_jobs(inputs) == set()
    assert _stalled_jobs(inputs) == set()
    coverage = run_report("coverage", inputs, now=NOW).frame
    assert not (coverage["verdict"] == "should_be_disabled").any()
    access = run_report("access-time", inputs, _in_window(inputs), now=NOW).frame
    assert len(access) > 0 and not access["breached"].any()
    # Joiners are timed from their directory-audit join, in every variant.
    assert "directory_audit" in set(access["assigned_at_source"])


@pytest.mark.parametrize("variant", ["planted", "healthy"])
def test_ground_truth_matches_what_was_stored(variant: str, request: pytest.FixtureRequest) -> None:
    inputs, truth = request.getfixturevalue(variant)
    assert len(inputs.events) == truth["events"]["total"]
    assert len(inputs.membership_changes) == truth["planted"]["directory_audit_records"] > 0
    verdicts = run_report("coverage", inputs, now=NOW).data["verdict_counts"]
    expected = truth["expected_reports"]["coverage_verdicts"]
    assert {k: v for k, v in verdicts.items() if v} == {k: v for k, v in expected.items() if v}


def test_cli_healthy_rejects_quarantine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--store", str(tmp_path / "s"), "demo", "--healthy", "--quarantine", "--no-dashboard"]
    assert main(argv) == 2
    assert "--healthy" in capsys.readouterr().err
