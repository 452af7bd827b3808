"""correlation: Entra events beside the wiki's SCIM requests, with a verdict per event."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ingest.schema import conform
from reports import Filters, ReportResult, run_report
from reports.correlation import COLUMNS, build, match_requests
from tests.support import frames as F
from tests.support.scim_server import USER_SCHEMAS, running_scim_server, seed_walkthrough
from tests.test_scim_audit import parse_file

T0 = pd.Timestamp("2026-11-20T10:00:00Z")
DESIGN_KEYS = [
    "event_id",
    "activity_at",
    "source_name",
    "target_id",
    "status",
    "error_code",
    "wiki_request_ids",
    "wiki_status_codes",
    "verdict",
]


def at(seconds: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(seconds=seconds)


def req(rid: str, seconds: float, status: int, **kw) -> dict:
    return {"request_id": rid, "received_at": at(seconds), "status_code": status, **kw}


def run(events, requests, **kw):
    inputs = F.inputs(events=events, scim_requests=requests, **kw.pop("tables", {}))
    return build(
        inputs, kw.pop("filters", Filters()), include_noise=kw.pop("noise", False), now=None, **kw
    )


def row_of(frame: pd.DataFrame, event_id: str) -> pd.Series:
    return frame.loc[frame["event_id"] == event_id].iloc[0]


def test_entry_conflict_beside_wiki_409_uniqueness_is_rejected_by_wiki():
    events = [
        {
            "id": "e1",
            "activity_at": at(0),
            "action": "create",
            "status": "failure",
            "error_code": "TheOrgWikiEntryConflict",
            "source_id": "obj-alice",
            "source_upn": "Alice@Contoso.example",
            "source_name": "Alice Liddell",
            "error_reason": "Failed to create User 'alice@contoso.example'; conflict",
        },
    ]
    requests = [
        req(
            "r1",
            -3,
            200,
            method="GET",
            operation="query",
            resource_type="User",
            user_name="alice@contoso.example",
            path='/Users?filter=userName eq "x"',
        ),
        req(
            "r2",
            -2,
            409,
            method="POST",
            operation="create",
            resource_type="User",
            user_name="alice@contoso.example",
            external_id="obj-alice",
            scim_type="uniqueness",
            detail="userName is already taken",
        ),
    ]
    result = run(events, requests)
    out = result.frame
    assert len(out) == 1
    r = out.iloc[0]
    assert r["verdict"] == "rejected_by_wiki"
    assert (r["error_code"], r["wiki_status"], r["wiki_scim_type"], r["wiki_detail"]) == (
        "TheOrgWikiEntryConflict",
        409,
        "uniqueness",
        "userName is already taken",
    )
    assert list(r["wiki_request_ids"]) == ["r1", "r2"]
    assert list(r["wiki_status_codes"]) == [200, 409]
    assert r["wiki_operation"] == "create" and r["wiki_requests"] == 2
    assert list(out.columns[: len(DESIGN_KEYS)]) == DESIGN_KEYS
    assert result.hidden_noise == 0


def test_entry_conflict_against_a_real_scim_server(tmp_path):
    """The wiki's 409 comes from scim2-server itself; Entra's side is a canonical events frame."""
    with running_scim_server() as server:
        seeded = seed_walkthrough(server)
        # The seeding happened in an earlier cycle, an hour before the conflict.
        for rec in server.audit:
            rec["time"] = (pd.Timestamp(rec["time"]) - pd.Timedelta(hours=1)).isoformat()
        seeding = len(server.audit)
        with server.client() as c:  # Entra creates a second object with the same userName
            r = c.get("/Users", params={"filter": 'userName eq "ALICE@contoso.example"'})
            assert r.json()["totalResults"] == 1
            r = c.post(
                "/Users",
                json={
                    "schemas": USER_SCHEMAS,
                    "userName": "alice@contoso.example",
                    "externalId": "obj-second-alice",
                    "active": True,
                },
            )
            assert r.status_code == 409
        server.write_audit(str(tmp_path / "audit.jsonl"))
    requests = parse_file(tmp_path / "audit.jsonl")["scim_requests"]
    conflict_at = requests["received_at"].iloc[-1]
    events = F.events(
        [
            {
                "id": "ev-conflict",
                "activity_at": conflict_at + pd.Timedelta(seconds=1),
                "status": "failure",
                "error_code": "TheOrgWikiEntryConflict",
                "source_id": "obj-second-alice",
                "source_upn": "alice@contoso.example",
            },
            {
                "id": "ev-bob-disable",
                "activity_at": conflict_at,
                "action": "disable",
                "status": "success",
                "target_id": seeded.users["bob@contoso.example"]["id"],
            },
            {
                "id": "ev-never-sent",
                "activity_at": conflict_at,
                "status": "failure",
                "error_code": "SystemForCrossDomainIdentityManagementBadRequest",
                "source_id": "obj-dave",
                "source_upn": "dave@contoso.example",
            },
        ]
    )
    out = build(
        F.inputs(events=events, scim_requests=requests), Filters(), include_noise=False, now=None
    ).frame
    conflict = row_of(out, "ev-conflict")
    assert conflict["verdict"] == "rejected_by_wiki"
    assert (conflict["wiki_status"], conflict["wiki_scim_type"]) == (409, "uniqueness")
    assert list(conflict["wiki_status_codes"]) == [200, 409]  # the filter query, then the POST
    assert conflict["error_code"] == "TheOrgWikiEntryConflict"
    assert list(conflict["wiki_request_ids"]) == requests["request_id"].tolist()[seeding:]
    bob = row_of(out, "ev-bob-disable")  # an hour after bob's PATCH: not explained by it
    assert bob["verdict"] == "unmatched" and list(bob["wiki_request_ids"]) == []
    assert row_of(out, "ev-never-sent")["verdict"] == "not_sent_to_wiki"
    # The earlier seeding requests: no event in the data explains them.
    wiki_only = out.loc[out["verdict"] == "wiki_only"]
    assert len(wiki_only) == seeding
    patch = wiki_only.loc[wiki_only["wiki_operation"] == "patch"]
    assert patch["target_id"].tolist()[0] == seeded.users["bob@contoso.example"]["id"]


def test_verdicts_for_each_definition():
    events = [
        # both_ok: query + create, matched by UPN case-insensitively and by externalId
        {
            "id": "ok",
            "activity_at": at(0),
            "status": "success",
            "source_id": "o1",
            "source_upn": "One@X.example",
            "target_id": "w1",
        },
        # not_sent_to_wiki: failure / skipped, nothing received
        {
            "id": "fail-none",
            "activity_at": at(0),
            "status": "failure",
            "source_id": "o2",
            "error_code": "AzureActiveDirectoryCannotUpdateObjectsOriginatedInExternalService",
        },
        {
            "id": "skip-none",
            "activity_at": at(0),
            "status": "skipped",
            "source_id": "o3",
            "skip_reason": "RedundantExport",
        },
        # unmatched: success with no request (the wiki never saw it)
        {"id": "ok-none", "activity_at": at(0), "status": "success", "source_id": "o4"},
        # unmatched: success although the wiki answered an error
        {"id": "ok-but-404", "activity_at": at(0), "status": "success", "target_id": "w5"},
        # unmatched: failure although the wiki answered 2xx
        {"id": "fail-but-ok", "activity_at": at(0), "status": "failure", "target_id": "w6"},
    ]
    requests = [
        req("q1", -1, 200, user_name="one@x.example", operation="query"),
        req("c1", 0.5, 201, user_name="One@x.Example", external_id="o1", operation="create"),
        req("p5a", 1, 404, resource_id="w5", operation="read"),
        req("p5b", 2, 200, resource_id="w5", operation="patch"),
        req("p6", 1, 200, resource_id="w6", operation="patch"),
        req("stray", 5, 201, user_name="nobody@x.example", operation="create"),
        req("late", 121, 200, resource_id="w1", operation="read"),  # outside ±120 s
    ]
    out = run(events, requests).frame
    verdicts = dict(zip(out["event_id"].fillna("-"), out["verdict"], strict=True))
    assert verdicts == {
        "ok": "both_ok",
        "fail-none": "not_sent_to_wiki",
        "skip-none": "not_sent_to_wiki",
        "ok-none": "unmatched",
        "ok-but-404": "unmatched",
        "fail-but-ok": "unmatched",
        "-": "wiki_only",
    }
    assert list(row_of(out, "ok")["wiki_request_ids"]) == ["q1", "c1"]
    assert list(row_of(out, "ok-none")["wiki_request_ids"]) == []
    assert "no request" in row_of(out, "ok-none")["verdict_note"]
    assert "answered an error" in row_of(out, "ok-but-404")["verdict_note"]
    assert pd.isna(row_of(out, "ok")["verdict_note"])
    wiki_only = out.loc[out["verdict"] == "wiki_only"]
    assert sorted(r for ids in wiki_only["wiki_request_ids"] for r in ids) == ["late", "stray"]
    # List cells are Arrow-backed: a cell read from the column is a list-like of its values.
    is_late = wiki_only["wiki_request_ids"].map(lambda ids: list(ids) == ["late"])
    late = wiki_only.loc[is_late].iloc[0]
    assert late["target_id"] == "w1" and pd.isna(late["event_id"]) and late["wiki_status"] == 200
    # rows come in time order: events at 0 s, then the stray (5 s) and late (121 s) requests
    assert out["verdict"].tolist()[-2:] == ["wiki_only", "wiki_only"]


def test_a_request_goes_to_the_nearest_event_of_its_object():
    events = [
        {"id": "first", "activity_at": at(0), "target_id": "w1", "action": "update"},
        {"id": "second", "activity_at": at(100), "target_id": "w1", "action": "disable"},
    ]
    requests = [
        req("a", 10, 200, resource_id="w1"),
        req("b", 60, 204, resource_id="w1"),
        req("c", 95, 204, resource_id="w1", active_set=False),
    ]
    pairs = match_requests(F.events(events), F.frame("scim_requests", requests))
    assert dict(zip(pairs["request_id"], pairs["event_id"], strict=True)) == {
        "a": "first",
        "b": "second",
        "c": "second",
    }
    out = run(events, requests).frame
    assert list(row_of(out, "second")["wiki_request_ids"]) == ["b", "c"]
    assert (out["verdict"] == "both_ok").all()


def test_noise_hidden_by_default_and_its_requests_not_wiki_only():
    events = [
        {
            "id": "noise",
            "activity_at": at(0),
            "status": "skipped",
            "skip_reason": "NotEffectivelyEntitled",
            "source_id": "o1",
        },
        {"id": "real", "activity_at": at(0), "status": "success", "target_id": "w2"},
    ]
    requests = [req("r-noise", 1, 200, external_id="o1"), req("r2", 1, 200, resource_id="w2")]
    hidden = run(events, requests)
    assert hidden.hidden_noise == 1
    assert hidden.frame["event_id"].tolist() == ["real"]
    shown = run(events, requests, noise=True)
    assert shown.hidden_noise == 0
    assert sorted(shown.frame["event_id"]) == ["noise", "real"]
    assert row_of(shown.frame, "noise")["verdict"] == "unmatched"  # skipped yet sent


def test_time_filter_keeps_requests_just_outside_for_events_inside():
    events = [{"id": "e", "activity_at": at(10), "status": "failure", "target_id": "w"}]
    requests = [
        req("before", -30, 409, resource_id="w", scim_type="uniqueness"),
        req("other", -30, 200, resource_id="zzz"),
    ]
    out = run(events, requests, filters=Filters(since=at(0), until=at(60))).frame
    assert out["event_id"].tolist() == ["e"]  # the unrelated request is before `since`
    assert out["verdict"].iloc[0] == "rejected_by_wiki"


def test_empty_inputs_and_no_mutation():
    empty = build(F.inputs(), Filters(), include_noise=False, now=None)
    assert empty.frame.empty and list(empty.frame.columns) == COLUMNS
    events = F.events([{"id": "e", "activity_at": at(0), "target_id": "w"}])
    requests = F.frame("scim_requests", [req("r", 1, 200, resource_id="w")])
    before = (events.copy(), requests.copy())
    out = run_report("correlation", F.inputs(events=events, scim_requests=requests)).frame
    assert out["verdict"].tolist() == ["both_ok"]
    pd.testing.assert_frame_equal(events, before[0])
    pd.testing.assert_frame_equal(requests, before[1])
    only = build(F.inputs(scim_requests=requests), Filters(), include_noise=False, now=None)
    assert only.frame["verdict"].tolist() == ["wiki_only"]


def _big(n: int, seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    users = max(n // 10, 1)
    obj = rng.integers(0, users, n)
    ev_at = T0 + pd.to_timedelta(np.sort(rng.integers(0, 86_400 * 30, n)), unit="s")
    status = rng.choice(np.array(["success", "failure", "skipped"]), n, p=[0.8, 0.15, 0.05])
    events = conform(
        "events",
        pd.DataFrame(
            {
                "id": [f"e{i}" for i in range(n)],
                "activity_at": ev_at,
                "action": "update",
                "status": status,
                "origin": "file",
                "target_id": [f"w{o}" for o in obj],
                "source_id": [f"o{o}" for o in obj],
                "source_upn": [f"u{o}@x.example" for o in obj],
            }
        ),
    )
    sent = status != "skipped"
    k = int(sent.sum())
    codes = np.where(status[sent] == "failure", 409, 200)
    requests = conform(
        "scim_requests",
        pd.DataFrame(
            {
                "request_id": [f"r{i}" for i in range(k)],
                "received_at": ev_at[sent] + pd.to_timedelta(rng.integers(-5, 5, k), unit="s"),
                "resource_id": [f"w{o}" for o in obj[sent]],
                "user_name": [f"U{o}@x.example" for o in obj[sent]],
                "status_code": codes,
                "operation": "patch",
            }
        ),
    )
    return events, requests


def test_vectorised_on_a_large_frame():
    events, requests = _big(100_000)
    out = build(
        F.inputs(events=events, scim_requests=requests), Filters(), include_noise=True, now=None
    ).frame
    assert len(out.loc[out["event_id"].notna()]) == len(events)
    counts = out["verdict"].value_counts().to_dict()
    # Every sent event's own request is within 5 s; a neighbour's may be nearer, so allow a
    # little slack, but the big picture must hold.
    assert counts["rejected_by_wiki"] > 0.12 * len(events)
    assert counts["both_ok"] > 0.7 * len(events)
    # Speed at 1M events is measured by benchmarks/run.py, not asserted here.


def test_status_filter_narrows_rows_but_requests_still_match_all_events():
    events = [
        {
            "id": "ok",
            "activity_at": at(0),
            "action": "create",
            "status": "success",
            "source_id": "obj-a",
            "target_id": "wiki-a",
        },
        {
            "id": "bad",
            "activity_at": at(60),
            "action": "create",
            "status": "failure",
            "source_id": "obj-b",
            "error_code": "TheOrgWikiEntryConflict",
        },
    ]
    requests = [
        req(
            "r-a",
            1,
            201,
            method="POST",
            operation="create",
            resource_type="User",
            external_id="obj-a",
            resource_id="wiki-a",
        ),
        req(
            "r-b",
            61,
            409,
            method="POST",
            operation="create",
            resource_type="User",
            external_id="obj-b",
            scim_type="uniqueness",
        ),
    ]
    out = run(events, requests, filters=Filters(statuses=("failure",))).frame
    # Only the failure row; r-a belongs to the filtered-out success, so it is not wiki_only.
    assert out["event_id"].tolist() == ["bad"]
    assert out["verdict"].tolist() == ["rejected_by_wiki"]
    # A status with no matching request at all used to raise IndexError.
    none = run(events, requests, filters=Filters(statuses=("skipped",))).frame
    assert none.empty


def rows(result: ReportResult) -> pd.DataFrame:
    assert result.frame is not None
    return result.frame


def _user_rows(full: pd.DataFrame, event_ids: set[str], requests: pd.DataFrame, keys: dict):
    """Return the full report's rows for ``event_ids`` and its wiki-only rows about ``keys``."""
    about = requests.loc[
        requests["external_id"].isin(keys["ids"])
        | requests["user_name"].str.lower().isin(keys["upns"])
        | requests["resource_id"].isin(keys["targets"]),
        "request_id",
    ]
    wanted = set(about)
    wiki_only = full["verdict"].eq("wiki_only") & full["wiki_request_ids"].map(
        lambda ids: bool(set(ids) & wanted)
    )
    return full.loc[full["event_id"].isin(event_ids) | wiki_only].reset_index(drop=True)


