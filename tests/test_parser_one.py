"""One parser: the same record gives the same rows in every shape, casing and file size; a record
repeated in one batch keeps its last copy with that copy's children only; the envelope's result
type is kept beside the inner status."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.files import ingest_files
from ingest.formats import Options, Source
from ingest.formats.provisioning import parse_json
from ingest.records import records_to_frames
from ingest.store import Store

EXAMPLES = Path(__file__).parent / "data" / "examples"
BASE = json.loads((EXAMPLES / "graph-v1.0-list-provisioning-example2-failure.json").read_text())[
    "value"
][0]


def _mixed_case_record(rid: str) -> dict[str, Any]:
    """The issue's record: nested objects mixing key casing."""
    rec = copy.deepcopy(BASE)
    rec["id"] = rid
    psi = rec["provisioningStatusInfo"]
    err = psi["errorInformation"]
    psi["errorInformation"] = {
        "ErrorCode": err["errorCode"],
        "reason": err["reason"],
        "RecommendedAction": "Remove the duplicate in Contoso",
        "errorCategory": err["errorCategory"],
    }
    rec["sourceIdentity"] = {
        "Id": "src-obj-1",
        "displayName": "Ada",
        "identityType": "User",
        "details": {"userprincipalname": "ada@contoso.example"},
    }
    rec["provisioningSteps"][2] = {**rec["provisioningSteps"][2], "Status": "failure"}
    del rec["provisioningSteps"][2]["status"]
    return rec


def _graph_record(rid: str) -> dict[str, Any]:
    rec = copy.deepcopy(BASE)
    rec["id"] = rid
    return rec


def _frames_of(path: Path, columnar_min_records: int = 500) -> dict[str, pd.DataFrame]:
    parts = list(parse_json(Source(path), Options(columnar_min_records=columnar_min_records)))
    return {t: pd.concat([p[t] for p in parts], ignore_index=True) for t in parts[0]}


@pytest.mark.parametrize("count", [10, 3000])
def test_mixed_casing_keeps_every_field_in_small_and_large_files(
    tmp_path: Path, count: int
) -> None:
    records = [_graph_record(f"r{i}") for i in range(count - 1)] + [_mixed_case_record("odd")]
    path = tmp_path / "page.json"
    path.write_bytes(orjson.dumps({"value": records}))
    store = Store(tmp_path / "store")
    ingest_files(store, [path])
    ev = store.read("events").set_index("id").loc["odd"]
    assert ev["error_code"] == "ContosoEntryConflict"
    assert ev["recommended_action"] == "Remove the duplicate in Contoso"
    assert ev["failed_step"] == "EntryExportAdd"
    assert ev["source_id"] == "src-obj-1"
    assert ev["source_upn"] == "ada@contoso.example"
    assert ev["error_category"] == "non_service_failure"
    assert store.read("events")["failed_step"].eq("EntryExportAdd").all()


def test_a_chunk_with_odd_casing_is_read_by_the_per_record_engine_with_the_same_rows(
    tmp_path: Path,
) -> None:
    records = [_graph_record(f"r{i}") for i in range(600)]
    path = tmp_path / "page.json"
    path.write_bytes(orjson.dumps({"value": records}))
    columnar = _frames_of(path, columnar_min_records=1)
    per_record = _frames_of(path, columnar_min_records=10**9)
    for table in columnar:
        pd.testing.assert_frame_equal(columnar[table], per_record[table])


def _export(rid: str, job: str, steps: list[dict[str, Any]], props: list[dict[str, Any]]) -> dict:
    rec = _graph_record(rid)
    rec["jobId"] = job
    rec["provisioningSteps"] = steps
    rec["modifiedProperties"] = props
    return rec


def _step(name: str, status: str) -> dict[str, Any]:
    return {"name": name, "provisioningStepType": "export", "status": status, "details": {}}


