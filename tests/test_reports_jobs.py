"""job-status and alerts reports on small inline frames."""

from __future__ import annotations

import pandas as pd

from reports import Filters, run_report
from tests.support import frames as F


def test_job_status_takes_the_later_of_snapshot_and_logs() -> None:
    out = run_report("job-status", F.world()).frame.set_index("job_id")
    assert list(out.index) == ["scim.j1", "scim.j2"]
    j1 = out.loc["scim.j1"]
    # c2's last event (01:10) is later than the snapshot's last execution end (00:20)
    assert j1["last_cycle_id"] == "c2"
    assert j1["last_run_at"] == F.ts("2026-11-20T01:10:00Z")
    assert j1["next_run_due_at"] == F.ts("2026-11-20T01:50:00Z")
    assert j1["schedule_interval_s"] == 2400
    # j2 has no interval: never due by itself
    assert pd.isna(out.loc["scim.j2", "next_run_due_at"])


def test_job_status_for_a_job_with_snapshot_only() -> None:
    inputs = F.inputs(
        sync_jobs=[
            {
                "captured_at": "2026-11-20T00:00:00Z",
                "service_principal_id": "sp9",
                "job_id": "scim.x",
                "status_code": "Active",
                "schedule_interval_s": 600,
                "last_execution_ended": "2026-11-19T23:00:00Z",
            }
        ]
    )
    row = run_report("job-status", inputs).frame.iloc[0]
    assert (row["job_id"], row["service_principal_id"]) == ("scim.x", "sp9")
    assert pd.isna(row["last_cycle_id"])
    assert row["last_run_at"] == F.ts("2026-11-19T23:00:00Z")
    assert row["next_run_due_at"] == F.ts("2026-11-19T23:10:00Z")


def _alert(aid: str, state: str, raised: str, resolved: str | None = None) -> dict:
    rule, subject = aid.split(":")
    return {
        "alert_id": aid,
        "rule": rule,
        "subject": subject,
        "severity": "warning",
        "state": state,
        "raised_at": raised,
        "resolved_at": resolved,
        "delivery_pending": False,
    }


def test_alerts_report_lists_firing_first_then_newest() -> None:
    inputs = F.inputs(
        alerts=[
            _alert("stalled:j1", "resolved", "2026-11-20T01:00:00Z", "2026-11-20T02:00:00Z"),
            _alert("stalled:j1", "firing", "2026-11-20T05:00:00Z"),
            _alert("quarantine:j2", "resolved", "2026-11-20T03:00:00Z", "2026-11-20T04:00:00Z"),
        ]
    )
    res = run_report("alerts", inputs)
    assert list(zip(res.frame["alert_id"], res.frame["state"])) == [
        ("stalled:j1", "firing"),
        ("quarantine:j2", "resolved"),
        ("stalled:j1", "resolved"),
    ]
    assert res.data == {"counts": {"firing": 1, "resolved": 2}}
    # a range keeps alerts open during it
    cut = run_report("alerts", inputs, Filters(since="2026-11-20T03:30:00Z"))
    assert cut.frame["raised_at"].tolist() == [
        F.ts("2026-11-20T05:00:00Z"),
        F.ts("2026-11-20T03:00:00Z"),
    ]
    assert run_report("alerts", inputs, state="firing").frame["alert_id"].tolist() == ["stalled:j1"]


def test_job_header_counts_scope_per_app_not_tenant_wide() -> None:
    snapshots = [
        {
            "captured_at": "2026-11-20T00:00:00Z",
            "service_principal_id": sp,
            "job_id": job,
            "status_code": "Active",
            "schedule_interval_s": 2400,
        }
        for sp, job in (("spA", "scim.a"), ("spB", "scim.b"))
    ]
    assignments = [
        {"service_principal_id": sp, "principal_id": f"{sp}-u{i}", "principal_type": "user"}
        for sp, n in (("spA", 2), ("spB", 3))
        for i in range(n)
    ]
    inputs = F.inputs(sync_jobs=snapshots, assignments=assignments)
    out = run_report("job-header", inputs, now=F.ts("2026-11-20T01:00:00Z")).frame
    assert dict(zip(out["job_id"], out["objects_in_scope"])) == {"scim.a": 2, "scim.b": 3}