def test_user_parameter_gives_exactly_the_full_reports_rows_for_that_user():
    events, requests = _big(3_000, seed=11)
    # Hard cases: a request naming two objects (path id of o1, externalId of o2) that the
    # nearer o2 event wins in the full report; and requests no event explains, per key kind.
    t = events.loc[events["source_id"] == "o2", "activity_at"].iloc[0]
    t1 = events.loc[events["source_id"] == "o1", "activity_at"]
    extra = F.frame(
        "scim_requests",
        [
            {
                "request_id": "x-both",
                "received_at": t + pd.Timedelta(seconds=1),
                "resource_id": "w1",
                "external_id": "o2",
                "status_code": 200,
            },
            {
                "request_id": "x-orphan-upn",
                "received_at": t1.iloc[0] + pd.Timedelta(hours=2),
                "user_name": "U1@X.EXAMPLE",
                "status_code": 404,
            },
            {
                "request_id": "x-orphan-other",
                "received_at": t1.iloc[0] + pd.Timedelta(hours=2),
                "resource_id": "nobody",
                "status_code": 404,
            },
        ],
    )
    requests = pd.concat([requests, extra], ignore_index=True)
    inputs = F.inputs(events=events, scim_requests=requests)
    full = rows(build(inputs, Filters(), include_noise=False, now=None))
    for o in (1, 2, 3, 57, 120, 299):
        ids = set(events.loc[events["source_id"] == f"o{o}", "id"])
        keys = {"ids": [f"o{o}"], "upns": [f"u{o}@x.example"], "targets": [f"w{o}"]}
        expected = _user_rows(full, ids, requests, keys)
        # Resolved by object id, by UPN in another case, by wiki id: the same rows each time.
        for who in (f"o{o}", f"U{o}@X.example", f"w{o}"):
            got = rows(build(inputs, Filters(), include_noise=False, now=None, user=who))
            pd.testing.assert_frame_equal(got, expected, check_dtype=False)
        assert len(expected.loc[expected["event_id"].notna()]) == len(ids)
    one = rows(build(inputs, Filters(), include_noise=False, now=None, user="o1"))
    assert "x-orphan-upn" in {r for ids in one["wiki_request_ids"] for r in ids}
    assert "x-both" not in {r for ids in one["wiki_request_ids"] for r in ids}
    two = rows(build(inputs, Filters(), include_noise=False, now=None, user="o2"))
    assert "x-both" in {r for ids in two["wiki_request_ids"] for r in ids}
    nobody = rows(build(inputs, Filters(), include_noise=False, now=None, user="no-such-user"))
    assert nobody.empty and list(nobody.columns) == COLUMNS


