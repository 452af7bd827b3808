"""The fast ingest paths agree with the generic parser, and large files stream.

- ``ingest.jsonstream`` splits every streamable layout into exactly the records the
  whole-document reader finds, whatever the block boundaries, and refuses malformed structure
  with a file:line place;
- ``ingest.records_fast`` (DuckDB) returns frames equal to ``records_to_frames`` or declines;
- a file whose later records the columnar path cannot take is re-read, not half-stored;
- the progress bar moves within a file, by bytes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ingest.files as files_mod
import ingest.formats.provisioning as prov
from ingest import jsonstream, records_fast
from ingest.errors import BadInput
from ingest.files import ingest_files
from ingest.formats import Source
from ingest.records import records_to_frames
from ingest.store import Store
from tests.support.jsonschema_strategy import from_schema

EXAMPLES = Path(__file__).parent / "data" / "examples"
SCHEMA = json.loads(
    (
        Path(__file__).parent / "data" / "schema" / "provisioningObjectSummary.v1.0.schema.json"
    ).read_text()
)


def _record(i: int, **over: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "id": f"rec-{i}",
        "activityDateTime": f"2026-11-20T10:{i % 60:02d}:00.{i:07d}Z",
        "tenantId": "t-1",
        "jobId": "scim.job",
        "cycleId": f"c{i % 3}",
        "changeId": f"ch-{i}",
        "provisioningAction": ["create", "Update", "disable", "StagedDelete", 1][i % 5],
        "durationInMilliseconds": i * 7,
        "servicePrincipal": {"id": "sp-1", "displayName": "TheOrgWiki"},
        "sourceSystem": {"id": "s", "displayName": "Azure Active Directory", "details": {}},
        "targetSystem": {
            "id": "t",
            "displayName": "TheOrgWiki",
            "details": {"ServicePrincipalId": "sp-1", "ServicePrincipalDisplayName": "W"},
        },
        "initiatedBy": {
            "id": "",
            "displayName": "Azure AD Provisioning Service",
            "initiatorType": "system",
        },
        "sourceIdentity": {
            "id": f"u{i}",
            "displayName": f'Ren\u00e9 {i} "q" \\',
            "identityType": "User" if i % 4 else "Group",
            "details": {"DisplayName": "x"} if i % 4 == 0 else {},
        },
        "targetIdentity": {
            "id": "" if i % 2 else f"w{i}",
            "displayName": "",
            "identityType": "User",
        },
        "provisioningStatusInfo": {
            "status": ["success", "failure", "skipped", "Warning", 1][i % 5],
            "errorInformation": None
            if i % 5 != 1
            else {
                "errorCode": "TheOrgWikiEntryConflict",
                "reason": "409, uniqueness",
                "additionalDetails": "",
                "errorCategory": "NonServiceFailure",
                "recommendedAction": None,
            },
        },
        "provisioningSteps": [
            {
                "name": "EntryImportAdd",
                "provisioningStepType": "Import" if i % 2 else 0,
                "status": "success",
                "description": "Received User",
                "details": {"userPrincipalName": f"u{i}@contoso.example"} if i % 3 else {},
            },
            {
                "name": "EntrySynchronizationSkip" if i % 5 == 2 else "EntryExportAdd",
                "provisioningStepType": "export" if i % 5 != 2 else "scoping",
                "status": "failure" if i % 5 == 1 else "skipped" if i % 5 == 2 else "success",
                "description": "",
                "details": {"SkipReason": "NotEffectivelyEntitled", "IsActive": "True"}
                if i % 5 == 2
                else {"Filter": '{"a":true}'},
            },
        ],
        "modifiedProperties": [
            {"displayName": "userName", "oldValue": None, "newValue": f"u{i}@x"},
            {"displayName": "active", "oldValue": "False", "newValue": True if i % 2 else "True"},
        ],
    }
    rec.update(over)
    return rec


def _lines(records: list[dict[str, Any]]) -> bytes:
    return b"\n".join(orjson.dumps(r) for r in records)


def _assert_same(generic: dict[str, pd.DataFrame], fast: dict[str, pd.DataFrame]) -> None:
    for table, frame in generic.items():
        pd.testing.assert_frame_equal(
            frame.reset_index(drop=True), fast[table].reset_index(drop=True), obj=table
        )


def test_columnar_path_equals_generic_parser_on_graph_records() -> None:
    records = [_record(i) for i in range(40)]
    fast = records_fast.graph_lines_to_frames(_lines(records), "file")
    assert fast is not None
    _assert_same(records_to_frames(records, "file"), fast)
    assert set(fast["events"]["skip_reason"].dropna()) == {"NotEffectivelyEntitled"}
    assert fast["modified_properties"]["new_value"].tolist()[1] == "True"  # JSON true, as text


@pytest.mark.parametrize(
    "example",
    [
        *sorted(p.name for p in EXAMPLES.glob("graph-v1.0-list-provisioning-*.json")),
        "entra-cross-tenant-sync-list-provisioning-v1.0-truncated.json",
    ],
)
def test_columnar_path_equals_generic_parser_on_official_examples(example: str) -> None:
    records = orjson.loads((EXAMPLES / example).read_bytes())["value"]
    fast = records_fast.graph_lines_to_frames(_lines(records), "file")
    assert fast is not None
    _assert_same(records_to_frames(records, "file"), fast)


@pytest.mark.parametrize(
    "quirk",
    [
        {"servicePrincipal": [{"id": "sp-9", "displayName": "Array SP"}]},
        {"servicePrincipal": {"Id": "sp-9", "Name": "Pascal"}},
        {"provisioningSteps": '[{"name": "S"}]'},
        {"provisioningStatusInfo": None, "statusInfo": {"status": "failure"}},
        {"provisioningAction": None, "action": "Create"},
        {"activityDateTime": "yesterday"},
        {"id": ""},
        {"provisioningSteps": [{"name": "S", "details": '{"SkipReason": "X"}'}]},
    ],
)
def test_columnar_path_declines_what_it_does_not_reproduce(quirk: dict[str, Any]) -> None:
    records = [_record(1), _record(2, **quirk)]
    assert records_fast.graph_lines_to_frames(_lines(records), "file") is None


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(from_schema(SCHEMA), min_size=1, max_size=4))
def test_columnar_path_equals_generic_or_declines_on_schema_records(recs: list[dict]) -> None:
    for i, rec in enumerate(recs):
        rec["id"] = f"id-{i}"
        rec["activityDateTime"] = f"2026-01-0{i + 1}T00:00:00Z"
    fast = records_fast.graph_lines_to_frames(_lines(recs), "file")
    if fast is not None:
        _assert_same(records_to_frames(recs, "file"), fast)


# ---- the splitter ---------------------------------------------------------------------------


def _layouts(tmp_path: Path) -> dict[str, tuple[bytes, int]]:
    recs = [_record(i) for i in range(7)]
    pages = [
        {"@odata.context": "c", "value": recs[k : k + 3], "@odata.nextLink": "n]"}
        for k in (0, 3, 6)
    ]
    return {
        "page.json": (orjson.dumps(pages[0]), 3),
        "pretty_pages.json": ("\n".join(json.dumps(p, indent=2) for p in pages).encode(), 7),
        "jsonl_pages.json": (b"\n".join(orjson.dumps(p) for p in pages) + b"\n", 7),
        "array.json": (json.dumps(recs, indent=1).encode(), 7),
        "lines.jsonl": (b"\r\n".join(orjson.dumps(r) for r in recs) + b"\n\n", 7),
        "mixed.json": (orjson.dumps(pages[0]) + b"\n" + orjson.dumps(recs[5]), 4),
        "envelope.json": (orjson.dumps({"records": recs}), 7),
    }


@pytest.mark.parametrize("block", [5, 64, 1 << 20])
def test_splitter_yields_the_records_of_every_layout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int
) -> None:
    monkeypatch.setattr(jsonstream, "BLOCK", block)
    for name, (data, count) in _layouts(tmp_path).items():
        path = tmp_path / name
        path.write_bytes(data)
        layout = jsonstream.plan(data[: jsonstream.HEAD_BYTES])
        assert layout is not None, name
        chunks = list(jsonstream.iter_chunks(path, 0, layout, name, max_records=2))
        got = [orjson.loads(line) for c in chunks for line in bytes(c.data).split(b"\n")]
        expected = [r for _, d in prov.iter_documents(Source(path)) for r in prov._records_of(d)[0]]
        assert got == expected and len(got) == count, name


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ('{"value":[{"id":1} x {"id":2}]}', 1),
        ('{"value":[{"id":1} {"id":2}]}', 1),
        ('{"value":[{"id":1}, 42]}', 1),
        ('{"value":[{"id":1},]}', 1),
        ('{"value":[{"id":1}]} trailing', 1),
        ('{"@odata.context": oops,\n "value":[{"id":1}]}', 1),
        ('{"id":1}\nxx\n{"id":2}\n', 1),
        ('{\n"value": [\n{"id": 1},\n{"id": "abc\n', 5),
    ],
)
def test_splitter_refuses_malformed_structure_with_a_place(
    tmp_path: Path, text: str, line: int
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    layout = jsonstream.plan(text.encode())
    with pytest.raises(BadInput, match=rf"^bad\.json:{line}: "):
        list(jsonstream.iter_chunks(path, 0, layout or "pages", "bad.json"))


# ---- the whole-array path and re-reads ------------------------------------------------------


def _sorted(store: Store, table: str) -> pd.DataFrame:
    df = store.read(table)
    return df.sort_values(list(df.columns)).reset_index(drop=True)


@pytest.mark.parametrize("bad_at", [None, 3, 290])
def test_whole_array_path_stores_what_the_generic_path_stores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bad_at: int | None
) -> None:
    records = [_record(i) for i in range(300)]
    if bad_at is not None:  # a record the columnar path declines, late in the file
        records[bad_at]["servicePrincipal"] = [{"id": "sp-9", "displayName": "Array SP"}]
    path = tmp_path / "page.json"
    path.write_bytes(orjson.dumps({"@odata.context": "c", "value": records}))
    monkeypatch.setattr(prov, "FAST_MIN_BYTES", 0)
    calls: list[int] = []
    real = records_fast.graph_array_frames

    def small_batches(*args: Any, **kw: Any) -> Any:
        calls.append(1)
        return real(*args, **{**kw, "batch_rows": 100})

    monkeypatch.setattr(records_fast, "graph_array_frames", small_batches)
    fast = Store(tmp_path / "fast")
    result = ingest_files(fast, [path])
    assert calls, "the whole-array path was not taken"
    assert result.read["events"] == 300
    monkeypatch.setattr(prov, "FAST_MIN_BYTES", 1 << 62)
    monkeypatch.setattr(prov, "FAST_MIN_RECORDS", 1 << 62)
    generic = Store(tmp_path / "generic")
    ingest_files(generic, [path])
    for table in ("events", "steps", "modified_properties"):
        pd.testing.assert_frame_equal(_sorted(fast, table), _sorted(generic, table))
    assert fast.manifest().rows == generic.manifest().rows
    # A re-read leaves no orphaned part files behind.
    listed = {p for parts in fast.manifest().parts.values() for p in parts}
    on_disk = {
        p.relative_to(fast.path).as_posix() for p in (fast.path / "parts").rglob("*.parquet")
    }
    assert on_disk == listed


def test_progress_moves_by_bytes_within_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "page.json"
    path.write_bytes(orjson.dumps({"value": [_record(i) for i in range(50)]}))
    monkeypatch.setattr(prov, "CHUNK", 10)

    class Bar:
        def __init__(self) -> None:
            self.updates: list[int] = []

        def update(self, n: int) -> None:
            self.updates.append(n)

        def close(self) -> None:
            pass

    bar = Bar()
    monkeypatch.setattr(files_mod, "_progress", lambda total, enabled: bar if enabled else None)
    ingest_files(Store(tmp_path / "s"), [path], progress=True)
    assert len(bar.updates) >= 5
    assert sum(bar.updates) == path.stat().st_size
    assert all(n > 0 for n in bar.updates)
