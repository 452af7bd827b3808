"""access-time: assignment to access, per user, with the join time's source and the SLO."""

from __future__ import annotations

import pandas as pd
import pytest

from reports import REPORTS, Filters, run_report
from tests.support.frames import DEFAULT_ROLE, ROLE, inputs, ts

SP = "sp1"
SP2 = "sp2"
G1 = "g1"  # assigned at 08:00; joins from the directory audit
G2 = "g2"  # assigned at 08:00; no audit: membership snapshots only
D = "contoso.example"


def tenant(**overrides):
    """A small tenant: a direct user, audited and snapshot group members, and edge cases.

    - ud: assigned directly 09:00; created by Entra 09:20; the wiki answers 201 at 09:21.
    - ua: joins g1 10:00 (audit); Entra creates 11:30; the wiki activates (PATCH) at 11:40 by id.
    - ub: in g1 before g1 was assigned (audit 07:00): timed from g1's assignment, 08:00.
    - uc: joined g1 06:00, removed, re-added 12:00 after access at 09:00: the 06:00 join counts.
    - us: in g2, first seen in a snapshot at 10:00; Entra creates 10:45; no wiki record.
    - ul: in g2, first seen at 15:00, but Entra created it at 14:00: the join is unknown.
    - uw: in g1 since 12:00, never provisioned (waiting).
    - un: nested member of g1 (not in scope); uz: Default Access (not in scope).
    - ux: direct (11:00) and in g1 (audit 09:30): measured from the earlier path, the group's.
    """
    t = {
        "assignments": [
            {
                "service_principal_id": SP,
                "principal_id": "ud",
                "principal_type": "user",
                "app_role_id": ROLE,
                "created_at": ts("2026-11-16T09:00:00Z"),
            },
            {
                "service_principal_id": SP,
                "principal_id": G1,
                "principal_type": "group",
                "app_role_id": ROLE,
                "created_at": ts("2026-11-16T08:00:00Z"),
            },
            {
                "service_principal_id": SP,
                "principal_id": G2,
                "principal_type": "group",
                "app_role_id": ROLE,
                "created_at": ts("2026-11-16T08:00:00Z"),
            },
            {
                "service_principal_id": SP,
                "principal_id": "uz",
                "principal_type": "user",
                "app_role_id": DEFAULT_ROLE,
                "created_at": ts("2026-11-16T08:00:00Z"),
            },
            {
                "service_principal_id": SP,
                "principal_id": "ux",
                "principal_type": "user",
                "app_role_id": ROLE,
                "created_at": ts("2026-11-16T11:00:00Z"),
            },
        ],
        "group_members": [
            {
                "group_id": G1,
                "member_id": m,
                "member_type": "user",
                "member_upn": f"{m}@{D}",
                "direct": m != "un",
                "first_seen_at": ts("2026-11-16T13:00:00Z"),
            }
            for m in ("ua", "ub", "uc", "uw", "un", "ux")
        ]
        + [
            {
                "group_id": G2,
                "member_id": "us",
                "member_type": "user",
                "member_upn": f"us@{D}",
                "direct": True,
                "first_seen_at": ts("2026-11-16T10:00:00Z"),
            },
            {
                "group_id": G2,
                "member_id": "ul",
                "member_type": "user",
                "member_upn": f"ul@{D}",
                "direct": True,
                "first_seen_at": ts("2026-11-16T15:00:00Z"),
            },
        ],
        "membership_changes": [
            {
                "audit_id": "a1",
                "changed_at": ts("2026-11-16T10:00:00Z"),
                "group_id": G1,
                "member_id": "ua",
                "change": "added",
                "result": "success",
            },
            {
                "audit_id": "a2",
                "changed_at": ts("2026-11-16T07:00:00Z"),
                "group_id": G1,
                "member_id": "ub",
                "change": "added",
                "result": "success",
            },
            {
                "audit_id": "a3",
                "changed_at": ts("2026-11-16T06:00:00Z"),
                "group_id": G1,
                "member_id": "uc",
                "change": "added",
                "result": "success",
            },
            {
                "audit_id": "a4",
                "changed_at": ts("2026-11-16T11:00:00Z"),
                "group_id": G1,
                "member_id": "uc",
                "change": "removed",
                "result": "success",
            },
            {
                "audit_id": "a5",
                "changed_at": ts("2026-11-16T12:00:00Z"),
                "group_id": G1,
                "member_id": "uc",
                "change": "added",
                "result": "success",
            },
            {
                "audit_id": "a6",
                "changed_at": ts("2026-11-16T12:00:00Z"),
                "group_id": G1,
                "member_id": "uw",
                "change": "added",
                "result": "success",
            },
            {
                "audit_id": "a7",
                "changed_at": ts("2026-11-16T09:30:00Z"),
                "group_id": G1,
                "member_id": "ux",
                "change": "added",
                "result": "success",
            },
            # A failed add is not a join.
            {
                "audit_id": "a8",
                "changed_at": ts("2026-11-16T09:50:00Z"),
                "group_id": G1,
                "member_id": "ua",
                "change": "added",
                "result": "failure",
            },
        ],
        "events": [
            {
                "source_id": "ud",
                "source_upn": f"ud@{D}",
                "service_principal_id": SP,
                "activity_at": ts("2026-11-16T09:20:00Z"),
                "target_id": "w-ud",
            },
            {
                "source_id": "ua",
                "source_upn": f"ua@{D}",
                "service_principal_id": SP,
                "activity_at": ts("2026-11-16T11:30:00Z"),
                "target_id": "w-ua",
            },
            {
                "source_id": "ub",
                "service_principal_id": SP,
                "activity_at": ts("2026-11-16T08:30:00Z"),
            },
            # A failed create does not count; the later success does.
            {
                "source_id": "uc",
                "service_principal_id": SP,
                "status": "failure",
                "activity_at": ts("2026-11-16T08:00:00Z"),
            },
            {
                "source_id": "uc",
                "service_principal_id": SP,
                "activity_at": ts("2026-11-16T09:00:00Z"),
            },
            {
                "source_id": "us",
                "service_principal_id": SP,
                "activity_at": ts("2026-11-16T10:45:00Z"),
            },
            {
                "source_id": "ul",
                "service_principal_id": SP,
                "activity_at": ts("2026-11-16T14:00:00Z"),
            },
            {
                "source_id": "ux",
                "service_principal_id": SP,
                "activity_at": ts("2026-11-16T10:10:00Z"),
            },
            # Another app creating ud does not count for sp1.
            {
                "source_id": "ud",
                "service_principal_id": SP2,
                "activity_at": ts("2026-11-16T08:00:00Z"),
            },
        ],
        "scim_requests": [
            {
                "request_id": "r1",
                "received_at": ts("2026-11-16T09:21:00Z"),
                "method": "POST",
                "resource_type": "User",
                "operation": "create",
                "status_code": 201,
                "external_id": "ud",
                "resource_id": "w-ud",
                "user_name": f"ud@{D}",
            },
            # ua created inactive at 11:31 (409 first, then a 201 without externalId by userName)
            {
                "request_id": "r2",
                "received_at": ts("2026-11-16T11:31:00Z"),
                "method": "POST",
                "resource_type": "User",
                "operation": "create",
                "status_code": 409,
                "user_name": f"UA@{D}",
            },
            {
                "request_id": "r3",
                "received_at": ts("2026-11-16T11:40:00Z"),
                "method": "PATCH",
                "resource_type": "User",
                "operation": "patch",
                "status_code": 200,
                "resource_id": "w-ua",
                "active_set": True,
            },
        ],
    }
    t.update(overrides)
    return inputs(**t)