def test_user_parameter_with_filters_and_noise_matches_the_full_report():
    events = F.events(
        [
            {
                "id": "a1",
                "activity_at": at(0),
                "source_id": "oa",
                "source_name": "Ada",
                "target_id": "wa",
            },
            {
                "id": "a2",
                "activity_at": at(600),
                "status": "failure",
                "source_id": "oa",
                "source_name": "Ada",
                "error_code": "TheOrgWikiEntryConflict",
            },
            {
                "id": "a3",
                "activity_at": at(900),
                "status": "skipped",
                "source_id": "oa",
                "source_name": "Ada",
                "skip_reason": "NotEffectivelyEntitled",
            },
            {"id": "b1", "activity_at": at(5), "source_id": "ob", "target_id": "wb"},
        ]
    )
    requests = F.frame(
        "scim_requests",
        [
            req("r1", 1, 201, resource_id="wa"),
            req("r2", 601, 409, external_id="oa"),
            req("r3", 6, 200, resource_id="wb"),
        ],
    )
    inputs = F.inputs(events=events, scim_requests=requests)
    for filters, noise in (
        (Filters(), False),
        (Filters(), True),
        (Filters(statuses=("failure",)), False),
        (Filters(since=at(300)), True),
    ):
        full = build(inputs, filters, include_noise=noise, now=None)
        mine = build(inputs, filters, include_noise=noise, now=None, user="ada")
        expected = rows(full).loc[rows(full)["source_id"] == "oa"].reset_index(drop=True)
        pd.testing.assert_frame_equal(rows(mine), expected, check_dtype=False)
    shown = build(inputs, Filters(), include_noise=False, now=None, user="ADA")
    assert rows(shown)["event_id"].tolist() == ["a1", "a2"]
    assert rows(shown)["verdict"].tolist() == ["both_ok", "rejected_by_wiki"]
    assert shown.hidden_noise == 1  # a3, out of scope; b's events are not counted


