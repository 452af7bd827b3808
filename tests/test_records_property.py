"""Property tests: records generated from Graph's own JSON Schema always ingest, exactly once."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest import schema
from ingest.records import records_to_frames
from tests.support.jsonschema_strategy import from_schema

SCHEMA = json.loads(
    (
        Path(__file__).parent / "data" / "schema" / "provisioningObjectSummary.v1.0.schema.json"
    ).read_text()
)

timestamps = st.datetimes(
    min_value=pd.Timestamp("2000-01-01").to_pydatetime(),
    max_value=pd.Timestamp("2099-12-31").to_pydatetime(),
).map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))

records = st.lists(from_schema(SCHEMA), min_size=1, max_size=5)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(records, st.lists(timestamps, min_size=5, max_size=5))
def test_schema_generated_records_ingest_exactly_once(recs: list[dict], times: list[str]) -> None:
    for i, rec in enumerate(recs):
        rec["id"] = f"id-{i}"
        rec["activityDateTime"] = times[i]
    frames = records_to_frames(recs, origin="file")
    events = frames["events"]
    assert events["id"].tolist() == [f"id-{i}" for i in range(len(recs))]
    schema.validate("events", events)
    schema.validate("modified_properties", frames["modified_properties"])
    steps = frames["steps"]
    expected_steps = sum(
        sum(isinstance(s, dict) for s in (r.get("provisioningSteps") or [])) for r in recs
    )
    assert len(steps) == expected_steps
    # Every recognised enum leaves no raw value; every unrecognised one keeps it.
    assert ((events["action"] == "unknown") | events["action_raw"].isna()).all()


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(["create", "Create", "CREATE", 1, "1", "stagedDelete", "StagedDelete", 5]),
    st.sampled_from(["success", "Success", 0, "failure", 1, "Skipped", 2, "warning", 3]),
)
def test_enum_spellings_normalise(action: object, status: object) -> None:
    rec = {
        "id": "x",
        "activityDateTime": "2026-01-01T00:00:00Z",
        "provisioningAction": action,
        "provisioningStatusInfo": {"status": status},
    }
    ev = records_to_frames([rec], origin="file")["events"].iloc[0]
    assert ev["action"] in {"create", "staged_delete"}
    assert ev["status"] in {"success", "failure", "skipped", "warning"}
    assert pd.isna(ev["action_raw"]) and pd.isna(ev["status_raw"])
