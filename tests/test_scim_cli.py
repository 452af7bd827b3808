"""End to end through the CLI: a real SCIM server's audit -> `ingest file` -> `report ...`."""

from __future__ import annotations

import json

import pandas as pd

from ingest.store import Store
from provlens.cli import main
from tests.support import frames as F
from tests.support.scim_server import USER_SCHEMAS, running_scim_server, seed_walkthrough


def test_audit_ingest_and_correlation_json(tmp_path, capsys):
    with running_scim_server() as server:
        seed_walkthrough(server)
        with server.client() as c:
            r = c.post(
                "/Users",
                json={
                    "schemas": USER_SCHEMAS,
                    "userName": "alice@contoso.example",
                    "externalId": "obj-dup",
                    "active": True,
                },
            )
            assert r.status_code == 409
        audit = tmp_path / "audit.jsonl"
        server.write_audit(str(audit))
        conflict_at = pd.Timestamp(server.audit[-1]["time"])
    store = tmp_path / "store"
    assert main(["--store", str(store), "ingest", "file", str(audit)]) == 0
    capsys.readouterr()
    # Re-ingesting the same audit file adds nothing.
    assert main(["--store", str(store), "ingest", "file", str(audit)]) == 0
    capsys.readouterr()
    stored = Store(store).read("scim_requests")
    assert len(stored) == len(server.audit) and stored["request_id"].is_unique

    events = F.events(
        [
            {
                "id": "ev-1",
                "activity_at": conflict_at + pd.Timedelta(seconds=2),
                "status": "failure",
                "error_code": "TheOrgWikiEntryConflict",
                "source_id": "obj-dup",
                "source_upn": "ALICE@contoso.example",
                "source_name": "Alice (dup)",
            },
        ]
    )
    with Store(store).batch(source="test", detail="events") as b:
        b.add({"events": events})

    assert main(["--store", str(store), "report", "correlation", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    event_rows = [r for r in rows if r["event_id"] == "ev-1"]
    assert len(event_rows) == 1
    row = event_rows[0]
    assert row["verdict"] == "rejected_by_wiki"
    assert row["error_code"] == "TheOrgWikiEntryConflict"
    assert (row["wiki_status"], row["wiki_scim_type"]) == (409, "uniqueness")
    assert row["wiki_status_codes"][-1] == 409
    assert row["activity_at"].endswith("Z")
    assert {
        "event_id",
        "activity_at",
        "source_name",
        "target_id",
        "status",
        "error_code",
        "wiki_request_ids",
        "wiki_status_codes",
        "verdict",
    } <= set(row)
    assert all(r["verdict"] in ("rejected_by_wiki", "wiki_only") for r in rows)

    assert main(["--store", str(store), "report", "scim-traffic", "--format", "json"]) == 0
    traffic = json.loads(capsys.readouterr().out)
    minutes = [t for t in traffic if t["granularity"] == "minute"]
    assert sum(t["requests"] for t in minutes) == len(server.audit)
    assert sum(t["conflict_409"] for t in minutes) == 1
