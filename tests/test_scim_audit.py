"""SCIM audit records (JSON Lines) -> scim_requests."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote, urlencode

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.errors import BadInput
from ingest.formats import Options, Source, detect
from ingest.scim import classify_path, filter_value, operation_of, request_row
from tests.support.scim_server import running_scim_server, seed_walkthrough

DATA = Path(__file__).parent / "data" / "scim"
WALK = json.loads((DATA / "entra_scim_walkthrough_exchanges.json").read_text())["exchanges"]
FLAGS = json.loads((DATA / "entra_scim_patch_flag_variants.json").read_text())["pairs"]
BASE = "/api/v2/scim/v2"
T0 = pd.Timestamp("2026-11-20T10:15:00Z")

COLS = [
    "operation",
    "resource_type",
    "resource_id",
    "user_name",
    "external_id",
    "active_set",
    "status_code",
    "scim_type",
    "detail",
]
TEST_USER = "Test_User_00aa00aa-bb11-cc22-dd33-44ee44ee44ee"
NOT_FOUND = "Resource 23B51B0E5D7AE9110A49411D@7cca31655d49f3640a494224 not found"
# One expected row per walkthrough exchange, in order (operation names from the article).
EXPECTED = [
    (
        "create",
        "User",
        "48af03ac28ad4fb88478",  # the created id, from the 201 response body (finding 6)
        TEST_USER,
        "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
        True,
        201,
        None,
        None,
    ),
    (
        "read",
        "User",
        "5d48a0a8e9f04aa38008",
        TEST_USER,
        "58342554-38d6-4ec8-948c-50044d0a33fd",
        None,
        200,
        None,
        None,
    ),
    ("read", "User", "5171a35d82074e068ce2", None, None, None, 404, None, NOT_FOUND),
    ("query", "User", None, TEST_USER, None, None, 200, None, None),
    ("query", "User", None, "non-existent user", None, None, 200, None, None),
    (
        "patch",
        "User",
        "6764549bef60420686bc",
        TEST_USER,
        "6c75de36-30fa-4d2d-a196-6bdcdb6b6539",
        None,
        200,
        None,
        None,
    ),
    (
        "patch",
        "User",
        "5171a35d82074e068ce2",
        "5b50642d-79fc-4410-9e90-4c077cdd1a59@testuser.com",
        "aa1eca08-7179-4eeb-a0be-a519f7e5cd1a",
        None,
        200,
        None,
        None,
    ),
    (
        "patch",
        "User",
        "5171a35d82074e068ce2",
        "deanruiz@testuser.com",
        None,
        False,
        None,
        None,
        None,
    ),
    ("delete", "User", "5171a35d82074e068ce2", None, None, None, 204, None, None),
    (
        "create",
        "Group",
        "927fa2c08dcb4a7fae9e",
        None,
        "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
        None,
        201,
        None,
        None,
    ),
    (
        "read",
        "Group",
        "40734ae655284ad3abcc",
        None,
        "60f1bb27-2e1e-402d-bcc4-ec999564a194",
        None,
        200,
        None,
        None,
    ),
    ("query", "Group", None, None, None, None, 200, None, None),
    ("patch", "Group", "fa2ce26709934589afc5", None, None, None, 204, None, None),
    ("patch", "Group", "a99962b9f99d4c4fac67", None, None, None, 204, None, None),
    ("patch", "Group", "a99962b9f99d4c4fac67", None, None, None, 204, None, None),
    ("delete", "Group", "cdb1ce18f65944079d37", None, None, None, 204, None, None),
    ("query", "Schemas", None, None, None, None, 200, None, None),
    ("query", "User", None, None, "jyoung", None, None, None, None),
    ("create", "User", None, "jyoung@testuser.com", "jyoung", True, None, None, None),
    ("read", "User", "a0a0a0a0-bbbb-cccc-dddd-e1e1e1e1e1e1", None, None, None, None, None, None),
    ("patch", "User", "a0a0a0a0-bbbb-cccc-dddd-e1e1e1e1e1e1", None, None, None, None, None, None),
    ("delete", "User", "a0a0a0a0-bbbb-cccc-dddd-e1e1e1e1e1e1", None, None, None, None, None, None),
]


def audit_record(i: int, exchange: dict, base: str = BASE) -> dict:
    """Write one walkthrough exchange as the wiki's audit record."""
    req, resp = exchange["request"], exchange.get("response") or {}
    path = req["path"].removeprefix("/scim")
    full = base + path + ("?" + urlencode(req["query"]) if req.get("query") else "")
    rec = {
        "time": (T0 + pd.Timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "request_id": f"r-{i:03d}",
        "method": req["method"],
        "path": full,
        "status": resp.get("status"),
        "latency_ms": 10 + i,
        "client": "203.0.113.7",
    }
    if req.get("body") is not None:
        rec["request"] = req["body"]
    if resp.get("body") is not None:
        rec["response"] = resp["body"]
    return rec


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def parse_file(path: Path, kind: str | None = None) -> dict[str, pd.DataFrame]:
    """Detect and parse a file the way `ingest file` does; return the concatenated frames."""
    src = Source(path)
    fmt = detect(src)
    if kind:
        assert fmt.kind == kind
    chunks = list(fmt.parse(src, Options()))
    tables = {name for c in chunks for name in c}
    return {t: pd.concat([c[t] for c in chunks if t in c], ignore_index=True) for t in tables}


def plain(frame: pd.DataFrame, cols: list[str] = COLS) -> list[tuple]:
    out = frame[cols].astype(object)
    return [tuple(None if pd.isna(v) else v for v in row) for row in out.itertuples(index=False)]


def test_every_walkthrough_exchange_parses_to_the_expected_row(tmp_path):
    assert len(EXPECTED) == len(WALK)
    path = write_jsonl(tmp_path / "audit.jsonl", [audit_record(i, e) for i, e in enumerate(WALK)])
    frame = parse_file(path, kind="scim_audit")["scim_requests"]
    assert len(frame) == len(WALK)
    for i, (got, want) in enumerate(zip(plain(frame), EXPECTED, strict=True)):
        assert got == want, f"exchange {i}: {WALK[i]['operation']}"
    # Columns copied from the record.
    assert frame["request_id"].tolist() == [f"r-{i:03d}" for i in range(len(WALK))]
    assert frame["received_at"].iloc[3] == T0 + pd.Timedelta(seconds=3)
    assert str(frame["received_at"].dtype) == "datetime64[us, UTC]"
    assert frame["latency_ms"].iloc[5] == 15.0
    assert frame["client"].unique().tolist() == ["203.0.113.7"]
    assert frame["path"].iloc[3] == (
        BASE + "/Users?filter=userName+eq+%22Test_User_00aa00aa-bb11-cc22-dd33-44ee44ee44ee%22"
    )
    assert frame["method"].iloc[0] == "POST"


def _pair_record(body: dict, scenario: str) -> dict:
    group = "member" in scenario
    rec = {
        "time": "2026-11-20T10:15:03.123Z",
        "request_id": "r-flag",
        "method": "PATCH",
        "path": f"{BASE}/{'Groups' if group else 'Users'}/2819c223",
        "status": 204 if group else 200,
        "request": body,
    }
    if not group:
        rec["response"] = {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "id": "2819c223",
            "externalId": "58342554-38d6-4ec8-948c-50044d0a33fd",
            "userName": "bjensen@contoso.example",
            "active": "disable" not in scenario,
        }
    return rec


@pytest.mark.parametrize("pair", FLAGS, ids=[p["scenario"] for p in FLAGS])
def test_both_flag_variants_of_each_patch_give_the_same_row(tmp_path, pair):
    rows = []
    for variant in ("without_flag", "with_flag_aadOptscim062020"):
        path = write_jsonl(
            tmp_path / f"{variant}.jsonl", [_pair_record(pair[variant], pair["scenario"])]
        )
        rows.append(parse_file(path, kind="scim_audit")["scim_requests"])
    pd.testing.assert_frame_equal(rows[0], rows[1])
    row = rows[0].iloc[0]
    assert row["operation"] == "patch"
    if pair["scenario"] == "disable user":
        assert row["active_set"] is False or bool(row["active_set"]) is False
        assert not pd.isna(row["active_set"])
    else:
        assert pd.isna(row["active_set"])
    if pair["scenario"] == "remove a group member":
        assert row["resource_type"] == "Group" and pd.isna(row["user_name"])


@pytest.mark.parametrize(
    ("operations", "expected"),
    [
        ([{"op": "Replace", "path": "active", "value": "False"}], False),
        ([{"op": "replace", "path": "active", "value": False}], False),
        ([{"op": "REPLACE", "path": "Active", "value": "true"}], True),
        ([{"op": "replace", "value": {"active": False}}], False),
        ([{"op": "replace", "value": {"active": "False", "name.givenName": "Kkom"}}], False),
        ([{"op": "Add", "value": {"displayName": "x", "active": True}}], True),
        ([{"op": "replace", "path": "name.givenName", "value": "Gtfd"}], None),
        ([{"op": "remove", "path": "active"}], None),
        ([{"op": "replace", "path": "active", "value": "maybe"}], None),
        (
            [
                {"op": "replace", "path": "active", "value": False},
                {"op": "replace", "path": "active", "value": True},
            ],
            True,
        ),
    ],
)
def test_patch_active_set(operations, expected):
    body = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": operations}
    row = request_row(method="PATCH", path="/scim/v2/Users/42", status=204, request=body)
    assert row["active_set"] is expected


def test_path_less_replace_with_dotted_keys_sets_user_name_and_external_id():
    body = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [
            {"op": "replace", "value": {"userName": "new@contoso.example", "name.givenName": "N"}},
            {"op": "Replace", "path": "externalId", "value": "e-9"},
        ],
    }
    row = request_row(method="PATCH", path="/Users/42", status=204, request=body)
    assert (row["user_name"], row["external_id"], row["active_set"]) == (
        "new@contoso.example",
        "e-9",
        None,
    )