def _rows(frame: pd.DataFrame) -> dict[str, tuple]:
    def v(x):
        return None if pd.isna(x) else x

    return {
        r.principal_id: (
            v(r.assigned_via),
            v(r.assigned_at_source),
            v(r.assigned_at),
            v(r.minutes_to_access),
            bool(r.breached),
        )
        for r in frame.itertuples()
    }


def test_access_time_rows_exact():
    table = run_report("access-time", tenant()).frame
    assert list(table.columns[:11]) == [
        "principal_id",
        "upn",
        "service_principal_id",
        "assigned_at",
        "assigned_via",
        "assigned_at_source",
        "first_provisioned_at",
        "wiki_active_at",
        "minutes_to_access",
        "slo_minutes",
        "breached",
    ]
    assert _rows(table) == {
        "ud": ("direct", "assignment", ts("2026-11-16T09:00:00Z"), 21.0, False),
        "ua": ("group", "directory_audit", ts("2026-11-16T10:00:00Z"), 100.0, True),
        "ub": ("group", "directory_audit", ts("2026-11-16T08:00:00Z"), 30.0, False),
        "uc": ("group", "directory_audit", ts("2026-11-16T08:00:00Z"), 60.0, False),
        "us": ("group", "membership_snapshot", ts("2026-11-16T10:00:00Z"), 45.0, False),
        "ul": ("group", None, None, None, False),
        "ux": ("group", "directory_audit", ts("2026-11-16T09:30:00Z"), 40.0, False),
    }
    ud = table.set_index("principal_id").loc["ud"]
    assert ud["upn"] == f"ud@{D}"
    assert ud["first_provisioned_at"] == ts("2026-11-16T09:20:00Z")
    assert ud["wiki_active_at"] == ts("2026-11-16T09:21:00Z")
    ua = table.set_index("principal_id").loc["ua"]
    assert ua["first_provisioned_at"] == ts("2026-11-16T11:30:00Z")
    assert ua["wiki_active_at"] == ts("2026-11-16T11:40:00Z")  # tied by the wiki id w-ua
    assert ua["group_id"] == G1
    assert table["slo_minutes"].tolist() == [60.0] * 7
    assert not table["waiting"].any()
    # Ordered by assigned_at, the unmeasurable last.
    assert table["principal_id"].tolist() == ["ub", "uc", "ud", "ux", "ua", "us", "ul"]


