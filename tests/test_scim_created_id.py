"""Finding 6: a successful SCIM create carries the created id in scim_requests.resource_id."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.files import ingest_files
from ingest.formats import Options
from ingest.scim import created_id, request_row
from ingest.store import Store
from tests.support.scim_server import running_scim_server

USER_BODY = {
    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
    "userName": "ada@contoso.example",
    "externalId": "ext-ada",
    "active": True,
    "name": {"givenName": "Ada", "familyName": "Lovelace"},
}


def rec(i: int, status: int | None, **extra: object) -> dict:
    out = {
        "time": f"2026-11-20T10:00:{i:02d}Z",
        "request_id": f"r-{i}",
        "method": "POST",
        "path": "/api/v2/scim/v2/Users",
        "request": USER_BODY,
    }
    if status is not None:
        out["status"] = status
    out.update(extra)
    return out


@pytest.mark.parametrize(
    ("status", "response", "headers", "want"),
    [
        (201, {"id": "2819c223", "userName": "ada@contoso.example"}, None, "2819c223"),
        # body id wins over the Location header
        (201, {"id": "body-id"}, {"Location": "https://w/scim/v2/Users/hdr-id"}, "body-id"),
        # no body: the Location header's last segment, URL-decoded, any header-name case
        (201, None, {"location": "https://w.example/api/v2/scim/v2/Users/a%20b%2Fc"}, "a b/c"),
        (201, None, {"Location": "/scim/v2/Users/rel-id/"}, "rel-id"),
        (201, None, {"Location": ["https://w/Users/list-id"]}, "list-id"),
        (200, {"id": "ok-200"}, None, "ok-200"),  # some servers answer 200
        # failures and unknown outcomes: no id
        (409, {"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"], "id": "x"}, None, None),
        (201, None, None, None),
        (None, {"id": "no-status"}, None, None),
        (201, None, {"Content-Type": "application/scim+json"}, None),
    ],
)
def test_request_row_created_id(status, response, headers, want) -> None:
    row = request_row(
        method="POST",
        path="/v2/Users",
        status=status,
        request=USER_BODY,
        response=response,
        response_headers=headers,
    )
    assert row["operation"] == "create"
    assert row["resource_id"] == want


def test_other_operations_keep_the_path_id() -> None:
    row = request_row(
        method="GET", path="/v2/Users/p-id", status=200, response={"id": "other", "userName": "u"}
    )
    assert row["resource_id"] == "p-id"
    row = request_row(method="GET", path="/v2/Users", status=200, response={"id": "x"})
    assert row["resource_id"] is None  # a list has no single id
    assert created_id(None, "not a mapping") is None


def test_audit_file_to_store(tmp_path: Path) -> None:
    path = tmp_path / "wiki-audit.jsonl"
    lines = [
        rec(1, 201, response={**USER_BODY, "id": "u-1"}),
        rec(2, 201, response_headers={"Location": "https://wiki/api/v2/scim/v2/Users/u-2"}),
        rec(3, 409, response={"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"]}),
    ]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    store = Store(tmp_path / "s")
    ingest_files(store, [path], options=Options(origin="file"))
    got = store.read("scim_requests").sort_values("request_id")
    assert got["resource_id"].astype(object).where(got["resource_id"].notna(), None).tolist() == [
        "u-1",
        "u-2",
        None,
    ]


def test_access_log_create_has_no_id(tmp_path: Path) -> None:
    """An access log has no body and no headers: a create's id stays null."""
    path = tmp_path / "access.log"
    path.write_text(
        '203.0.113.7 - - [20/Nov/2026:10:00:01 +0000] "POST /api/v2/scim/v2/Users HTTP/1.1" '
        "201 512\n",
        encoding="utf-8",
    )
    store = Store(tmp_path / "s")
    ingest_files(store, [path], options=Options(origin="file"))
    row = store.read("scim_requests").iloc[0]
    assert row["operation"] == "create" and int(row["status_code"]) == 201
    assert pd.isna(row["resource_id"])


def test_real_scim_server_create_ties_to_the_created_id(tmp_path: Path) -> None:
    """POST to a real scim2-server; its audit record gives the id the server assigned."""
    with running_scim_server() as wiki, wiki.client() as http:
        resp = http.post("/Users", json=USER_BODY)
        assert resp.status_code == 201
        created = resp.json()["id"]
        assert resp.headers["Location"].rstrip("/").endswith(created)
        audit = tmp_path / "audit.jsonl"
        wiki.write_audit(str(audit))
    # once with the body, once as a wiki that logs only the Location header
    bodyless = tmp_path / "bodyless.jsonl"
    recs = [json.loads(x) for x in audit.read_text().splitlines()]
    for r in recs:
        r.pop("response", None)
        r["request_id"] += "-h"
    bodyless.write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    store = Store(tmp_path / "s")
    ingest_files(store, [audit, bodyless], options=Options(origin="file"))
    creates = store.read("scim_requests")
    creates = creates[creates["operation"] == "create"]
    assert creates["resource_id"].tolist() == [created, created]


@settings(max_examples=200, deadline=None)
@given(
    rid=st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
        min_size=1,
        max_size=40,
    ).filter(lambda s: s.strip() == s and s not in (".", "..")),
    base=st.sampled_from(["https://wiki.example/api/v2/scim/v2/Users/", "/scim/v2/Groups/", ""]),
    name=st.sampled_from(["Location", "location", "LOCATION"]),
)
def test_location_header_round_trips_any_id(rid: str, base: str, name: str) -> None:
    """Whatever the id, a Location URL built from it (percent-encoded) gives it back."""
    header = {name: base + quote(rid, safe="")}
    row = request_row(
        method="POST", path="/Users", status=201, request=USER_BODY, response_headers=header
    )
    assert row["resource_id"] == rid
