"""One truth: the same question gets the same answer wherever it is asked (issue "one truth").

Each test is one inconsistency that was measured, asserting the values every face must agree on:
the request-event rule coded once, success rate without hidden noise, filters that select but
never redefine cycles, a scoping-filter exclusion that stays findable, estimates never in the
past, and the CLI, the service and an export giving the same number.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from ingest.schema import TABLES
from ingest.store import Store
from provlens.cli import main
from reports import REPORTS, Filters, run_report, service
from reports.estimate import when_user
from reports.export import support_pack
from tests.support.frames import ROLE, SP, inputs, ts, world

T0 = "2026-11-20T10:00:00Z"


def _at(seconds: float) -> str:
    return (ts(T0) + pd.Timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _two_failures_one_409():
    """Two failed creates of u1, 100 s apart, and one 409 from the wiki at +90 s."""
    common = {
        "service_principal_id": SP,
        "job_id": "j1",
        "cycle_id": "c1",
        "source_id": "u1",
        "source_upn": "ada@contoso.example",
        "source_name": "Ada",
        "source_type": "user",
        "action": "create",
        "status": "failure",
        "error_code": "TheOrgWikiEntryConflict",
        "error_category": "non_service_failure",
    }
    return inputs(
        events=[
            {**common, "id": "e1", "activity_at": _at(0)},
            {**common, "id": "e2", "activity_at": _at(100)},
        ],
        scim_requests=[
            {
                "request_id": "r1",
                "received_at": _at(90),
                "method": "POST",
                "path": "/scim/v2/Users",
                "resource_type": "User",
                "operation": "create",
                "user_name": "ADA@contoso.example",
                "external_id": "u1",
                "status_code": 409,
                "scim_type": "uniqueness",
                "detail": "userName is already taken",
            }
        ],
    )


def test_one_request_goes_to_its_nearest_event_in_correlation_failures_and_support_pack():
    data = _two_failures_one_409()
    rows = run_report("correlation", data).frame.set_index("event_id")
    # +90 s is 90 s from e1 and 10 s from e2: the request answers e2 only
    assert rows.loc["e1", "verdict"] == "not_sent_to_wiki"
    assert rows.loc["e2", "verdict"] == "rejected_by_wiki"
    assert rows.loc["e2", "wiki_request_ids"] == ["r1"]
    assert rows.loc["e2", "wiki_scim_type"] == "uniqueness"

    timeline = run_report("timeline", data, user="u1").frame.set_index("id")
    assert pd.isna(timeline.loc["e1", "scim_type"])  # the wiki never answered e1
    assert timeline.loc["e2", "scim_type"] == "uniqueness"
    assert timeline.loc["e2", "scim_status"] == 409

    failures = run_report("failures", data).frame
    row = failures.iloc[0]
    assert (row["events"], row["scim_type"], row["owner"]) == (2, "uniqueness", "data_owner")

    pack = support_pack(data, "u1", now=ts(T0))
    wiki = pack["wiki_requests"]
    assert wiki[["request_id", "event_id"]].to_dict("records") == [
        {"request_id": "r1", "event_id": "e2"}
    ]
    user = dict(zip(pack["user"]["key"], pack["user"]["value"], strict=True))
    assert user["wiki_scim_type"] == "uniqueness" and user["fix_owner"] == "data_owner"


def test_a_scim_error_quoted_in_entras_reason_sets_the_owner_and_is_shown():
    reason = (
        "Message: TheOrgWiki returned an error response with the HTTP status code 409. "
        'Web Response: {"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],'
        '"status":"409","scimType":"uniqueness","detail":"userName ada@x is taken"}'
    )
    data = inputs(
        events=[
            {
                "id": "e1",
                "activity_at": T0,
                "source_id": "u1",
                "status": "failure",
                # a generic code: by itself the app admin's
                "error_code": "TheOrgWikiUnprocessableEntity",
                "error_category": "non_service_failure",
                "error_reason": reason,
            },
            {
                "id": "e2",
                "activity_at": _at(60),
                "source_id": "u2",
                "status": "failure",
                "error_code": "TheOrgWikiNotImplemented",
                # escaped quotes, as a JSON string inside JSON text
                "error_additional_details": 'Web Response: {\\"status\\":\\"400\\",'
                '\\"scimType\\":\\"invalidSyntax\\",\\"detail\\":\\"bad filter\\"}',
            },
        ]
    )
    rows = run_report("failures", data).frame.set_index("error_code")
    first = rows.loc["TheOrgWikiUnprocessableEntity"]
    assert (first["scim_status"], first["scim_type"], first["scim_detail"]) == (
        409,
        "uniqueness",
        "userName ada@x is taken",
    )
    assert first["owner"] == "data_owner"
    second = rows.loc["TheOrgWikiNotImplemented"]
    assert (second["scim_status"], second["scim_type"], second["owner"]) == (
        400,
        "invalidSyntax",
        "app_admin",
    )
    timeline = run_report("timeline", data, user="u1").frame
    assert timeline[["scim_status", "scim_type"]].iloc[0].tolist() == [409, "uniqueness"]


def _cycles_world():
    """j1: c1 00:00-00:30 (success, failure, success), c2 01:00-01:20 (success, failure)."""
    rows = [
        ("e1", "2026-11-20T00:00:00Z", "c1", "u1", "success"),
        ("e2", "2026-11-20T00:10:00Z", "c1", "u2", "failure"),
        ("e3", "2026-11-20T00:30:00Z", "c1", "u3", "success"),
        ("e4", "2026-11-20T01:00:00Z", "c2", "u1", "success"),
        ("e5", "2026-11-20T01:20:00Z", "c2", "u2", "failure"),
        ("e6", "2026-11-20T01:00:00Z", "c2", "u9", "success"),
    ]
    events = [
        {
            "id": i,
            "activity_at": at,
            "job_id": "j1",
            "cycle_id": c,
            "source_id": u,
            "status": s,
            "service_principal_id": SP,
        }
        for i, at, c, u, s in rows
    ]
    # the same cycle id in another job is another cycle
    events.append(
        {
            "id": "e7",
            "activity_at": "2026-11-20T02:00:00Z",
            "job_id": "j2",
            "cycle_id": "c1",
            "source_id": "u4",
            "status": "success",
            "service_principal_id": SP,
        }
    )
    return inputs(events=events)


def test_a_status_filter_lists_cycles_but_never_changes_them():
    data = _cycles_world()
    full = run_report("cycles", data).frame.set_index(["job_id", "cycle_id"])
    failed = run_report("cycles", data, Filters(statuses=("failure",))).frame
    failed = failed.set_index(["job_id", "cycle_id"])
    assert list(failed.index) == [("j1", "c1"), ("j1", "c2")]
    cols = ["started_at", "ended_at", "duration_s", "kind", "events", "gap_before_s"]
    pd.testing.assert_frame_equal(failed[cols], full.loc[failed.index, cols])
    assert failed.loc[("j1", "c1"), "duration_s"] == 1800
    assert failed.loc[("j1", "c2"), "gap_before_s"] == 1800  # 00:30 -> 01:00, from all events
    assert failed.loc[("j1", "c2"), "events"] == 3
    # the overview's last cycle is the selection's latest, whatever the status filter
    last = run_report("overview", data, Filters(statuses=("failure",))).data
    assert last["last_cycle_started_at"] == ts("2026-11-20T02:00:00Z")
    # summary and cycles count (job, cycle) pairs: c1 of j1 and c1 of j2 are two cycles
    assert run_report("summary", data).data["cycles"] == len(full) == 3


def test_success_rate_leaves_hidden_noise_out_and_summary_counts_everything():
    rows = (
        [("success", None)] * 3 + [("failure", None)] + [("skipped", "NotEffectivelyEntitled")] * 4
    )
    data = inputs(
        events=[
            {"activity_at": _at(i), "source_id": f"u{i}", "status": s, "skip_reason": r}
            for i, (s, r) in enumerate(rows)
        ]
    )
    assert run_report("summary", data).data["success_rate"] == pytest.approx(3 / 8)
    shown = run_report("overview", data).data
    assert shown["success_rate"] == pytest.approx(3 / 4)  # the 4 out-of-scope skips hidden
    assert shown["success_rate_all"] == pytest.approx(3 / 8)
    assert shown["noise_hidden"] == 4
    assert run_report("overview", data, include_noise=True).data["success_rate"] == 3 / 8


def _scoping_world():
    """u1 is assigned but left out by the scoping filter; u2 is not assigned at all."""
    scoping_details = (
        '{"Assigned to the application":"True","Scoping filter evaluation passed":"False",'
        '"ScopeEvaluationResult":"{\\"Exclude contractors.department NOT EQUALS\\":false}"}'
    )
    skip_text = (
        "The User 'ada' will be skipped due to the following reasons: 1) This object is not in "
        "scope of the scoping filter 'Exclude contractors' configured for this application."
    )
    return inputs(
        events=[
            {
                "id": "e1",
                "activity_at": T0,
                "job_id": "j1",
                "cycle_id": "c1",
                "source_id": "u1",
                "source_upn": "ada@contoso.example",
                "source_type": "user",
                "status": "skipped",
                "skip_reason": "NotEffectivelyEntitled",
            },
            {
                "id": "e2",
                "activity_at": _at(30),
                "job_id": "j1",
                "cycle_id": "c1",
                "source_id": "u2",
                "source_upn": "bo@contoso.example",
                "source_type": "user",
                "status": "skipped",
                "skip_reason": "NotEffectivelyEntitled",
            },
        ],
        steps=[
            {
                "event_id": "e1",
                "position": 1,
                "step_type": "scoping",
                "status": "skipped",
                "details": scoping_details,
            },
            {"event_id": "e1", "position": 2, "step_type": "processing", "description": skip_text},
            {
                "event_id": "e2",
                "position": 1,
                "step_type": "scoping",
                "status": "skipped",
                "details": '{"Assigned to the application":"False"}',
            },
        ],
        assignments=[
            {
                "service_principal_id": SP,
                "principal_id": "u1",
                "principal_type": "user",
                "app_role_id": ROLE,
                "default_access": False,
            }
        ],
    )


def test_a_scoping_filter_exclusion_is_an_answer_not_noise():
    data = _scoping_world()
    users = run_report("users", data)  # noise hidden by default
    assert users.hidden_noise == 1  # only u2's out-of-scope skip
    # both stay findable; only u2's row is noise
    marks = users.frame.set_index("source_id")["noise_events"].to_dict()
    assert marks == {"u1": 0, "u2": 1}
    # one user is always found, noise or not, and its noise marked
    bo = run_report("users", data, user="bo@contoso.example").frame
    assert bo["source_id"].tolist() == ["u2"] and bo["noise_events"].tolist() == [1]
    timeline = run_report("timeline", data, user="u1").frame
    assert timeline[["noise", "excluded_by"]].iloc[0].tolist() == [False, "Exclude contractors"]
    skips = run_report("skips", data, include_noise=True).frame
    assert skips[["noise", "events"]].to_dict("list") == {"noise": [False, True], "events": [1, 1]}
    assert skips["excluded_by"].iloc[0] == "Exclude contractors"
    assert pd.isna(skips["excluded_by"].iloc[1])
    answer = when_user(data, "ada@contoso.example", ts(T0))
    assert answer["expected_by"] is None
    assert answer["reason"] == "not until fixed: excluded by scoping filter Exclude contractors"
    assert "Exclude contractors" in answer["fix"] and answer["fix_owner"] == "identity_admin"
    objects = run_report("coverage", data).frame.set_index("principal_id")
    assert objects.loc["u1", "verdict"] == "skipped"


def test_an_estimate_is_never_in_the_past():
    data = world()
    late = ts("2026-11-21T09:00:00Z")  # a day after the last event
    est = run_report("estimate", data, now=late).data
    assert est["next_incremental_at"] >= late
    pending = when_user(data, "u8", late)  # in scope, never processed
    assert pending["verdict"] == "pending"
    assert pending["expected_by"] >= late
    assert pending["expected_by"] < late + pd.Timedelta(hours=2)


# --- through the store: the service, the CLI and exports ------------------------------------


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    w = world()
    store = Store(tmp_path / "store")
    with store.batch(source="file", detail="test") as batch:
        batch.add({name: w.table(name) for name in TABLES})
    return store.path


def test_cli_service_and_export_give_the_same_numbers(store_path: Path, capsys, tmp_path):
    assert main(["--store", str(store_path), "report", "summary", "--format", "json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    answer = service.ask(store_path, "summary")
    assert answer.version == Store(store_path).version
    out = tmp_path / "events.json"
    assert (
        main(
            ["--store", str(store_path), "export", "events", "--format", "json", "--out", str(out)]
        )
        == 0
    )
    exported = json.loads(out.read_text())
    assert cli["events"] == answer.result.data["events"] == len(exported) == 10
    assert cli["cycles"] == answer.result.data["cycles"] == 3
    # failures: CLI rows, service rows and exported failed events agree
    assert main(["--store", str(store_path), "report", "failures", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    service_rows = service.run(store_path, "failures").frame
    failed = [e for e in exported if e["status"] == "failure"]
    assert sum(r["events"] for r in rows) == int(service_rows["events"].sum()) == len(failed) == 2
    # in memory, on the same frames: the same answer
    assert run_report("summary", world()).data["events"] == cli["events"]


def test_every_report_reads_only_what_it_declares(store_path: Path):
    one_user = ("timeline", "diagnosis", "user-steps", "user-changes", "user-wiki-requests")
    params = {name: {"user": "u2"} for name in one_user}
    for name in REPORTS:
        result = service.run(
            store_path, name, now=ts("2026-11-20T03:00:00Z"), **params.get(name, {})
        )
        assert result.frame is not None or result.data is not None, name


def test_a_report_reading_an_undeclared_table_fails(store_path: Path, monkeypatch):
    from reports import ReportSpec, UndeclaredRead

    spec = ReportSpec("greedy", "reports.summary:build", "reads steps", "object", ("steps",))
    monkeypatch.setitem(REPORTS, "greedy", spec)
    with pytest.raises(UndeclaredRead, match="'events'"):
        service.run(store_path, "greedy")
