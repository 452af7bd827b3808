"""Access logs of the SCIM path -> scim_requests; SCIM ListResponse files -> scim_resources."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.errors import BadInput
from ingest.formats import Options, Source, detect
from ingest.formats.access_log import line_row
from ingest.formats.scim_list import parse as parse_list
from tests.support.scim_server import running_scim_server, seed_walkthrough
from tests.test_scim_audit import parse_file

DATA = Path(__file__).parent / "data" / "scim"

ACCESS_LOG = (DATA / "access.log").read_text(encoding="utf-8")


def test_access_log_keeps_only_scim_requests(tmp_path):
    path = tmp_path / "access.log"
    path.write_text(ACCESS_LOG, encoding="utf-8")
    frame = parse_file(path, kind="access_log")["scim_requests"]
    assert frame["method"].tolist() == ["GET", "POST", "PATCH", "DELETE"]
    assert frame["operation"].tolist() == ["query", "create", "patch", "delete"]
    assert frame["resource_type"].tolist() == ["User", "User", "User", "Group"]
    assert frame["resource_id"].tolist()[2:] == ["2819c223", "cdb1ce18"]
    assert frame["user_name"].iloc[0] == "alice@contoso.example"
    assert frame["status_code"].tolist() == [200, 409, 204, 204]
    # nginx seconds (0.041 s), Apache %D microseconds (35000 us), absent.
    assert frame["latency_ms"].iloc[0] == pytest.approx(41.0)
    assert frame["latency_ms"].iloc[2] == pytest.approx(35.0)
    assert pd.isna(frame["latency_ms"].iloc[3])
    assert frame["received_at"].iloc[0] == pd.Timestamp("2026-11-20T10:15:03Z")
    assert frame["client"].iloc[0] == "203.0.113.7"
    assert frame["path"].iloc[0].endswith("?filter=userName+eq+%22alice%40contoso.example%22")
    assert frame["active_set"].isna().all()


def test_access_log_ids_are_deterministic_and_distinct(tmp_path):
    path = tmp_path / "access.log"
    path.write_text(ACCESS_LOG + ACCESS_LOG.splitlines(keepends=True)[1], encoding="utf-8")
    first = parse_file(path)["scim_requests"]["request_id"]
    second = parse_file(path)["scim_requests"]["request_id"]
    assert first.tolist() == second.tolist()
    assert first.is_unique  # the repeated line has another line number
    assert all(r.startswith("log-") for r in first)


def test_access_log_times_with_offsets_become_utc(tmp_path):
    line = '10.0.0.1 - - [20/Nov/2026:11:15:05 +0100] "GET /scim/v2/Users/7 HTTP/1.1" 200 10\n'
    path = tmp_path / "a.log"
    path.write_text(line, encoding="utf-8")
    frame = parse_file(path, kind="access_log")["scim_requests"]
    assert frame["received_at"].iloc[0] == pd.Timestamp("2026-11-20T10:15:05Z")


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ("this is not a log line", "not a Common/Combined Log Format line"),
        ('1.2.3.4 - - [32/Nov/2026:10:15:03 +0000] "GET /scim/Users HTTP/1.1" 200 1', "bad time"),
    ],
)
def test_access_log_bad_line_is_bad_input(tmp_path, bad, problem):
    path = tmp_path / "access.log"
    lines = ACCESS_LOG.splitlines()
    path.write_text("\n".join([*lines[:2], bad, *lines[2:]]) + "\n", encoding="utf-8")
    with pytest.raises(BadInput) as exc:
        parse_file(path)
    assert exc.value.where == f"{path}:3"
    assert problem in str(exc.value)


@settings(max_examples=80, deadline=None)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE"]),
    rid=st.one_of(st.none(), st.text("abcdef0123456789-", min_size=1, max_size=20)),
    endpoint=st.sampled_from(["Users", "Groups"]),
    status=st.integers(100, 599),
    size=st.one_of(st.just("-"), st.integers(0, 10**6).map(str)),
    rt=st.one_of(
        st.none(),
        st.integers(0, 10**7).map(str),
        st.floats(0, 100, allow_nan=False).map(lambda f: f"{f:.3f}"),
    ),
    combined=st.booleans(),
)
def test_property_access_log_line(method, rid, endpoint, status, size, rt, combined):
    path = f"/api/v2/scim/v2/{endpoint}" + (f"/{rid}" if rid else "")
    line = f'192.0.2.1 - - [20/Nov/2026:10:15:03 +0000] "{method} {path} HTTP/1.1" {status} {size}'
    if combined:
        line += ' "-" "Microsoft.AAD.Provisioning"'
    if rt is not None:
        line += f" {rt}"
    row = line_row(line + "\n", "x:1", 1)
    assert row is not None
    assert (row["method"], row["status_code"], row["resource_id"]) == (method, status, rid)
    assert row["resource_type"] == endpoint[:-1]
    if rt is None:
        assert row["latency_ms"] is None
    elif "." in rt:
        assert row["latency_ms"] == pytest.approx(float(rt) * 1000)
    else:
        assert row["latency_ms"] == pytest.approx(int(rt) / 1000)
    assert row["request_id"] == line_row(line + "\n", "y:1", 1)["request_id"]


# ----------------------------------------------------------------------------- ListResponse


def test_rfc_list_responses_become_resources(tmp_path):
    at = pd.Timestamp("2026-11-20T09:00:00Z")
    src = Source(DATA / "rfc" / "rfc7644-3.4.3-list_response-post_query.json")
    assert detect(src).kind == "scim_list"
    frame = next(iter(parse_list(src, Options(captured_at=at))))["scim_resources"]
    assert frame[["resource_type", "id", "user_name", "display_name"]].astype(object).where(
        frame[["resource_type", "id", "user_name", "display_name"]].notna(), None
    ).values.tolist() == [
        ["User", "2819c223-7f76-413861904646", "jsmith", "Smith, James"],
        ["Group", "c8596b90-7539-4f20968d1908", None, "Smith Family"],
    ]
    assert (frame["captured_at"] == at).all()
    groups = parse_file(DATA / "rfc" / "rfc7644-3.7.1-list_response-circular_reference.json")
    groups = groups["scim_resources"]
    assert (groups["resource_type"] == "Group").all() and len(groups) == 2
    assert groups["created_at"].iloc[0] == pd.Timestamp("2011-08-01T18:29:49.793Z")


def test_list_file_from_a_real_server_uses_mtime(tmp_path):
    with running_scim_server() as server:
        seeded = seed_walkthrough(server)
        with server.client() as c:
            pages = [c.get("/Users").json(), c.get("/Groups").json()]
    path = tmp_path / "state.json"
    path.write_text(json.dumps(pages, indent=2), encoding="utf-8")
    os.utime(path, (1_763_633_700, 1_763_633_700))
    frame = parse_file(path, kind="scim_list")["scim_resources"]
    assert sorted(frame["id"]) == sorted(
        [u["id"] for u in seeded.users.values()] + [g["id"] for g in seeded.groups.values()]
    )
    assert (frame["captured_at"] == pd.Timestamp(1_763_633_700, unit="s", tz="UTC")).all()
    active = dict(zip(frame["user_name"].dropna(), frame["active"].dropna(), strict=True))
    assert active == {
        "alice@contoso.example": True,
        "bob@contoso.example": False,
        "carol@contoso.example": True,
    }


def test_audit_jsonl_with_list_responses_is_not_a_list_file(tmp_path):
    rec = {
        "time": "2026-11-20T10:15:03Z",
        "method": "GET",
        "path": "/Users",
        "status": 200,
        "response": {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
            "totalResults": 0,
            "Resources": [],
        },
    }
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps(rec) + "\n", encoding="utf-8")
    assert detect(Source(path)).kind == "scim_audit"


@pytest.mark.parametrize(
    ("doc", "where"),
    [
        (
            '[{"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"], "Resources": []},'
            ' {"nope": 1}]',
            "record 2",
        ),
        (
            '{"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"], "Resources": 5}',
            "record 1",
        ),
        (
            '{"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],'
            '\n "Resources": [1,',
            ":2",
        ),
    ],
)
def test_bad_list_file_is_bad_input(tmp_path, doc, where):
    path = tmp_path / "l.json"
    path.write_text(doc, encoding="utf-8")
    src = Source(path)
    assert detect(src).kind == "scim_list"
    with pytest.raises(BadInput) as exc:
        list(parse_list(src, Options()))
    assert where in exc.value.where and "nothing was stored" in str(exc.value)


@st.composite
def scim_resource(draw, i: int = 0):
    """A SCIM User or Group the way servers write them (meta and schemas optional)."""
    is_user = draw(st.booleans())
    res: dict = {"id": f"id-{draw(st.integers(0, 10**9))}"}
    if draw(st.booleans()):
        res["schemas"] = [
            "urn:ietf:params:scim:schemas:core:2.0:" + ("User" if is_user else "Group")
        ]
        meta_type = None
    else:
        meta_type = draw(
            st.sampled_from(["User", "Users", "user"] if is_user else ["Group", "Groups"])
        )
    meta = {"created": "2026-11-01T00:00:00Z"} if draw(st.booleans()) else {}
    if meta_type:
        meta["resourceType"] = meta_type
    if meta:
        res["meta"] = meta
    if is_user:
        res["userName"] = draw(st.text(min_size=1, max_size=20))
        res["active"] = draw(st.sampled_from([True, False, "True", "False"]))
    res["displayName"] = draw(st.text(min_size=1, max_size=20))
    if draw(st.booleans()):
        res["externalId"] = draw(st.text(min_size=1, max_size=20))
    return is_user, res


@settings(max_examples=60, deadline=None)
@given(items=st.lists(scim_resource(), max_size=8, unique_by=lambda t: t[1]["id"]))
def test_property_list_response_round_trip(items):
    from ingest.scim import resources_frame

    at = pd.Timestamp("2026-11-20T00:00:00Z")
    frame = resources_frame([r for _, r in items], at)
    assert len(frame) == len(items)
    for (is_user, res), (_, row) in zip(items, frame.iterrows(), strict=True):
        assert row["id"] == res["id"]
        assert row["resource_type"] == ("User" if is_user else "Group")
        assert row["display_name"] == res["displayName"]
        if is_user:
            assert row["user_name"] == res["userName"]
            assert bool(row["active"]) is (str(res["active"]).lower() == "true")
        else:
            assert pd.isna(row["user_name"]) and pd.isna(row["active"])
        assert (row["external_id"] if pd.notna(row["external_id"]) else None) == res.get(
            "externalId"
        )


@pytest.mark.parametrize(
    ("tail", "latency"),
    [
        (' "-" "Microsoft.AAD.Provisioning" "10.0.0.1, 10.0.0.2" rt=0.041', 41.0),
        (' "-" "Mozilla/5.0 Firefox/132.0"', None),  # a version in the user agent is not a time
        (" 0.250", 250.0),  # Common Log Format + request time
        (' "-" "-" 1200', 1.2),  # Apache %D microseconds
    ],
)
def test_access_log_extra_fields_and_request_time(tail, latency):
    line = '192.0.2.1 - - [20/Nov/2026:10:15:03 +0000] "GET /scim/v2/Users/7 HTTP/1.1" 200 10'
    row = line_row(line + tail + "\n", "x:1", 1)
    assert row["resource_id"] == "7"
    assert row["latency_ms"] == (pytest.approx(latency) if latency is not None else None)