def test_repeated_ids_in_frames_last_request_copy_and_first_event_row():
    """Over in-memory frames ids may repeat: the last copy of a request counts, and an event
    id's requests go to its first row (the SQL's last-copy and first-row steps)."""
    events = [
        {"id": "e1", "activity_at": at(0), "status": "success", "target_id": "w1"},
        {"id": "e1", "activity_at": at(0), "status": "success", "target_id": "w1"},
        {"id": "e2", "activity_at": at(600), "status": "failure", "target_id": "w2"},
    ]
    requests = [
        req("r1", 1, 500, resource_id="w1"),
        req("r1", 2, 200, resource_id="w1"),
        req("r2", 3, 201, resource_id="w1"),
        req("r3", 601, 200, resource_id="w2"),
        req("r3", 602, 409, resource_id="w2", scim_type="uniqueness"),
    ]
    out = run(events, requests).frame
    assert out["event_id"].tolist() == ["e1", "e1", "e2"]
    assert [list(ids) for ids in out["wiki_request_ids"]] == [["r1", "r2"], [], ["r3"]]
    assert [list(c) for c in out["wiki_status_codes"]] == [[200, 201], [], [409]]
    assert out["verdict"].tolist() == ["both_ok", "unmatched", "rejected_by_wiki"]
    assert out["wiki_first_at"].iloc[0] == at(2) and out["wiki_requests"].tolist() == [2, 0, 1]
    assert out["wiki_scim_type"].iloc[2] == "uniqueness"