def test_member_removal_by_filter_path_is_a_group_patch():
    body = json.loads(
        (DATA / "rfc" / "rfc7644-3.5.2.2-patch_op-remove_one_member.json").read_text()
    )
    row = request_row(method="PATCH", path="/scim/v2/Groups/acbf3ae7", status=204, request=body)
    assert (row["operation"], row["resource_type"], row["resource_id"]) == (
        "patch",
        "Group",
        "acbf3ae7",
    )
    assert row["user_name"] is None and row["active_set"] is None


def test_put_search_and_conflict_rows():
    put = json.loads((DATA / "rfc" / "rfc7644-3.5.1-user-put_request.json").read_text())
    put_resp = json.loads((DATA / "rfc" / "rfc7644-3.5.1-user-put_response.json").read_text())
    row = request_row(
        method="PUT",
        path="/v2/Users/2819c223-7f76-453a-919d-413861904646",
        status=200,
        request={**put, "active": "False"},
        response=put_resp,
    )
    assert (row["operation"], row["user_name"], row["external_id"], row["active_set"]) == (
        "replace",
        "bjensen",
        "bjensen",
        False,
    )
    search = json.loads((DATA / "rfc" / "rfc7644-3.4.3-search_request.json").read_text())
    search["filter"] = 'userName eq "jsmith" and active eq true'
    row = request_row(method="POST", path="/v2/Users/.search", status=200, request=search)
    assert (row["operation"], row["resource_type"], row["user_name"]) == ("query", "User", "jsmith")
    assert row["active_set"] is None
    err = json.loads((DATA / "rfc" / "rfc7644-3.12-error-bad_request.json").read_text())
    row = request_row(
        method="POST",
        path="/v2/Users",
        status=409,
        request={"userName": "dup@contoso.example", "externalId": "x-1", "active": True},
        response={**err, "status": "409", "scimType": "uniqueness", "detail": "userName taken"},
    )
    assert (row["operation"], row["status_code"], row["scim_type"], row["detail"]) == (
        "create",
        409,
        "uniqueness",
        "userName taken",
    )
    assert (row["user_name"], row["external_id"], row["active_set"]) == (
        "dup@contoso.example",
        "x-1",
        True,
    )


