"""The KQL field map (reports.kql.events_kql) reads every row as the one parser does.

Rows in the shapes the table carries, with the variations seen on the wire (enum casing, integer
enums, legacy values, missing status info, ``None`` error codes, empty ids, skip reasons under
either spelling), go both ways: through ``ingest log-analytics`` and the parser into the store,
and through ``events_kql`` in the loopback workspace. Per event, the canonical fields must agree.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest

from ingest import log_analytics as la
from ingest.store import Store
from reports import Filters
from reports.inputs import object_key
from reports.kql import Schema, events_kql
from tests.support.la_server import LaFixture, make_rows

ACTIONS = [
    "Create",
    "create",
    "UPDATE",
    "Staged_Delete",
    "stagedDelete",
    "Disable",
    "2",
    "Other",
    "Frobnicate",
    "",
]
RESULTS = ["Success", "Failure", "Skipped", "Warning", "failure", ""]


def _vary(rows: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for row in rows:
        r = dict(row)
        r["ProvisioningAction"] = rng.choice(ACTIONS)
        psi = orjson.loads(r["ProvisioningStatusInfo"])
        choice = rng.random()
        if choice < 0.3:
            r["ProvisioningStatusInfo"] = None  # status from ResultType
            r["ResultType"] = rng.choice(RESULTS)
        elif choice < 0.4:
            psi["status"] = rng.choice(["SUCCESS", "skipped", "4", "Warning"])
            r["ProvisioningStatusInfo"] = orjson.dumps(psi).decode()
        if rng.random() < 0.2:
            r["ResultSignature"] = rng.choice(["None", "0", "", "SomeCode"])
        if rng.random() < 0.3:
            src = orjson.loads(r["SourceIdentity"])
            src["Id"] = ""
            if rng.random() < 0.5:
                src["details"] = {}
            if rng.random() < 0.5:
                src["Name"] = ""
            r["SourceIdentity"] = orjson.dumps(src).decode()
        if rng.random() < 0.2:
            steps = orjson.loads(r["ProvisioningSteps"])
            steps[0]["details"] = {"Skip reason": rng.choice(["NotEffectivelyEntitled", "Other"])}
            r["ProvisioningSteps"] = orjson.dumps(steps).decode()
        if rng.random() < 0.1:
            r["CycleId"] = ""
        out.append(r)
    return out


@pytest.mark.parametrize("seed", [1, 2])
def test_kql_fields_match_the_parser(
    seed: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROVLENS_LA_TOKEN", "la-test-token")
    rows = _vary(
        make_rows(300, datetime(2026, 11, 20, tzinfo=UTC), timedelta(days=1), seed=seed), seed
    )
    with LaFixture() as ws:
        ws.add_rows(rows)
        session = la.open_session(ws.workspace_id, ws.url)
        store = Store(tmp_path / "s")
        la.pull(
            session,
            store,
            since=pd.Timestamp("2026-11-19T00:00Z"),
            now=pd.Timestamp("2026-11-22T00:00Z"),
        )
        answer = session.query(events_kql(Schema(frozenset(ws.columns)), Filters()))
    kql = pd.DataFrame(answer.rows, columns=answer.columns).set_index("id")
    ev = store.read("events")
    ev = ev.assign(object_key=object_key(ev)).set_index("id")
    assert len(kql) == len(ev) == 300
    kql = kql.loc[ev.index]
    for column in (
        "action",
        "status",
        "error_code",
        "error_category",
        "skip_reason",
        "object_key",
        "service_principal_id",
        "cycle_id",
        "job_id",
        "change_id",
        "error_reason",
        "recommended_action",
    ):
        local = ev[column].astype("object").where(ev[column].notna(), "").astype(str)
        pushed = kql[column].fillna("").astype(str)
        diff = local != pushed
        assert not diff.any(), (
            column,
            pd.DataFrame({"local": local[diff], "kql": pushed[diff]}).head(),
        )
    # The variations were really there.
    assert {"create", "update", "staged_delete", "disable", "other", "unknown"} <= set(ev["action"])
    assert ev["object_key"].str.startswith("upn:").any()
    assert (
        ev["object_key"].str.startswith("name:").any()
        or ev["object_key"].str.startswith("target:").any()
    )