@pytest.mark.parametrize("layout", ["two_files", "one_file", "one_file_large"])
def test_repeated_record_keeps_the_last_copy_with_its_own_children(
    tmp_path: Path, layout: str
) -> None:
    first = _export(
        "dup",
        "job.A",
        [_step("EntryImportAdd", "success"), _step("EntryExportAdd", "failure")],
        [{"displayName": "mail", "oldValue": None, "newValue": "a@x"}],
    )
    last = _export("dup", "job.B", [_step("EntryExportUpdate", "success")], [])
    filler = [_graph_record(f"f{i}") for i in range(700 if layout == "one_file_large" else 2)]
    store = Store(tmp_path / "store")
    if layout == "two_files":
        a = tmp_path / "a.json"
        b = tmp_path / "b.json"
        a.write_bytes(orjson.dumps({"value": [first, *filler]}))
        b.write_bytes(orjson.dumps({"value": [last]}))
        ingest_files(store, [a, b])
    else:
        path = tmp_path / "both.json"
        path.write_bytes(orjson.dumps({"value": [first, *filler, last]}))
        ingest_files(store, [path])
    events = store.read("events").set_index("id")
    assert events.loc["dup", "job_id"] == "job.B"
    assert events.loc["dup", "failed_step"] is None or pd.isna(events.loc["dup", "failed_step"])
    steps = store.read("steps")
    mine = steps[steps["event_id"] == "dup"]
    assert mine[["position", "name", "status"]].values.tolist() == [
        [0, "EntryExportUpdate", "success"]
    ]
    props = store.read("modified_properties")
    assert props[props["event_id"] == "dup"].empty
    assert len(props) == 6 * len(filler)


def test_dropbox_style_repeat_in_memory_keeps_last_copy_children() -> None:
    a = _export("d1", "Dropbox.job1", [_step("S1", "failure"), _step("S2", "failure")], [])
    b = _export("d1", "Dropbox.job2", [_step("S3", "success")], [])
    frames = records_to_frames([a, b], "file")
    assert frames["events"]["job_id"].tolist() == ["Dropbox.job2"]
    assert frames["steps"]["name"].tolist() == ["S3"]


def _envelope(rec: dict[str, Any], result_type: Any) -> dict[str, Any]:
    return {
        "time": rec["activityDateTime"],
        "resourceId": "/tenants/t-1/providers/Microsoft.aadiam",
        "operationName": "Provisioning activity",
        "category": "ProvisioningLogs",
        "resultType": result_type,
        "properties": rec,
    }


def test_envelope_result_type_is_kept_beside_the_inner_status() -> None:
    rec = _graph_record("e1")  # inner status: failure
    ev = records_to_frames([_envelope(rec, "Success")], "file")["events"].iloc[0]
    assert (ev["status"], ev["envelope_result_type"]) == ("failure", "success")
    la_row = {
        "TimeGenerated": "2026-11-20T10:00:00Z",
        "Id": "la1",
        "ProvisioningAction": "Create",
        "ResultType": "NotApplicable",
        "ProvisioningStatusInfo": json.dumps({"Status": "skipped"}),
        "SourceIdentity": json.dumps({"Id": "u1", "Name": "Ada"}),
    }
    la = records_to_frames([la_row], "log_analytics")["events"].iloc[0]
    assert (la["status"], la["envelope_result_type"]) == ("skipped", "not_applicable")
    assert (la["source_id"], la["source_name"]) == ("u1", "Ada")
    plain = records_to_frames([rec], "file")["events"].iloc[0]
    assert pd.isna(plain["envelope_result_type"])


def test_log_analytics_action_column_and_provisioning_action_column() -> None:
    base = {"TimeGenerated": "2026-11-20T10:00:00Z", "ResultType": "Success"}
    rows = [{**base, "Id": "a", "Action": "Disable"}, {**base, "Id": "b", "ProvisioningAction": 4}]
    ev = records_to_frames(rows, "log_analytics")["events"]
    assert ev["action"].tolist() == ["disable", "update"]


# ---- property tests ----------------------------------------------------------------------------


