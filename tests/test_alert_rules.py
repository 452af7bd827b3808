"""Each alert rule fires on crafted data and stays quiet on healthy data."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import pytest

from alerts import rules
from alerts.config import Config, parse
from reports import REPORTS, ReportResult, ReportSpec
from tests.support import frames as F

NOW = F.ts("2026-11-21T12:00:00Z")
JOB = "scim.j1"
SP = "sp1"


def run(inputs, *, now=NOW, config: Config | None = None, only: str) -> list[rules.Finding]:
    findings, evaluated = rules.evaluate(inputs, config or Config(), now, [only])
    assert evaluated == [only]
    return findings


def cycle_events(
    starts: list[pd.Timestamp], minutes: list[float], failures: list[int] | None = None
) -> list[dict[str, Any]]:
    """Return events for cycles starting at ``starts`` lasting ``minutes`` (3 events + failures)."""
    rows: list[dict[str, Any]] = []
    for i, (start, mins) in enumerate(zip(starts, minutes)):
        n_fail = failures[i] if failures else 0
        times = [start, start + pd.Timedelta(minutes=mins / 2), start + pd.Timedelta(minutes=mins)]
        for k, at in enumerate(times):
            rows.append(
                {
                    "id": f"c{i}-ok{k}",
                    "activity_at": at,
                    "job_id": JOB,
                    "cycle_id": f"cyc{i}",
                    "service_principal_id": SP,
                    "source_id": f"u{k}",
                    "action": "update",
                }
            )
        for k in range(n_fail):
            rows.append(
                {
                    "id": f"c{i}-f{k}",
                    "activity_at": start + pd.Timedelta(seconds=k % max(int(mins * 60), 1)),
                    "job_id": JOB,
                    "cycle_id": f"cyc{i}",
                    "service_principal_id": SP,
                    "source_id": f"f{i}-{k}",
                    "status": "failure",
                    "error_code": "TheOrgWikiEntryConflict",
                }
            )
    return rows


def steady_job(**extra: Any) -> list[dict[str, Any]]:
    return [
        {
            "captured_at": NOW - pd.Timedelta(minutes=5),
            "service_principal_id": SP,
            "job_id": JOB,
            "status_code": "Active",
            "schedule_state": "Active",
            "schedule_interval_s": 2400,
            "steady_state_first_at": "2026-10-01T00:00:00Z",
            **extra,
        }
    ]


# --- failure_spike ---------------------------------------------------------------------------


def _spike_inputs(recent_failures: int) -> Any:
    # one cycle every 40 min for two days, 1 failure each (usually 3 per 2 h), then 2 h more
    starts = [NOW - pd.Timedelta(days=2) + pd.Timedelta(minutes=40 * i) for i in range(72)]
    recent = [s for s in starts if s >= NOW - pd.Timedelta(hours=2)]
    failures = [1] * (len(starts) - len(recent)) + [recent_failures // len(recent)] * len(recent)
    return F.inputs(
        events=cycle_events(starts, [5] * len(starts), failures), sync_jobs=steady_job()
    )


def test_failure_spike_fires_on_many_more_failures_than_usual() -> None:
    found = run(_spike_inputs(30), only="failure_spike")
    assert [(f.rule, f.subject) for f in found] == [("failure_spike", JOB)]
    detail = found[0].detail
    assert detail["failures"] == 30
    assert detail["usual_per_window"] == pytest.approx(3.0, abs=0.2)
    assert found[0].link.startswith("http://localhost:8501/events?cycle=cyc")


def test_failure_spike_quiet_at_the_usual_rate_and_below_the_minimum() -> None:
    assert run(_spike_inputs(3), only="failure_spike") == []
    # 9 failures is 3x the usual 3 but under min_failures (10)
    assert run(_spike_inputs(9), only="failure_spike") == []
    # a config lowering the minimum makes the same data fire
    cfg = parse({"rules": {"failure_spike": {"min_failures": 5}}})
    assert len(run(_spike_inputs(9), only="failure_spike", config=cfg)) == 1


# --- quarantine / quarantine_risk -------------------------------------------------------------


def test_quarantine_fires_for_a_quarantined_job_only() -> None:
    q = F.inputs(
        sync_jobs=steady_job(
            status_code="Quarantine",
            quarantine_reason="EncounteredQuarantineException",
            quarantine_began="2026-11-21T06:00:00Z",
        )
    )
    found = run(q, only="quarantine")
    assert [(f.subject, f.severity) for f in found] == [(JOB, "critical")]
    assert "EncounteredQuarantineException" in found[0].summary
    # the documented retry schedule fills the next attempt: 6 h after it began
    assert found[0].detail["quarantine_next_attempt"] == F.ts("2026-11-21T18:00:00Z")
    assert run(F.inputs(sync_jobs=steady_job()), only="quarantine") == []


def _risk_inputs(failures: int, successes: int) -> Any:
    events = [
        {
            "id": f"f{i}",
            "activity_at": NOW - pd.Timedelta(minutes=30),
            "job_id": JOB,
            "service_principal_id": SP,
            "source_id": f"uf{i}",
            "status": "failure",
        }
        for i in range(failures)
    ] + [
        {
            "id": f"s{i}",
            "activity_at": NOW - pd.Timedelta(minutes=30),
            "job_id": JOB,
            "service_principal_id": SP,
            "source_id": f"us{i}",
        }
        for i in range(successes)
    ]
    return F.inputs(events=events, sync_jobs=steady_job())


def test_quarantine_risk_fires_when_approaching_the_escrow_thresholds() -> None:
    found = run(_risk_inputs(4500, 4500), only="quarantine_risk")
    assert [(f.subject, f.severity, f.detail["risk"]) for f in found] == [
        (JOB, "warning", "approaching")
    ]
    over = run(_risk_inputs(6000, 3000), only="quarantine_risk")
    assert [(f.severity, f.detail["risk"]) for f in over] == [("critical", "over_threshold")]


def test_quarantine_risk_quiet_when_healthy_or_level_not_configured() -> None:
    assert run(_risk_inputs(100, 4500), only="quarantine_risk") == []
    cfg = parse({"rules": {"quarantine_risk": {"levels": ["over_threshold"]}}})
    assert run(_risk_inputs(4500, 4500), only="quarantine_risk", config=cfg) == []


# --- cycle_slow -------------------------------------------------------------------------------


def _cycles(last_minutes: float) -> Any:
    starts = [NOW - pd.Timedelta(hours=8) + pd.Timedelta(minutes=40 * i) for i in range(8)]
    minutes = [10.0] * 7 + [last_minutes]
    return F.inputs(events=cycle_events(starts, minutes), sync_jobs=steady_job())


def test_cycle_slow_fires_past_twice_the_p90() -> None:
    found = run(_cycles(30), only="cycle_slow")
    assert [(f.subject, f.detail["cycle_id"]) for f in found] == [(JOB, "cyc7")]
    assert (
        found[0].summary == "Job scim.j1: cycle cyc7 took 30 min, over 2x its usual p90 of 10 min"
    )


def test_summaries_name_the_app_before_the_job_id() -> None:
    inputs = _cycles(30)
    named = inputs.events.assign(service_principal_name="TheOrgWiki")
    found = run(F.inputs(events=named, sync_jobs=inputs.sync_jobs), only="cycle_slow")
    assert found[0].summary == (
        "TheOrgWiki (job scim.j1): cycle cyc7 took 30 min, over 2x its usual p90 of 10 min"
    )
    assert found[0].detail["p90_duration_s"] == pytest.approx(600.0)
    assert found[0].detail["duration_s"] == pytest.approx(1800.0)
    assert found[0].link == "http://localhost:8501/events?cycle=cyc7"


def test_cycle_slow_quiet_for_a_normal_cycle_or_too_little_history() -> None:
    assert run(_cycles(12), only="cycle_slow") == []
    # 4x a 1-minute p90, but under min_duration_s (5 min): not worth an alert
    starts = [NOW - pd.Timedelta(hours=8) + pd.Timedelta(minutes=40 * i) for i in range(8)]
    short = F.inputs(events=cycle_events(starts, [1.0] * 7 + [4.0]), sync_jobs=steady_job())
    assert run(short, only="cycle_slow") == []
    cfg = parse({"rules": {"cycle_slow": {"min_duration_s": 60}}})
    assert len(run(short, only="cycle_slow", config=cfg)) == 1
    cfg = parse({"rules": {"cycle_slow": {"min_history": 10}}})
    assert run(_cycles(30), only="cycle_slow", config=cfg) == []


# --- stalled ----------------------------------------------------------------------------------


def _stalled(last_run_ago: pd.Timedelta, **job: Any) -> Any:
    start = NOW - last_run_ago - pd.Timedelta(minutes=5)
    return F.inputs(events=cycle_events([start], [5]), sync_jobs=steady_job(**job))


def test_stalled_fires_after_three_intervals_without_a_run() -> None:
    found = run(_stalled(pd.Timedelta(hours=3)), only="stalled")
    assert [(f.subject, f.severity) for f in found] == [(JOB, "critical")]
    assert found[0].detail["intervals_missed"] == pytest.approx(4.5)


def test_stalled_quiet_when_recent_paused_or_unscheduled() -> None:
    assert run(_stalled(pd.Timedelta(minutes=90)), only="stalled") == []
    assert run(_stalled(pd.Timedelta(hours=3), status_code="Paused"), only="stalled") == []
    assert run(_stalled(pd.Timedelta(hours=3), schedule_interval_s=None), only="stalled") == []
    # the snapshot's last execution counts as a run even when its logs are not ingested yet
    recent = _stalled(pd.Timedelta(hours=3), last_execution_ended=NOW - pd.Timedelta(minutes=20))
    assert run(recent, only="stalled") == []


# --- deprovision_missed -----------------------------------------------------------------------


def test_deprovision_missed_fires_for_an_out_of_scope_user_active_in_the_wiki() -> None:
    found = run(F.world(), only="deprovision_missed")
    assert [(f.subject, f.detail["upn"]) for f in found] == [("u7", "ivy@contoso.example")]
    assert found[0].link == "http://localhost:8501/users?user=u7"


def test_deprovision_missed_waits_for_the_grace_period() -> None:
    # u7's last Entra event is at 2026-11-20T01:05Z: 11 h later is within the 24 h grace
    assert run(F.world(), now=F.ts("2026-11-20T12:00:00Z"), only="deprovision_missed") == []
    cfg = parse({"rules": {"deprovision_missed": {"grace_hours": 6}}})
    late = run(F.world(), now=F.ts("2026-11-20T12:00:00Z"), config=cfg, only="deprovision_missed")
    assert [f.subject for f in late] == ["u7"]


def test_deprovision_missed_quiet_when_the_wiki_account_is_disabled() -> None:
    w = F.world()
    res = w.scim_resources.copy()
    res.loc[res["id"] == "w7", "active"] = False
    w.scim_resources = res
    assert run(w, only="deprovision_missed") == []


# --- wiki_errors ------------------------------------------------------------------------------


def _requests(n: int, errors: int, status: int = 503, ago_min: float = 5) -> Any:
    return F.inputs(
        scim_requests=[
            {
                "request_id": f"r{i}",
                "received_at": NOW - pd.Timedelta(minutes=ago_min) + pd.Timedelta(seconds=i),
                "method": "PATCH",
                "operation": "patch",
                "status_code": status if i < errors else 200,
            }
            for i in range(n)
        ]
    )


def test_wiki_errors_fires_at_five_percent_5xx_or_429() -> None:
    found = run(_requests(100, 10), only="wiki_errors")
    assert [(f.subject, f.detail["errors"], f.detail["requests"]) for f in found] == [
        ("wiki", 10, 100)
    ]
    throttled = run(_requests(100, 6, status=429), only="wiki_errors")
    assert throttled[0].detail["throttled_429"] == 6


def test_wiki_errors_quiet_below_the_rate_too_few_requests_or_old_errors() -> None:
    assert run(_requests(100, 4), only="wiki_errors") == []
    assert run(_requests(10, 10), only="wiki_errors") == []  # under min_requests
    assert run(_requests(100, 50, ago_min=40), only="wiki_errors") == []  # outside 15 min
    assert run(_requests(100, 50, status=409), only="wiki_errors") == []  # 4xx is not an outage


# --- access_slo -------------------------------------------------------------------------------


def _access_time(
    inputs, filters, *, include_noise=False, now=None, slo_minutes=60, include_waiting=False, **_
):
    """A stand-in for the access-time report (DESIGN's columns plus ``waiting``)."""
    rows = pd.DataFrame(
        {
            "principal_id": ["u1", "u2", "u3", "u4"],
            "upn": ["ada@x", "bo@x", "cy@x", "dee@x"],
            "service_principal_id": [SP] * 4,
            "assigned_at": pd.to_datetime(
                [
                    "2026-11-21T08:00:00Z",
                    "2026-11-21T09:00:00Z",
                    "2026-11-01T09:00:00Z",
                    "2026-11-21T10:00:00Z",
                ],
                utc=True,
            ),
            "assigned_via": ["direct"] * 4,
            "assigned_at_source": ["assignment"] * 4,
            "first_provisioned_at": pd.NaT,
            "wiki_active_at": pd.NaT,
            "minutes_to_access": [30.0, 95.0, 300.0, 120.0],
            "waiting": [False, False, False, True],
        }
    )
    rows["slo_minutes"] = slo_minutes
    rows["breached"] = rows["minutes_to_access"] > slo_minutes
    return ReportResult(frame=rows if include_waiting else rows.loc[~rows["waiting"]])


@pytest.fixture
def access_report(monkeypatch):
    monkeypatch.setitem(
        REPORTS,
        "access-time",
        ReportSpec(
            "access-time", f"{__name__}:_access_time", "test", "rows", ("events", "assignments")
        ),
    )


def test_access_slo_fires_once_per_app_for_recent_breaches(access_report) -> None:
    found = run(F.inputs(), only="access_slo")
    # u3's breach is older than the 7-day lookback; u1 was within the SLO; u4 is still waiting
    assert [(f.subject, f.detail["users"], f.detail["waiting"]) for f in found] == [(SP, 2, 1)]
    assert [u["principal_id"] for u in found[0].detail["longest"]] == ["u4", "u2"]
    assert found[0].summary == (
        "2 users past the 60 min access SLO in the last 7 days (1 still waiting); "
        "longest: dee@x, 120 min"
    )
    assert found[0].link == "http://localhost:8501/users?user=u4"
    stricter = parse({"rules": {"access_slo": {"minutes": 20}}})
    assert run(F.inputs(), only="access_slo", config=stricter)[0].detail["users"] == 3


def test_access_slo_per_user(access_report) -> None:
    cfg = parse({"rules": {"access_slo": {"per_user": True}}})
    found = run(F.inputs(), only="access_slo", config=cfg)
    assert [(f.subject, f.detail["minutes_to_access"]) for f in found] == [
        ("u4", 120.0),
        ("u2", 95.0),
    ]
    assert found[0].summary.startswith("dee@x has been waiting 120 min")
    assert found[1].summary.startswith("bo@x waited 95 min")
    assert found[1].link == "http://localhost:8501/users?user=u2"


def test_access_slo_is_quiet_when_the_report_is_not_registered(monkeypatch) -> None:
    monkeypatch.delitem(REPORTS, "access-time", raising=False)
    assert "access_slo" not in rules.active_rules(Config())
    findings, evaluated = rules.evaluate(F.world(), Config(), NOW)
    assert "access_slo" not in evaluated
    assert all(f.rule != "access_slo" for f in findings)


# --- everything at once -----------------------------------------------------------------------


def test_healthy_tenant_raises_nothing() -> None:
    starts = [NOW - pd.Timedelta(days=1) + pd.Timedelta(minutes=40 * i) for i in range(36)]
    inputs = F.inputs(
        events=cycle_events(starts, [8.0] * 36, [1] * 36),
        sync_jobs=steady_job(),
        scim_requests=_requests(100, 1).scim_requests,
    )
    findings, evaluated = rules.evaluate(inputs, Config(), NOW)
    assert len(evaluated) >= 7
    assert findings == []


def test_disabled_rule_is_not_evaluated() -> None:
    cfg = parse({"rules": {"quarantine": {"enabled": False}}})
    assert "quarantine" not in rules.active_rules(cfg)


def test_detail_is_json_with_iso_times() -> None:
    found = run(F.world(), only="deprovision_missed")
    detail = json.loads(found[0].detail_json())
    assert detail["last_event_at"] == "2026-11-20T01:05:00.000Z"


def test_example_config_is_the_defaults() -> None:
    """docs/alerts.example.toml documents exactly the defaults the code uses."""
    from pathlib import Path

    from alerts.config import DEFAULTS, load

    cfg = load(Path(__file__).resolve().parent.parent / "docs" / "alerts.example.toml")
    assert {k: {s: v for s, v in r.items() if s != "enabled"} for k, r in cfg.rules.items()} == (
        DEFAULTS
    )
    assert cfg.dashboard_url == Config().dashboard_url
    assert cfg.delivery == Config().delivery
    assert not cfg.targets and cfg.sources == {}