@pytest.mark.parametrize(
    ("method", "path", "rtype", "rid", "op"),
    [
        ("GET", "/ServiceProviderConfig", "ServiceProviderConfig", None, "read"),
        ("GET", "/scim/v2/ResourceTypes", "ResourceTypes", None, "query"),
        (
            "GET",
            "/Schemas/urn:ietf:params:scim:schemas:core:2.0:User",
            "Schemas",
            "urn:ietf:params:scim:schemas:core:2.0:User",
            "read",
        ),
        ("POST", "/v2/Bulk", "Bulk", None, "other"),
        ("GET", "/v2/Me", "other", None, "other"),
        ("GET", "/v2/Users/a%20b?attributes=userName", "User", "a b", "read"),
        ("HEAD", "/v2/Users", "User", None, "other"),
        ("GET", "/v2/Users/", "User", None, "query"),
    ],
)
def test_classify_path_and_operation(method, path, rtype, rid, op):
    info = classify_path(path)
    assert (info.resource_type, info.resource_id) == (rtype, rid)
    assert operation_of(method, info) == op


def test_missing_request_id_is_deterministic(tmp_path):
    recs = [audit_record(i, e) for i, e in enumerate(WALK[:3])]
    for r in recs:
        del r["request_id"]
    path = write_jsonl(tmp_path / "a.jsonl", recs)
    first = parse_file(path)["scim_requests"]["request_id"].tolist()
    again = parse_file(path)["scim_requests"]["request_id"].tolist()
    assert first == again and len(set(first)) == 3
    assert all(r.startswith("audit-") for r in first)


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('{"time": "2026-11-20T10:00:00Z", "method": "GET"', "not valid JSON"),
        ('["not", "an", "object"]', "must be a JSON object"),
        ('{"time": "2026-11-20T10:00:00Z", "method": "GET"}', "without path"),
        ('{"time": "yesterday", "method": "GET", "path": "/Users"}', "not an ISO 8601 time"),
        ('{"time": 1700000000, "method": "GET", "path": "/Users"}', "not an ISO 8601 string"),
        (
            '{"time": "2026-11-20T10:00:00Z", "method": "GET", "path": "/Users", "status": "OK"}',
            "not an HTTP status code",
        ),
    ],
)
def test_bad_line_names_file_and_line(tmp_path, line, problem):
    good = json.dumps(audit_record(0, WALK[0]))
    path = tmp_path / "audit.jsonl"
    path.write_text(f"{good}\n\n{line}\n{good}\n", encoding="utf-8")
    with pytest.raises(BadInput) as exc:
        parse_file(path)
    assert exc.value.where == f"{path}:3"
    assert problem in str(exc.value) and "nothing was stored" in str(exc.value)


