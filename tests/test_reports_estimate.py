"""estimate: documented bounds, observed throughput, running cycle, next cycle, when_user."""

from __future__ import annotations

import pandas as pd
import pytest

from reports import run_report
from reports.estimate import when_user
from tests.support.frames import ROLE, SP, inputs, ts, world


def test_estimate_on_the_sample_tenant():
    data = run_report("estimate", world(), now=ts("2026-11-20T03:00:00Z"), min_events=2).data
    # in scope: u1, u9 (direct) + u2, u8, u10 (direct members of g1) + the group g1 itself
    assert data["objects_in_scope"] == 6
    assert data["docs_min_minutes"] == pytest.approx(0.06)
    assert data["docs_max_minutes"] == pytest.approx(0.48)
    # rates 0.1, 0.2, 0.5 objects/min -> 60, 30, 12 minutes for 6 objects
    assert data["cycles_observed"] == 3
    assert data["observed_objects_per_min"] == pytest.approx(0.2)
    assert data["estimate_minutes_p50"] == pytest.approx(30.0)
    assert data["estimate_minutes_p90"] == pytest.approx(54.0)
    assert data["current_cycle"] is None  # c2 ended 01:10, long before 03:00
    # last cycle end (c2, 01:10) + j1's interval of 2400 s = 01:50, already past at 03:00:
    # the schedule repeats, so the next run is 01:50 + 2 x 40 min (never a time in the past)
    assert data["next_incremental_at"] == ts("2026-11-20T03:10:00Z")


def test_estimate_ignores_cycles_too_small_to_measure():
    data = run_report("estimate", world(), now=ts("2026-11-20T03:00:00Z")).data
    assert data["cycles_observed"] == 0
    assert data["observed_objects_per_min"] is None
    assert data["estimate_minutes_p50"] is None and data["estimate_minutes_p90"] is None


def _running_initial():
    start = pd.Timestamp("2026-11-20T10:00:00Z")
    # 31 events in 30 minutes over 30 distinct objects (u0 twice): 1 object per minute.
    rows = [
        {
            "activity_at": (start + pd.Timedelta(minutes=k)).isoformat(),
            "job_id": "j",
            "cycle_id": "k1",
            "source_id": f"u{k % 30}",
            "source_type": "user",
        }
        for k in range(31)
    ]
    assignments = [
        {
            "service_principal_id": SP,
            "principal_id": f"u{k}",
            "principal_type": "user",
            "app_role_id": ROLE,
            "default_access": False,
        }
        for k in range(100)
    ]
    assignments.append(
        {
            "service_principal_id": SP,
            "principal_id": "g",
            "principal_type": "group",
            "app_role_id": ROLE,
            "default_access": False,
        }
    )
    members = [
        {
            "group_id": "g",
            "member_id": "nested",
            "member_type": "user",
            "member_upn": "nested@x.example",
            "direct": False,
        }
    ]
    jobs = [{"captured_at": "2026-11-20T09:00:00Z", "job_id": "j", "service_principal_id": SP}]
    return inputs(events=rows, assignments=assignments, group_members=members, sync_jobs=jobs)


def test_running_initial_cycle_has_processed_remaining_and_eta():
    data = run_report("estimate", _running_initial(), now=ts("2026-11-20T10:32:00Z")).data
    assert data["objects_in_scope"] == 101  # 100 users + the group
    assert data["observed_objects_per_min"] == pytest.approx(1.0)
    assert data["estimate_minutes_p50"] == pytest.approx(101.0)
    cur = data["current_cycle"]
    assert cur["cycle_id"] == "k1" and cur["kind"] == "initial"
    assert cur["started_at"] == ts("2026-11-20T10:00:00Z")
    assert (cur["processed"], cur["remaining"]) == (30, 71)
    assert cur["eta"] == ts("2026-11-20T11:43:00Z")  # 10:32 + 71 min at 1/min
    # no schedule known: the documented 40 minutes after the running cycle's ETA
    assert data["next_incremental_at"] == ts("2026-11-20T12:23:00Z")


def test_cycle_is_not_running_once_the_job_snapshot_says_it_ended():
    data = _running_initial()
    data.sync_jobs = inputs(
        sync_jobs=[
            {
                "captured_at": "2026-11-20T10:31:00Z",
                "job_id": "j",
                "last_execution_began": "2026-11-20T10:00:00Z",
                "last_execution_ended": "2026-11-20T10:30:30Z",
            }
        ]
    ).sync_jobs
    result = run_report("estimate", data, now=ts("2026-11-20T10:32:00Z")).data
    assert result["current_cycle"] is None
    assert result["next_incremental_at"] == ts("2026-11-20T11:10:00Z")


def test_when_user_answers_by_scope_and_cycle():
    data = _running_initial()
    now = ts("2026-11-20T10:32:00Z")
    pending = when_user(data, "u50", now)
    assert pending["verdict"] == "pending" and pending["expected_by"] == ts("2026-11-20T11:43:00Z")
    nested = when_user(data, "NESTED@x.example", now)
    assert nested["in_scope"] is False and nested["scope_via"] == "nested_group"
    assert nested["expected_by"] is None and nested["reason"].startswith("never: reached only")
    assert when_user(data, "nobody", now) == {
        "user": "nobody",
        "found": False,
        "expected_by": None,
        "reason": "not found in assignments, group members, events or the wiki",
    }


def test_when_user_on_the_sample_tenant_and_through_the_report():
    now = ts("2026-11-20T03:00:00Z")
    provisioned = when_user(world(), "bo@contoso.example", now)
    assert provisioned["verdict"] == "provisioned"
    assert provisioned["expected_by"] is None  # not an estimate: it happened
    assert provisioned["provisioned_at"] == ts("2026-11-20T01:00:00Z")  # its first success
    failed = when_user(world(), "u9", now)
    # a missing mandatory value does not heal by retrying: no time, the fix and its owner
    assert failed["expected_by"] is None
    assert "TheOrgWikiMandatoryFieldsMissing" in failed["reason"]
    assert failed["fix"] == "Required values missing." and failed["fix_owner"] == "data_owner"
    default = run_report("estimate", world(), now=now, user="Eve").data["when_user"]
    assert default["scope_via"] == "default_access" and default["expected_by"] is None
