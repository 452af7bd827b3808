"""coverage: scope (direct, group, nested group, default access), wiki state and verdicts."""

from __future__ import annotations

import pandas as pd

from reports import Filters, run_report
from tests.support.frames import DOMAIN, ROLE, SP, inputs, world


def test_coverage_rows_and_verdicts():
    result = run_report("coverage", world())
    table = result.frame
    rows = {
        (r.principal_id if isinstance(r.principal_id, str) else None): (
            r.scope_via,
            r.in_scope,
            r.wiki_state,
            r.last_status if isinstance(r.last_status, str) else None,
            r.verdict,
        )
        for r in table.itertuples()
    }
    assert rows == {
        "u2": ("group", True, "active", "success", "provisioned"),  # matched by UPN, any case
        "u9": ("direct", True, "absent", "failure", "failed"),
        "u10": ("group", True, "absent", "skipped", "skipped"),
        "u8": ("group", True, "absent", None, "pending"),  # only an older snapshot had it
        "u1": ("direct", True, "inactive", "success", "missing_in_wiki"),
        "u7": ("none", False, "active", "success", "should_be_disabled"),
        None: ("none", False, "active", None, "orphaned"),  # ghost@: in the wiki only
        "u3": ("nested_group", False, "absent", "skipped", "excluded"),
        "u6": ("default_access", False, "absent", None, "excluded"),  # via a default group
        "u4": ("none", False, "inactive", "warning", "excluded"),
        "u5": ("default_access", False, "absent", None, "excluded"),  # assigned directly
    }
    assert table["verdict"].tolist() == [
        "provisioned",
        "failed",
        "skipped",
        "pending",
        "missing_in_wiki",
        "should_be_disabled",
        "orphaned",
        "excluded",
        "excluded",
        "excluded",
        "excluded",
    ]
    orphan = table.loc[table["verdict"] == "orphaned"].iloc[0]
    assert (orphan["upn"], orphan["name"], orphan["wiki_id"]) == (f"ghost@{DOMAIN}", "Ghost", "w9")
    assert table.set_index("principal_id").loc["u1", "upn"] == f"ada@{DOMAIN}"
    assert table.set_index("principal_id").loc["u5", "name"] == "Eve"
    assert "g3" not in set(table["principal_id"].dropna())  # groups are not rows
    assert result.data == {
        "verdict_counts": {
            "provisioned": 1,
            "failed": 1,
            "skipped": 1,
            "pending": 1,
            "missing_in_wiki": 1,
            "should_be_disabled": 1,
            "orphaned": 1,
            "excluded": 4,
        }
    }


def test_nested_only_member_is_out_of_scope_even_when_events_succeed():
    data = inputs(
        assignments=[
            {
                "service_principal_id": SP,
                "principal_id": "g1",
                "principal_type": "group",
                "app_role_id": ROLE,
                "default_access": False,
            }
        ],
        group_members=[
            {
                "group_id": "g1",
                "member_id": "n1",
                "member_type": "user",
                "member_upn": "n1@x.example",
                "direct": False,
            }
        ],
        events=[{"activity_at": "2026-11-20T00:00:00Z", "source_id": "n1", "source_type": "user"}],
        scim_resources=[
            {
                "captured_at": "2026-11-20T01:00:00Z",
                "resource_type": "User",
                "id": "w",
                "external_id": "n1",
                "active": True,
            }
        ],
    )
    row = run_report("coverage", data).frame.iloc[0]
    assert (row["scope_via"], bool(row["in_scope"]), row["verdict"]) == (
        "nested_group",
        False,
        "should_be_disabled",
    )


def test_direct_membership_beats_nested_and_real_role_beats_default():
    zero = "00000000-0000-0000-0000-000000000000"
    data = inputs(
        assignments=[
            {
                "service_principal_id": SP,
                "principal_id": "g1",
                "principal_type": "group",
                "app_role_id": ROLE,
            },
            {
                "service_principal_id": SP,
                "principal_id": "g2",
                "principal_type": "group",
                "app_role_id": ROLE,
            },
            {
                "service_principal_id": SP,
                "principal_id": "u3",
                "principal_type": "user",
                "app_role_id": zero,
            },  # default_access null: the all-zero role id decides
            {
                "service_principal_id": SP,
                "principal_id": "u3",
                "principal_type": "user",
                "app_role_id": ROLE,
            },
        ],
        group_members=[
            {"group_id": "g1", "member_id": "u1", "member_type": "user", "direct": False},
            {"group_id": "g2", "member_id": "u1", "member_type": "user", "direct": True},
            {"group_id": "g9", "member_id": "u2", "member_type": "user", "direct": True},
        ],
    )
    table = run_report("coverage", data).frame.set_index("principal_id")
    assert table["scope_via"].to_dict() == {"u1": "group", "u3": "direct", "u2": "none"}
    assert table["verdict"].to_dict() == {"u1": "pending", "u3": "pending", "u2": "excluded"}


def test_service_principal_filter_limits_scope():
    table = run_report("coverage", world(), Filters(service_principal_ids=("other",))).frame
    # no scope and no events left: wiki users are all orphans
    assert table["verdict"].tolist() == ["orphaned"] * 5
    assert pd.isna(table["principal_id"]).sum() == 2  # w2 and w9 carry no externalId


def test_nested_membership_is_derived_when_ingest_marked_every_member_direct():
    # Two members files ingested one at a time: every row says direct, but g1 contains g2,
    # whose own members are known, so n1 is reachable only through the nested group.
    data = inputs(
        assignments=[
            {"service_principal_id": SP, "principal_id": "g1", "principal_type": "group",
             "app_role_id": ROLE, "default_access": False},
        ],
        group_members=[
            {"group_id": "g1", "member_id": "d1", "member_type": "user", "direct": True},
            {"group_id": "g1", "member_id": "g2", "member_type": "group", "direct": True},
            {"group_id": "g1", "member_id": "n1", "member_type": "user", "direct": True},
            {"group_id": "g2", "member_id": "n1", "member_type": "user", "direct": True},
        ],
    )  # fmt: skip
    table = run_report("coverage", data).frame.set_index("principal_id")
    assert table["scope_via"].to_dict() == {"d1": "group", "n1": "nested_group"}
    # when ingest did derive the flags (some row is not direct), they are trusted as they are
    data.group_members = data.group_members.assign(direct=[True, True, True, True])
    data.group_members.loc[0, "direct"] = False
    table = run_report("coverage", data).frame.set_index("principal_id")
    assert table["scope_via"].to_dict() == {"d1": "nested_group", "n1": "group"}