def test_utf16_audit_file_is_read(tmp_path):
    path = tmp_path / "audit.jsonl"
    text = "".join(json.dumps(audit_record(i, e)) + "\n" for i, e in enumerate(WALK[:2]))
    path.write_bytes(text.encode("utf-16"))
    frame = parse_file(path, kind="scim_audit")["scim_requests"]
    assert frame["operation"].tolist() == ["create", "read"]


def test_audit_records_from_a_real_scim_server(tmp_path):
    """The server's own record of an Entra-like provisioning run parses to what was done."""
    with running_scim_server() as server:
        seeded = seed_walkthrough(server)
        with server.client() as c:  # a duplicate create: the server answers 409 uniqueness
            dup = seeded.users["alice@contoso.example"]
            c.post("/Users", json={"schemas": dup["schemas"], "userName": dup["userName"]})
        server.write_audit(str(tmp_path / "audit.jsonl"))
    frame = parse_file(tmp_path / "audit.jsonl", kind="scim_audit")["scim_requests"]
    ops = frame.groupby(["resource_type", "operation"]).size().to_dict()
    assert ops == {
        ("User", "query"): 3,
        ("User", "create"): 4,
        ("User", "patch"): 1,
        ("User", "read"): 1,
        ("Group", "create"): 1,
        ("Group", "patch"): 1,
        ("Group", "read"): 1,
    }
    bob = seeded.users["bob@contoso.example"]
    patch = frame[frame["operation"] == "patch"].iloc[0]
    assert (patch["resource_id"], bool(patch["active_set"])) == (bob["id"], False)
    creates = frame[(frame["operation"] == "create") & (frame["resource_type"] == "User")]
    assert creates["active_set"].tolist()[:3] == [True, True, True]
    assert creates["status_code"].tolist() == [201, 201, 201, 409]
    conflict = creates.iloc[3]
    assert (conflict["scim_type"], conflict["user_name"]) == ("uniqueness", "alice@contoso.example")
    queries = frame[frame["operation"] == "query"]["user_name"].tolist()
    assert queries == list(seeded.users)
    assert frame["latency_ms"].notna().all() and (frame["client"] == "127.0.0.1").all()