def test_slo_parameter_and_waiting_users():
    table = run_report("access-time", tenant(), slo_minutes=30).frame
    assert set(table.loc[table["breached"], "principal_id"]) == {"ua", "uc", "us", "ux"}
    assert table["slo_minutes"].unique().tolist() == [30.0]
    now = ts("2026-11-16T14:00:00Z")
    waiting = run_report("access-time", tenant(), now=now, include_waiting=True).frame
    uw = waiting.set_index("principal_id").loc["uw"]
    assert bool(uw["waiting"]) is True
    assert uw["assigned_at"] == ts("2026-11-16T12:00:00Z")
    assert uw["minutes_to_access"] == 120.0
    assert bool(uw["breached"]) is True
    assert "un" not in set(waiting["principal_id"]) and "uz" not in set(waiting["principal_id"])
    # Parameters given as text (`report --param KEY=VALUE`) read the same.
    as_text = run_report(
        "access-time", tenant(), now=now, include_waiting="false", slo_minutes="60"
    ).frame
    assert "uw" not in set(as_text["principal_id"]) and len(as_text) == 7
    with pytest.raises(ValueError, match="true or false"):
        run_report("access-time", tenant(), include_waiting="maybe")


def test_snapshot_used_only_without_audit_and_audit_wins():
    no_audit = run_report("access-time", tenant(membership_changes=[])).frame
    rows = _rows(no_audit)
    # g1's snapshot first listed them at 13:00, after they got access: unmeasurable.
    assert rows["ua"] == ("group", None, None, None, False)
    # ux falls back to the direct assignment (11:00), which came after access at 10:10 too.
    assert rows["ux"] == ("direct", None, None, None, False)
    assert rows["ub"] == ("group", None, None, None, False)
    assert rows["us"] == ("group", "membership_snapshot", ts("2026-11-16T10:00:00Z"), 45.0, False)


def test_filters_select_apps_and_assigned_time():
    sel = run_report("access-time", tenant(), Filters(since=ts("2026-11-16T09:15:00Z"))).frame
    assert set(sel["principal_id"]) == {"ua", "us", "ux"}
    other = run_report("access-time", tenant(), Filters(service_principal_ids=(SP2,))).frame
    assert other.empty
    assert list(other.columns) == list(sel.columns)


def test_summary_per_week_and_app():
    extra = tenant().assignments.copy()
    more = tenant()
    # A second week: ud2 assigned 2026-11-24 (a Tuesday), created 3 hours later.
    more.assignments = pd.concat(
        [
            extra,
            inputs(
                assignments=[
                    {
                        "service_principal_id": SP,
                        "principal_id": "ud2",
                        "principal_type": "user",
                        "app_role_id": ROLE,
                        "created_at": ts("2026-11-24T09:00:00Z"),
                    }
                ]
            ).assignments,
        ],
        ignore_index=True,
    )
    more.events = pd.concat(
        [
            more.events,
            inputs(
                events=[
                    {
                        "id": "x1",
                        "source_id": "ud2",
                        "service_principal_id": SP,
                        "service_principal_name": "TheOrgWiki",
                        "activity_at": ts("2026-11-24T12:00:00Z"),
                    }
                ]
            ).events,
        ],
        ignore_index=True,
    )
    weekly = run_report("access-time-summary", more)
    rows = weekly.frame.set_index("key")
    assert rows.index.tolist() == ["2026-11-16", "2026-11-23"]
    first = rows.loc["2026-11-16"]
    # minutes 21, 100, 30, 60, 45, 40 -> p50 42.5, p90 80 (linear interpolation)
    assert int(first["users"]) == 6
    assert first["p50_minutes"] == pytest.approx(42.5)
    assert first["p90_minutes"] == pytest.approx(80.0)
    assert first["max_minutes"] == 100.0
    assert int(first["breached"]) == 1
    second = rows.loc["2026-11-23"]
    assert (int(second["users"]), second["p50_minutes"], int(second["breached"])) == (1, 180.0, 1)
    assert weekly.data["users"] == 7
    assert weekly.data["p50_minutes"] == pytest.approx(45.0)
    assert weekly.data["p90_minutes"] == pytest.approx(132.0)
    assert weekly.data["breached"] == 2
    by_app = run_report("access-time-summary", more, by="app").frame
    assert by_app[["by", "key", "name", "users"]].values.tolist() == [["app", SP, "TheOrgWiki", 7]]
    with pytest.raises(ValueError, match="week or app"):
        run_report("access-time-summary", more, by="month")


