"""The dashboard's figures, moved into reports/: exact values on small frames."""

from __future__ import annotations

import pandas as pd
import pytest

from reports import Filters, run_report
from reports import overview as ov
from reports.correlation import latest_verdict
from reports.coverage import VERDICTS, coverage_funnel, verdict_counts
from reports.estimate import cycle_progress, scale_estimate
from reports.scim_traffic import (
    status_class,
    status_classes_long,
    status_code_counts,
    traffic_summary,
)
from reports.users import Timeline, affected_users, search_users, shown_timeline, user_key
from tests.e2e import fixture_data as fx
from tests.support import frames as F

T0 = pd.Timestamp("2026-11-18T08:00:00Z")


def t(minutes: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(minutes=minutes)


def _events() -> pd.DataFrame:
    return F.events(
        [
            {"activity_at": t(0), "status": "success", "action": "create", "source_id": "a",
             "service_principal_id": "sp2", "service_principal_name": "Zeta", "job_id": "j2"},
            {"activity_at": t(3), "status": "failure", "action": "create", "source_id": "b",
             "error_code": "E1", "source_name": "Bea", "service_principal_id": "sp1",
             "service_principal_name": "alpha", "job_id": "j1"},
            {"activity_at": t(61), "status": "failure", "action": "update", "source_id": "a",
             "error_code": "E2", "service_principal_id": "sp1", "job_id": "j1"},
            {"activity_at": t(65), "status": "skipped", "action": None, "source_id": "c",
             "service_principal_id": "sp3", "job_id": "j1"},
        ]
    )  # fmt: skip


def test_filter_options_lists_apps_by_name_jobs_span_and_demo_flag() -> None:
    opts = ov.filter_options(_events())
    assert opts.apps == {"sp1": "alpha", "sp3": "sp3", "sp2": "Zeta"}
    assert opts.jobs == ("j1", "j2")
    assert (opts.first_at, opts.last_at) == (t(0), t(65))
    assert opts.is_demo is False
    demo = ov.filter_options(_events().assign(origin="demo"))
    assert demo.is_demo is True
    assert ov.filter_options(_events().iloc[:0]) == ov.FilterOptions({}, (), None, None, False)


def test_counts_over_time_buckets_and_names_missing_values() -> None:
    out = ov.counts_over_time(_events(), "activity_at", "action", "h")
    got = [(b.hour, a, c) for b, a, c in zip(out["bucket"], out["action"], out["count"])]
    assert got == [(8, "create", 2), (9, "update", 1), (9, "(none)", 1)]
    empty = ov.counts_over_time(_events().iloc[:0], "activity_at", "status", "D")
    assert list(empty.columns) == ["bucket", "status", "count"] and empty.empty
    assert str(empty["bucket"].dtype) == "datetime64[us, UTC]"


def test_events_over_time_filters_status_and_picks_the_bucket_from_the_span() -> None:
    spans: list[pd.Timedelta] = []

    def pick(span: pd.Timedelta) -> str:
        spans.append(span)
        return "h"

    out = ov.events_over_time(_events(), "error_code", pick, status="failure")
    assert spans == [pd.Timedelta(minutes=58)]  # failures only: t(3) .. t(61)
    assert list(zip(out["bucket"].dt.hour, out["error_code"], out["count"])) == [
        (8, "E1", 1),
        (9, "E2", 1),
    ]
    fixed = ov.events_over_time(_events(), "status", "D")
    assert dict(zip(fixed["status"], fixed["count"])) == {"failure": 2, "skipped": 1, "success": 1}
    none = ov.events_over_time(_events(), "status", pick, status="warning")
    assert none.empty and spans[-1] == pd.Timedelta(0)


def test_latest_failures_newest_first_with_the_columns_people_read() -> None:
    out = ov.latest_failures(_events(), limit=5)
    assert list(out["error_code"]) == ["E2", "E1"]
    assert list(out.columns) == list(ov.LATEST_FAILURE_COLUMNS)
    assert list(ov.latest_failures(_events(), limit=1)["activity_at"]) == [t(61)]


def test_worst_risk_orders_by_seriousness() -> None:
    risk = pd.DataFrame({"risk": ["low", "approaching", None]})
    assert ov.worst_risk(risk) == "approaching"
    assert ov.worst_risk(pd.DataFrame({"risk": ["low", "quarantined"]})) == "quarantined"
    assert ov.worst_risk(pd.DataFrame({"risk": ["mystery"]})) == "unknown"
    assert ov.worst_risk(None) == "—" and ov.worst_risk(pd.DataFrame({"risk": []})) == "—"


def _jobs() -> pd.DataFrame:
    return F.frame(
        "sync_jobs",
        [
            {"captured_at": t(0), "job_id": "j1", "status_code": "Active"},
            {"captured_at": t(50), "job_id": "j1", "status_code": "Quarantine",
             "quarantine_began": t(40), "quarantine_reason": "EncounteredQuarantineException"},
            {"captured_at": t(10), "job_id": "j2", "status_code": None},
        ],
    )  # fmt: skip


def test_job_states_quarantine_and_kpis() -> None:
    jobs = ov.latest_job_states(_jobs())
    assert list(jobs["job_id"]) == ["j1", "j2"]  # latest snapshot of each, newest first
    q = ov.quarantined_jobs(jobs)
    assert list(q.columns) == list(ov.QUARANTINE_COLUMNS)
    assert q[["job_id", "quarantine_reason"]].values.tolist() == [
        ["j1", "EncounteredQuarantineException"]
    ]
    summary = {
        "events": 4,
        "success_rate": 0.25,
        "source_objects": 3,
        "cycles": 2,
        "failures_by_error_code": {"E1": 1, "E2": 2},
    }
    cycles = pd.DataFrame(
        {"started_at": [t(0), t(60)], "duration_s": [300.0, 600.0], "kind": ["initial", "x"]}
    )
    risk = pd.DataFrame({"risk": ["low", "quarantined"]})
    assert ov.kpis(summary, cycles, jobs, risk) == {
        "events": 4,
        "success_rate": 0.25,
        "failures": 3,
        "source_objects": 3,
        "cycles": 2,
        "jobs": 2,
        "job_state": "Quarantine",
        "jobs_quarantined": 1,
        "quarantine_risk": "quarantined",
        "last_cycle_started_at": t(60),
        "last_cycle_duration_s": 600.0,
    }
    none = ov.kpis({}, None, ov.latest_job_states(_jobs().iloc[:0]), None)
    assert none["job_state"] is None and none["jobs"] == 0 and none["failures"] == 0
    assert none["last_cycle_started_at"] is None and none["quarantine_risk"] == "—"
    # A job whose latest status is unknown says so rather than failing.
    only_j2 = ov.latest_job_states(_jobs().iloc[[2]])
    assert ov.kpis({}, None, only_j2, None)["job_state"] == "unknown"


def test_cycle_kpis() -> None:
    cycles = pd.DataFrame(
        {
            "kind": ["initial", "incremental", "incremental"],
            "duration_s": pd.array([600, 60, None], dtype="Float64"),
            "gap_before_s": pd.array([None, 2400, 1800], dtype="Float64"),
        }
    )
    assert ov.cycle_kpis(cycles) == {
        "cycles": 3,
        "initial": 1,
        "median_duration_s": 330.0,
        "longest_gap_s": 2400.0,
    }
    assert ov.cycle_kpis(None) == {
        "cycles": 0,
        "initial": 0,
        "median_duration_s": None,
        "longest_gap_s": None,
    }


def test_failure_kpis_and_affected_users() -> None:
    failures = pd.DataFrame({"error_code": ["E1", "E2"], "events": [4, 1]})
    users = pd.DataFrame(
        {
            "source_id": ["a", "b", "c", "d"],
            "failures": pd.array([0, 2, None, 2], dtype="Int64"),
            "last_at": [t(0), t(1), t(2), t(3)],
        }
    )
    assert ov.failure_kpis(failures, users) == {
        "failed_events": 5,
        "error_codes": 2,
        "users_with_failure": 2,
    }
    assert ov.failure_kpis(None, None) == {
        "failed_events": 0,
        "error_codes": 0,
        "users_with_failure": 0,
    }
    # Most failures first, then the most recent.
    assert list(affected_users(users)["source_id"]) == ["d", "b"]
    assert affected_users(None).empty


def test_overview_build_composes_the_reports_it_shows() -> None:
    inputs = F.inputs(events=_events(), sync_jobs=_jobs())
    result = ov.build(inputs, Filters(), now=t(120))
    summary = run_report("summary", inputs).data or {}
    cycles = run_report("cycles", inputs).frame
    risk = run_report("quarantine-risk", inputs, now=t(120)).frame
    jobs = ov.latest_job_states(inputs.sync_jobs)
    data = result.data or {}
    composed = ov.kpis(summary, cycles, jobs, risk)
    assert {k: data[k] for k in composed if k != "success_rate"} == {
        k: v for k, v in composed.items() if k != "success_rate"
    }
    assert data["success_rate_all"] == composed["success_rate"]
    assert data["events"] == 4 and data["failures"] == 2
    assert data["job_state"] == "Quarantine"
    assert result.frame is not None and list(result.frame["error_code"]) == ["E2", "E1"]
    only_j2 = ov.build(inputs, Filters(job_ids=("j2",)), now=t(120)).data or {}
    assert (only_j2["events"], only_j2["failures"], only_j2["job_state"]) == (1, 0, "unknown")


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
    funnel = coverage_funnel(cov)
    assert list(funnel["stage"]) == [
        "In scope",
        "Processed by Entra",
        "Last Entra status success",
        "Active in the wiki",
    ]
    assert list(funnel["users"]) == [4, 3, 2, 1]
    counts = verdict_counts(cov)
    assert list(counts) == list(VERDICTS)
    assert counts == {
        "provisioned": 1,
        "failed": 1,
        "skipped": 0,
        "pending": 1,
        "missing_in_wiki": 1,
        "should_be_disabled": 1,
        "orphaned": 0,
        "excluded": 0,
    }


def test_scale_estimate_is_linear_in_objects() -> None:
    est = {
        "objects_in_scope": 100,
        "docs_min_minutes": 1.0,
        "docs_max_minutes": 8.0,
        "estimate_minutes_p50": 5.0,
        "estimate_minutes_p90": 7.0,
        "observed_objects_per_min": 20.0,
    }
    out = scale_estimate(est, 1000)
    assert out["objects_in_scope"] == 1000
    assert (out["docs_min_minutes"], out["docs_max_minutes"]) == (10.0, 80.0)
    assert (out["estimate_minutes_p50"], out["estimate_minutes_p90"]) == (50.0, 70.0)
    assert est["docs_min_minutes"] == 1.0  # input untouched
    assert scale_estimate(est, 100) == est
    # From an empty scope only the documented rate and the median throughput can speak.
    empty = scale_estimate({**est, "objects_in_scope": 0}, 40)
    assert empty["docs_min_minutes"] == pytest.approx(0.4)
    assert empty["docs_max_minutes"] == pytest.approx(3.2)
    assert empty["estimate_minutes_p50"] == 2.0 and empty["estimate_minutes_p90"] is None


def test_cycle_progress() -> None:
    assert cycle_progress({"processed": 30, "remaining": 90}) == {
        "processed": 30,
        "remaining": 90,
        "total": 120,
        "fraction": 0.25,
    }
    assert cycle_progress({"processed": 7, "remaining": None}) == {
        "processed": 7,
        "remaining": None,
        "total": None,
        "fraction": None,
    }
    assert (cycle_progress({"processed": 0, "remaining": 0}) or {})["fraction"] == 0.0
    assert cycle_progress(None) is None


def _requests() -> pd.DataFrame:
    return F.frame(
        "scim_requests",
        [
            {"request_id": "r1", "received_at": t(0), "status_code": 200, "latency_ms": 10},
            {"request_id": "r2", "received_at": t(0.5), "status_code": 201, "latency_ms": 20},
            {"request_id": "r3", "received_at": t(1), "status_code": 429, "latency_ms": 30},
            {"request_id": "r4", "received_at": t(2), "status_code": 409, "latency_ms": 40},
            {"request_id": "r5", "received_at": t(2), "status_code": 200, "latency_ms": None},
            {"request_id": "r6", "received_at": t(3), "status_code": None, "latency_ms": 50},
        ],
    )


def test_traffic_summary_counts_errors_429s_and_latency() -> None:
    assert traffic_summary(_requests()) == {
        "requests": 6,
        "errors": 2,
        "throttled": 1,
        "p50_ms": 30.0,
        "p95_ms": pytest.approx(48.0),
        "p99_ms": pytest.approx(49.6),
    }
    empty = traffic_summary(_requests().iloc[:0])
    assert empty == {
        "requests": 0,
        "errors": 0,
        "throttled": 0,
        "p50_ms": None,
        "p95_ms": None,
        "p99_ms": None,
    }


def test_status_codes_and_classes() -> None:
    codes = pd.Series([200, 429, 404, 503, None], dtype="Int64")
    assert status_class(codes).tolist() == ["2xx", "429", "4xx", "5xx", "unknown"]
    counts = status_code_counts(_requests())
    assert counts.values.tolist() == [
        ["200", 2, "2xx"],
        ["201", 1, "2xx"],
        ["429", 1, "429"],
        ["409", 1, "4xx"],
        ["unknown", 1, "unknown"],
    ]
    assert list(counts.columns) == ["status_code", "requests", "status_class"]


def test_status_classes_long_keeps_429_apart() -> None:
    minutes = pd.DataFrame(
        {
            "period_start": pd.to_datetime(["2026-11-18T08:00Z", "2026-11-18T08:01Z"], utc=True),
            "status_2xx": [3, 0],
            "status_4xx": [2, 1],
            "throttled_429": [1, 1],
        }
    )
    long = status_classes_long(
        minutes, {"2xx": "status_2xx", "4xx": "status_4xx_other", "429": "throttled_429"}
    )
    got = sorted(zip(long["period_start"].dt.minute, long["status"], long["requests"], strict=True))
    assert got == [(0, "2xx", 3), (0, "429", 1), (0, "4xx", 1), (1, "429", 1)]


def test_search_and_user_keys() -> None:
    users = pd.DataFrame(
        {
            "source_id": ["obj-1", None, None],
            "source_name": [fx.XSS_NAME, "Grace", None],
            "source_upn": ["xss@contoso.com", "grace@contoso.com", None],
            "target_id": ["w1", None, "w9"],
        }
    )
    assert list(search_users(users, "XSS@")["source_id"]) == ["obj-1"]
    assert list(search_users(users, "<IMG")["source_id"]) == ["obj-1"]  # literal, not a regex
    assert list(search_users(users, "w9").index) == [2]
    assert len(search_users(users, "  ")) == 3 and len(search_users(users, "", limit=1)) == 1
    assert search_users(users, "nobody").empty
    assert list(user_key(users)) == ["obj-1", "grace@contoso.com", "w9"]


def test_shown_timeline_hides_noise_events_and_their_children() -> None:
    events = pd.DataFrame({"id": ["e1", "e2", "e3"], "noise": [False, True, False]})
    steps = pd.DataFrame({"event_id": ["e1", "e2", "e3"], "position": [0, 0, 0]})
    mods = pd.DataFrame({"event_id": ["e2", "e3"], "name": ["accountDisabled", "mail"]})
    tl = Timeline(events=events, steps=steps, modified_properties=mods)
    shown, hidden = shown_timeline(tl, include_noise=False)
    assert hidden == 1
    assert list(shown.events["id"]) == ["e1", "e3"]
    assert list(shown.steps["event_id"]) == ["e1", "e3"]
    assert list(shown.modified_properties["name"]) == ["mail"]
    assert shown_timeline(tl, include_noise=True) == (tl, 0)


def test_latest_verdict_reads_the_newest_event_row() -> None:
    corr = pd.DataFrame(
        {
            "event_id": ["e1", "e2", None],
            "activity_at": [t(0), t(5), pd.NaT],
            "verdict": ["both_ok", "rejected_by_wiki", "wiki_only"],
        }
    )
    assert latest_verdict(corr) == "rejected_by_wiki"
    assert latest_verdict(corr.iloc[[2]]) is None
    assert latest_verdict(None) is None


def test_events_over_time_past_60_days_counts_iso_weeks() -> None:
    # 90 days of events: weekly bars, each starting on a Monday 00:00 UTC.
    times = pd.date_range("2026-08-01T13:00:00Z", periods=90, freq="D")
    inputs = F.inputs(
        events=[
            {"id": f"e{i}", "activity_at": t, "status": "success", "action": "create"}
            for i, t in enumerate(times)
        ]
    )
    out = run_report("events-over-time", inputs)
    frame = out.frame
    assert out.data["bucket"] == "W"
    assert (frame["bucket"].dt.day_of_week == 0).all()
    assert (frame["bucket"] == frame["bucket"].dt.floor("D")).all()
    assert frame["count"].sum() == 90
    # 2026-08-01 is a Saturday: its week began on Monday 2026-07-27 and holds 2 days.
    assert frame.iloc[0]["bucket"] == pd.Timestamp("2026-07-27T00:00:00Z")
    assert frame.iloc[0]["count"] == 2
