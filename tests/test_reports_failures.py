"""failures (owner, recommended action, the wiki's scimType) and skips."""

from __future__ import annotations

import pandas as pd

from reports import run_report
from reports.owners import code_suffix, documented_action, owners
from tests.support.frames import inputs, ts, world


def test_failures_by_code_with_owner_and_documented_action():
    table = run_report("failures", world()).frame
    assert table["error_code"].tolist() == [
        "TheOrgWikiEntryConflict",
        "TheOrgWikiMandatoryFieldsMissing",
    ]
    assert table["error_category"].tolist() == ["non_service_failure"] * 2
    assert table["events"].tolist() == [1, 1] and table["objects"].tolist() == [1, 1]
    assert table["first_seen"].tolist() == [ts("2026-11-20T00:00:00Z"), ts("2026-11-20T01:08:00Z")]
    assert table.loc[0, "sample_reason"] == "userName already exists"
    assert pd.isna(table.loc[1, "sample_reason"])
    assert table.loc[1, "recommended_action"] == "Required values missing."
    assert table["owner"].tolist() == ["data_owner", "data_owner"]
    # the wiki's 409 for bo@ one second later is matched to e2
    assert table["scim_type"].tolist()[0] == "uniqueness"
    assert pd.isna(table["scim_type"].tolist()[1])


def _failure(i, code, category="failure", upn=None, at="2026-11-20T10:00:00Z", **extra):
    return {
        "id": f"f{i}",
        "activity_at": at,
        "status": "failure",
        "error_code": code,
        "error_category": category,
        "source_id": f"u{i}",
        "source_upn": upn,
        **extra,
    }


def test_owner_from_code_then_wiki_scim_type_then_category():
    data = inputs(
        events=[
            _failure(1, "TheOrgWikiUnprocessableEntity", upn="a@x.example"),
            _failure(
                2, "TheOrgWikiUnprocessableEntity", upn="b@x.example", at="2026-11-20T11:00:00Z"
            ),
            _failure(3, "TheOrgWikiSchemaAttributeNotFound"),
            _failure(4, "SomethingNew", "non_service_failure"),
            _failure(5, "SomethingElse"),
            _failure(6, "TheOrgWikiUnauthorized", recommended_action="Renew the wiki token."),
        ],
        scim_requests=[
            # 90 s after f1: matched; 10 minutes after f2: too late to explain it.
            {
                "request_id": "r1",
                "received_at": "2026-11-20T10:01:30Z",
                "user_name": "A@X.example",
                "status_code": 400,
                "scim_type": "mutability",
            },
            {
                "request_id": "r2",
                "received_at": "2026-11-20T11:10:00Z",
                "user_name": "b@x.example",
                "status_code": 400,
                "scim_type": "uniqueness",
            },
        ],
    )
    table = run_report("failures", data).frame.set_index("error_code")
    # f1 and f2 share a code: the matched request's scimType (mutability) decides.
    assert table.loc["TheOrgWikiUnprocessableEntity", "events"] == 2
    assert table.loc["TheOrgWikiUnprocessableEntity", "owner"] == "identity_admin"
    assert table.loc["TheOrgWikiSchemaAttributeNotFound", "owner"] == "identity_admin"
    assert table.loc["SomethingNew", "owner"] == "app_admin"  # nonServiceFailure
    assert table.loc["SomethingElse", "owner"] == "unknown"
    assert pd.isna(table.loc["SomethingElse", "recommended_action"])
    # Entra's own recommendation wins over the documented text
    assert table.loc["TheOrgWikiUnauthorized", "recommended_action"] == "Renew the wiki token."
    assert table.loc["TheOrgWikiUnauthorized", "owner"] == "app_admin"


def test_code_suffix_prefers_the_longest_documented_suffix():
    codes = pd.Series(
        ["ContosoEntryConflict", "xInvitationCreationFailureAmbiguousUser", "ok", None], dtype="str"
    )
    assert code_suffix(codes).tolist()[0] == "EntryConflict"
    assert code_suffix(codes).tolist()[1] == "InvitationCreationFailureAmbiguousUser"
    assert code_suffix(codes).isna().tolist()[2:] == [True, True]
    assert owners(codes, pd.Series([None] * 4, dtype="str")).tolist() == [
        "data_owner",
        "data_owner",
        "unknown",
        "unknown",
    ]
    assert documented_action(pd.Series(["XTimeout"], dtype="str")).tolist() == [
        "Target application took too long; retried in 40 minutes."
    ]


def test_skips_hide_out_of_scope_reasons_by_default():
    result = run_report("skips", world())
    assert result.hidden_noise == 1
    assert result.frame["excluded_by"].isna().all()  # no scoping filter named in the steps
    assert result.frame.drop(columns="excluded_by").to_dict("list") == {
        "skip_reason": ["ExportSkipped"],
        "events": [1],
        "objects": [1],
        "first_seen": [ts("2026-11-20T01:09:00Z")],
        "last_seen": [ts("2026-11-20T01:09:00Z")],
        "noise": [False],
    }
    full = run_report("skips", world(), include_noise=True).frame
    assert full["skip_reason"].tolist() == ["ExportSkipped", "NotEffectivelyEntitled"]
    assert full["noise"].tolist() == [False, True]


def test_failures_never_contain_skips_and_skips_count_distinct_objects():
    data = inputs(
        events=[
            {
                "activity_at": "2026-11-20T10:00:00Z",
                "status": "skipped",
                "skip_reason": "R",
                "source_id": "u1",
            },
            {
                "activity_at": "2026-11-20T11:00:00Z",
                "status": "skipped",
                "skip_reason": "R",
                "source_id": "u1",
            },
            {"activity_at": "2026-11-20T12:00:00Z", "status": "skipped", "source_id": "u2"},
        ]
    )
    assert run_report("failures", data).frame.empty
    skips = run_report("skips", data).frame
    assert skips["skip_reason"].isna().tolist() == [False, True]
    assert skips["events"].tolist() == [2, 1] and skips["objects"].tolist() == [1, 1]
    assert skips["last_seen"].tolist()[0] == ts("2026-11-20T11:00:00Z")