def test_registered_with_the_tables_it_reads():
    spec = REPORTS["access-time"]
    assert "membership_changes" in spec.tables and "scim_requests" in spec.tables
    assert REPORTS["access-time-summary"].tables == spec.tables


def test_inputs_are_not_modified():
    t = tenant()
    before = {n: getattr(t, n).copy() for n in ("assignments", "group_members", "events")}
    run_report("access-time", t, include_waiting=True, now=ts("2026-11-17T00:00:00Z"))
    for n, frame in before.items():
        pd.testing.assert_frame_equal(getattr(t, n), frame)


def test_cli_json_keys_values_and_parameters(tmp_path, capsys):
    import json

    from ingest.store import Store
    from provlens.cli import main

    t = tenant()
    store = Store(tmp_path / "s")
    with store.batch(source="test") as b:
        b.add({n: getattr(t, n) for n in REPORTS["access-time"].tables})
    base = ["--store", str(store.path), "report"]
    assert main([*base, "access-time", "--format", "json", "--slo-minutes", "30"]) == 0
    rows = json.loads(capsys.readouterr().out)
    keys = {
        "principal_id", "upn", "service_principal_id", "assigned_at", "assigned_via",
        "assigned_at_source", "first_provisioned_at", "wiki_active_at", "minutes_to_access",
        "slo_minutes", "breached",
    }  # fmt: skip
    assert all(keys <= set(r) for r in rows)
    ua = next(r for r in rows if r["principal_id"] == "ua")
    assert ua["assigned_at"] == "2026-11-16T10:00:00.000Z"
    assert (ua["minutes_to_access"], ua["slo_minutes"], ua["breached"]) == (100.0, 30.0, True)
    assert ua["assigned_at_source"] == "directory_audit"
    assert main([*base, "access-time-summary", "--format", "json", "--by", "app"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert [(r["key"], r["users"], r["p50_minutes"]) for r in summary] == [(SP, 6, 42.5)]
    assert main([*base, "summary", "--slo-minutes", "30"]) == 2
    assert "apply to access-time" in capsys.readouterr().err


def test_an_update_enabling_the_account_is_a_provisioning_a_plain_update_is_not():
    from tests.support.frames import inputs as make

    t = make(
        assignments=[
            {"service_principal_id": SP, "principal_id": u, "principal_type": "user",
             "app_role_id": ROLE, "created_at": ts("2026-11-16T09:00:00Z")}
            for u in ("ue", "ut", "uk")
        ],
        events=[
            {"id": "x1", "source_id": "ue", "service_principal_id": SP, "action": "update",
             "activity_at": ts("2026-11-16T09:10:00Z")},
            {"id": "x2", "source_id": "ut", "service_principal_id": SP, "action": "update",
             "activity_at": ts("2026-11-16T09:20:00Z")},
            {"id": "x3", "source_id": "uk", "service_principal_id": SP, "action": "update",
             "activity_at": ts("2026-11-16T09:30:00Z")},
        ],
        modified_properties=[
            {"event_id": "x1", "name": "active", "old_value": None, "new_value": "True"},
            {"event_id": "x2", "name": "title", "old_value": "a", "new_value": "b"},
            {"event_id": "x3", "name": "accountDisabled", "old_value": "True",
             "new_value": "False"},
        ],
    )  # fmt: skip
    rows = run_report("access-time", t).frame.set_index("principal_id")
    assert rows["minutes_to_access"].to_dict() == {"ue": 10.0, "uk": 30.0}
