"""summary and cycles on the sample tenant: two jobs overlapping, a cycle across midnight."""

from __future__ import annotations

import pandas as pd

from reports import Filters, run_report
from reports.cycles import cycle_table, incremental_trend
from tests.support.frames import J1, J2, events, frame, ts, world


def test_summary_counts_everything_including_noise():
    data = run_report("summary", world()).data
    assert data == {
        "events": 10,
        "distinct_ids": 10,
        "cycles": 3,
        "changes": 10,
        "source_objects": 7,
        "first_at": ts("2026-11-19T23:50:00Z"),
        "last_at": ts("2026-11-20T01:10:00Z"),
        "success_rate": 0.5,
        "by_action_status": {
            "create": {"failure": 2, "skipped": 2, "success": 2, "warning": 1},
            "update": {"success": 3},
        },
        "failures_by_error_code": {
            "TheOrgWikiEntryConflict": 1,
            "TheOrgWikiMandatoryFieldsMissing": 1,
        },
        "by_envelope_result_type": {},
    }


def test_summary_of_nothing():
    data = run_report("summary", world(), Filters(job_ids=("none",))).data
    assert data["events"] == 0 and data["success_rate"] is None and data["first_at"] is None
    assert data["by_action_status"] == {} and data["failures_by_error_code"] == {}


def test_cycles_overlapping_jobs_midnight_kind_and_gap():
    table = run_report("cycles", world()).frame
    assert table["cycle_id"].tolist() == ["c1", "d1", "c2"]
    assert table["job_id"].tolist() == [J1, J2, J1]
    assert table["started_at"].tolist() == [
        ts("2026-11-19T23:50:00Z"),
        ts("2026-11-20T00:05:00Z"),
        ts("2026-11-20T01:00:00Z"),
    ]
    # c1 spans midnight: one cycle of 30 minutes, not two.
    assert table["ended_at"].tolist() == [
        ts("2026-11-20T00:20:00Z"),
        ts("2026-11-20T00:15:00Z"),
        ts("2026-11-20T01:10:00Z"),
    ]
    assert table["duration_s"].tolist() == [1800.0, 600.0, 600.0]
    # j1 reached steady state at 00:30, after c1 began; j2 was steady long before d1.
    assert table["kind"].tolist() == ["initial", "incremental", "incremental"]
    assert table["events"].tolist() == [3, 2, 5]
    assert table["changes"].tolist() == [3, 2, 5]
    assert table["objects"].tolist() == [3, 2, 5]
    assert table["success"].tolist() == [1, 1, 3]
    assert table["failure"].tolist() == [1, 0, 1]
    assert table["skipped"].tolist() == [1, 0, 1]
    assert table["warning"].tolist() == [0, 1, 0]
    assert table["objects_per_min"].tolist() == [0.1, 0.2, 0.5]
    # The gap runs from the same job's previous cycle, not from j2's overlapping d1.
    assert table["gap_before_s"].isna().tolist() == [True, True, False]
    assert table.loc[2, "gap_before_s"] == 2400.0


def test_first_cycle_after_steady_state_is_incremental_and_unknown_without_snapshot():
    ev = events(
        [
            {"activity_at": "2026-11-20T10:00:00Z", "job_id": "a", "cycle_id": "a1"},
            {"activity_at": "2026-11-20T10:00:00Z", "job_id": "b", "cycle_id": "b1"},
            {"activity_at": "2026-11-20T10:00:00Z", "job_id": "c", "cycle_id": "c1"},
        ]
    )
    jobs = frame(
        "sync_jobs",
        [
            {
                "captured_at": "2026-11-20T11:00:00Z",
                "job_id": "a",
                "steady_state_first_at": "2026-11-19T00:00:00Z",
            },
            {"captured_at": "2026-11-20T11:00:00Z", "job_id": "b"},
        ],
    )
    table = cycle_table(ev, jobs).set_index("job_id")
    assert table["kind"].to_dict() == {"a": "incremental", "b": "initial", "c": "unknown"}
    # one event: zero duration, so no rate
    assert table["objects_per_min"].isna().all()


def test_incremental_trend_rolling_median():
    rows = []
    for k, minutes in enumerate([10, 20, 60, 5]):
        start = pd.Timestamp("2026-11-20T00:00:00Z") + pd.Timedelta(hours=k)
        for at in (start, start + pd.Timedelta(minutes=minutes)):
            rows.append({"activity_at": at.isoformat(), "job_id": "j", "cycle_id": f"k{k}"})
    jobs = frame("sync_jobs", [{"captured_at": "2026-11-21T00:00:00Z", "job_id": "j"}])
    trend = incremental_trend(cycle_table(events(rows), jobs), window=2)
    assert trend["cycle_id"].tolist() == ["k1", "k2", "k3"]
    assert trend["duration_s"].tolist() == [1200.0, 3600.0, 300.0]
    assert trend["rolling_median_s"].tolist() == [1200.0, 2400.0, 1950.0]


def test_cycles_dtypes_keep_utc_timestamps():
    table = run_report("cycles", world()).frame
    assert str(table["started_at"].dtype) == "datetime64[us, UTC]"
    assert str(table["events"].dtype) == "Int64"