def _recase(value: Any, rnd: random.Random, in_bag: bool = False) -> Any:
    """Give every key outside step details a random casing (any nesting level)."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            key = k if in_bag else "".join(rnd.choice((c.lower(), c.upper())) for c in k)
            out[key] = _recase(v, rnd, in_bag or k == "details")
        return out
    if isinstance(value, list):
        return [_recase(v, rnd, in_bag) for v in value]
    return value


names = st.text("abcdefgh XYZ-_", min_size=1, max_size=12)
records = st.builds(
    lambda rid, reason, upn, action, status, code: {
        **_graph_record(rid),
        "provisioningAction": action,
        "sourceIdentity": {
            "id": "s-" + rid,
            "displayName": reason,
            "identityType": "User",
            "details": {"UserPrincipalName": upn},
        },
        "provisioningStatusInfo": {
            "status": status,
            "errorInformation": {"errorCode": code, "reason": reason, "recommendedAction": upn},
        },
    },
    st.text("abcdef0123456789-", min_size=1, max_size=12),
    names,
    names,
    st.sampled_from(["create", "Update", "DELETE", 3, "stagedDelete", "weird"]),
    st.sampled_from(["success", "Failure", 2, "skipped", "odd"]),
    st.one_of(st.none(), names),
)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(records, st.integers(0, 2**32))
def test_random_key_casing_at_any_level_gives_the_same_rows(rec: dict, seed: int) -> None:
    canonical = records_to_frames([rec], "file")
    recased = records_to_frames([_recase(rec, random.Random(seed))], "file")
    for table in canonical:
        pd.testing.assert_frame_equal(canonical[table], recased[table])


def _shapes(rec: dict[str, Any], tmp: Path, seed: int) -> dict[str, Path]:
    rnd = random.Random(seed)
    filler = [_graph_record(f"fill{i}") for i in range(600)]
    odd = _recase(rec, rnd)
    files = {
        "alone": {"value": [rec]},
        "big_file": {"value": [*filler, rec]},
        "big_file_recased": {"value": [*filler, odd]},
        "portal": [rec],
        "envelope": {"records": [_envelope(rec, "Success")]},
    }
    out = {}
    for name, doc in files.items():
        out[name] = tmp / f"{name}.json"
        out[name].write_bytes(orjson.dumps(doc))
    out["jsonl"] = tmp / "lines.jsonl"
    out["jsonl"].write_bytes(b"\n".join(orjson.dumps(r) for r in [*filler, rec]))
    return out


@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
@given(records, st.integers(0, 2**32))
def test_the_same_record_in_every_shape_and_size_gives_identical_rows(
    tmp_path_factory: pytest.TempPathFactory, rec: dict, seed: int
) -> None:
    tmp = tmp_path_factory.mktemp("shapes")
    ignore = ["origin", "envelope_result_type"]
    rows = {}
    for name, path in _shapes(rec, tmp, seed).items():
        frames = _frames_of(path, columnar_min_records=100)
        ev = frames["events"]
        rid = rec["id"]
        rows[name] = (
            ev[ev["id"] == rid].drop(columns=ignore).reset_index(drop=True),
            frames["steps"][frames["steps"]["event_id"] == rid].reset_index(drop=True),
            frames["modified_properties"][
                frames["modified_properties"]["event_id"] == rid
            ].reset_index(drop=True),
        )
    first = rows.pop("alone")
    for name, got in rows.items():
        for a, b in zip(first, got, strict=True):
            pd.testing.assert_frame_equal(a, b, obj=name)


def test_columnar_engine_reads_graph_casing_and_declines_any_other_spelling() -> None:
    from ingest import records_fast

    def lines(recs: list[dict[str, Any]]) -> bytes:
        return b"\n".join(orjson.dumps(r) for r in recs)

    graph = [_graph_record(f"r{i}") for i in range(3)]
    frames = records_fast.lines_to_frames(lines(graph), "file", str)
    assert frames is not None
    pd.testing.assert_frame_equal(frames["events"], records_to_frames(graph, "file")["events"])
    assert (
        records_fast.lines_to_frames(lines([*graph, _mixed_case_record("b")]), "file", str) is None
    )
    envelope = [_envelope(_graph_record("e"), "Success")]
    assert records_fast.lines_to_frames(lines(envelope), "file", str) is None


@pytest.mark.parametrize("part_rows", [1, 1_000_000])
def test_store_batch_keeps_children_of_the_latest_copy_across_parts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, part_rows: int
) -> None:
    from ingest import store as store_mod

    monkeypatch.setattr(store_mod, "PART_ROWS", part_rows)  # 1: every add() writes its own part
    a = records_to_frames(
        [_export("x", "job.A", [_step("A1", "failure"), _step("A2", "failure")], [])], "file"
    )
    b = records_to_frames([_export("x", "job.B", [], [])], "file")
    c = records_to_frames([_export("y", "job.C", [_step("C1", "success")], [])], "file")
    store = Store(tmp_path / "store")
    with store.batch(source="file") as batch:
        batch.add(a)
        batch.add(c)
        batch.add(b)
    assert store.read("events").set_index("id")["job_id"].to_dict() == {"x": "job.B", "y": "job.C"}
    assert store.read("steps")[["event_id", "name"]].values.tolist() == [["y", "C1"]]