# ----------------------------------------------------------------------------- properties

OP_NAMES = st.sampled_from(["replace", "Replace", "REPLACE", "add", "Add"])
ACTIVE = st.sampled_from([True, False, "True", "False", "true", "false", "TRUE"])


@st.composite
def patch_bodies(draw):
    """PatchOps that set `active` in any of the shapes Entra and others send; the last wins."""
    ops, expected = [], None
    for _ in range(draw(st.integers(1, 4))):
        shape = draw(st.sampled_from(["path", "dict", "other", "remove"]))
        op = draw(OP_NAMES)
        if shape == "path":
            value = draw(ACTIVE)
            ops.append(
                {"op": op, "path": draw(st.sampled_from(["active", "Active"])), "value": value}
            )
            expected = str(value).lower() == "true"
        elif shape == "dict":
            value = draw(ACTIVE)
            extra = draw(
                st.dictionaries(
                    st.sampled_from(["name.givenName", "displayName"]),
                    st.text(max_size=5),
                    max_size=2,
                )
            )
            ops.append({"op": op, "value": {**extra, "active": value}})
            expected = str(value).lower() == "true"
        elif shape == "other":
            ops.append({"op": op, "path": "displayName", "value": draw(st.text(max_size=8))})
        else:
            ops.append({"op": "remove", "path": 'members[value eq "x"]'})
    return {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": ops,
    }, expected


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=patch_bodies(),
    rid=st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=1, max_size=12),
)
def test_property_active_set_through_a_file(tmp_path, body, rid):
    doc, expected = body
    rec = {
        "time": "2026-11-20T10:15:03Z",
        "method": "PATCH",
        "path": f"{BASE}/Users/{rid}",
        "status": 204,
        "request": doc,
    }
    path = write_jsonl(tmp_path / "p.jsonl", [rec])
    row = parse_file(path, kind="scim_audit")["scim_requests"].iloc[0]
    assert row["resource_id"] == rid and row["operation"] == "patch"
    if expected is None:
        assert pd.isna(row["active_set"])
    else:
        assert bool(row["active_set"]) is expected


@given(name=st.text(min_size=1, max_size=30).filter(lambda s: s.strip() == s and s))
def test_property_filter_user_name_round_trips(name):
    escaped = name.replace("\\", "\\\\").replace('"', '\\"')
    filt = f'userName eq "{escaped}"'
    assert filter_value(filt, "userName") == name
    row = request_row(method="GET", path="/Users?filter=" + quote(filt), status=200)
    assert row["user_name"] == name and row["operation"] == "query"


def test_the_documented_examples_parse_as_documented(tmp_path):
    """docs/scim-audit-format.md: every example record parses to the row the text promises."""
    import re

    doc = (Path(__file__).parents[1] / "docs" / "scim-audit-format.md").read_text()
    blocks = re.findall(r"```json\n(.*?)```", doc, re.DOTALL)
    records = [json.loads(b) for b in blocks]
    path = write_jsonl(tmp_path / "doc.jsonl", records)
    frame = parse_file(path, kind="scim_audit")["scim_requests"].set_index("request_id")
    cols = ["operation", "resource_type", "user_name", "active_set", "status_code", "scim_type"]
    got = {
        rid: tuple(None if pd.isna(v) else v for v in row)
        for rid, row in frame[cols].astype(object).iterrows()
    }
    alice = "alice@contoso.example"
    assert got == {
        "r-0001": ("create", "User", alice, True, 201, None),
        "r-0002": ("create", "User", alice, True, 409, "uniqueness"),
        "r-0003": ("read", "User", alice, None, 200, None),
        "r-0004": ("query", "User", alice, None, 200, None),
        "r-0005": ("query", "User", alice, None, 200, None),
        "r-0006": ("replace", "User", alice, False, 200, None),
        "r-0007": ("patch", "User", None, False, 204, None),
        "r-0008": ("patch", "Group", None, None, 204, None),
        "r-0009": ("delete", "User", None, None, 204, None),
        "r-0010": ("query", "Schemas", None, None, 200, None),
    }


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=80, deadline=None)
@given(
    method=st.one_of(
        st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "get"]), JSON_VALUES
    ),
    path=st.one_of(
        st.sampled_from(["/scim/v2/Users", "/Users/1", "/Groups/.search", "/Bulk", "", "/"]),
        st.text(max_size=30),
        JSON_VALUES,
    ),
    status=st.one_of(st.none(), st.integers(100, 599), st.text(max_size=4), JSON_VALUES),
    request=JSON_VALUES,
    response=JSON_VALUES,
    extra=st.dictionaries(st.sampled_from(["latency_ms", "client", "request_id"]), JSON_VALUES),
)
def test_property_any_record_gives_a_row_or_bad_input(
    method, path, status, request, response, extra
):
    """Whatever a wiki writes, a record parses to a valid row or is refused as BadInput."""
    import tempfile

    from ingest.schema import validate

    rec = {
        "time": "2026-11-20T10:15:03Z",
        "method": method,
        "path": path,
        "status": status,
        "request": request,
        "response": response,
        **extra,
    }
    with tempfile.TemporaryDirectory() as tmp:
        file = write_jsonl(Path(tmp) / "a.jsonl", [rec])
        try:
            frame = parse_file(file, kind="scim_audit")["scim_requests"]
        except BadInput as exc:
            assert exc.where == f"{file}:1"
            return
    validate("scim_requests", frame)
    assert frame["method"].iloc[0] == method.upper()
    assert frame["path"].iloc[0] == path


def test_unicode_line_separators_inside_strings_stay_in_their_record(tmp_path):
    rec = {
        "time": "2026-11-20T10:00:00Z",
        "method": "POST",
        "path": "/scim/v2/Users",
        "status": 201,
        "request": {"userName": "a\u2028b\u0085c@x.example", "active": "True"},
    }
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps(rec, ensure_ascii=False) + "\n", encoding="utf-8")
    frame = parse_file(path, kind="scim_audit")["scim_requests"]
    assert frame["user_name"].tolist() == ["a\u2028b\u0085c@x.example"]
    assert bool(frame["active_set"].iloc[0]) is True
