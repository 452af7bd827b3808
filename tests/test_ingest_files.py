"""File ingest: every provisioning-log shape into the canonical tables, and bad input refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import orjson
import pandas as pd
import pytest

from ingest.errors import BadInput
from ingest.files import ingest_files
from ingest.store import Store
from provlens.cli import main

EXAMPLES = Path(__file__).parent / "data" / "examples"


def _events(store: Store) -> pd.DataFrame:
    return store.read("events").set_index("id")


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store")


def _write(path: Path, payload: object) -> Path:
    path.write_bytes(orjson.dumps(payload))
    return path


def test_v1_failure_example_maps_every_field(store: Store) -> None:
    ingest_files(store, [EXAMPLES / "graph-v1.0-list-provisioning-example2-failure.json"])
    ev = _events(store).loc["gc532ff9-r265-ec76-861e-42e2970a8218"]
    assert ev["activity_at"] == pd.Timestamp("2019-06-24T20:53:08Z")
    assert ev["action"] == "create"
    assert ev["status"] == "failure"
    assert ev["error_code"] == "ContosoEntryConflict"
    assert ev["error_category"] == "non_service_failure"
    assert ev["error_reason"].startswith("Message: Contoso returned an error response")
    assert ev["failed_step"] == "EntryExportAdd"
    assert ev["duration_ms"] == 2785
    assert ev["service_principal_id"] == "chc46a42-966b-47d7-9774-576b1c8bd0b8"
    assert ev["service_principal_name"] == "Contoso"
    assert ev["initiator_type"] == "system"
    assert ev["initiator_name"] == "Azure AD Provisioning Service"
    assert ev["source_type"] == "group"
    assert ev["source_name"] == "Self-service Pilot"
    assert pd.isna(ev["target_id"])  # "" in the payload means unknown
    assert ev["origin"] == "file"
    steps = store.read("steps").sort_values("position")
    assert steps["step_type"].tolist() == ["import", "matching", "export"]
    assert steps["status"].tolist() == ["success", "success", "failure"]
    assert json.loads(steps["details"].iloc[2]) == {"ReportableIdentifier": "Self-service Pilot"}
    props = store.read("modified_properties")
    assert len(props) == 6
    assert props.set_index("name").loc["securityEnabled", "new_value"] == "True"
    assert props["old_value"].isna().all()


@pytest.mark.parametrize(
    ("name", "events", "steps", "props", "status", "action"),
    [
        ("graph-v1.0-list-provisioning-example1-success.json", 1, 2, 5, "success", "create"),
        ("graph-v1.0-list-provisioning-example2-failure.json", 1, 3, 6, "failure", "create"),
        ("graph-beta-legacy-list-provisioning-example1-success.json", 1, 2, 5, "success", "create"),
        ("graph-beta-legacy-list-provisioning-example2-failure.json", 1, 3, 6, "failure", "create"),
        (
            "entra-cross-tenant-sync-list-provisioning-v1.0-truncated.json",
            1,
            2,
            0,
            "success",
            "create",
        ),
    ],
)
def test_official_examples_ingest_with_payload_counts(
    store: Store, name: str, events: int, steps: int, props: int, status: str, action: str
) -> None:
    result = ingest_files(store, [EXAMPLES / name])
    assert result.read == {
        k: v
        for k, v in {"events": events, "steps": steps, "modified_properties": props}.items()
        if v
    }
    ev = store.read("events")
    assert ev["status"].tolist() == [status]
    assert ev["action"].tolist() == [action]


def test_example1_quirks_capitalised_step_types_and_initiating_type(store: Store) -> None:
    ingest_files(store, [EXAMPLES / "graph-v1.0-list-provisioning-example1-success.json"])
    steps = store.read("steps").sort_values("position")
    assert steps["step_type"].tolist() == ["import", "export"]  # "Import" / "Export" on the wire
    assert steps["step_type_raw"].isna().all()
    ev = store.read("events").iloc[0]
    assert ev["initiator_type"] == "system"  # from the docs' `initiatingType` typo
    assert ev["source_type"] == "other"  # RolesCompound


def test_cross_tenant_example_takes_upn_from_source_details(store: Store) -> None:
    ingest_files(
        store, [EXAMPLES / "entra-cross-tenant-sync-list-provisioning-v1.0-truncated.json"]
    )
    ev = store.read("events").iloc[0]
    assert ev["source_upn"] == "user4@fabrikam.com"
    assert ev["target_system"] == "Azure Active Directory (target tenant)"


def test_same_files_twice_add_nothing(store: Store) -> None:
    files = sorted(EXAMPLES.glob("graph-v1.0-list-provisioning-*.json"))
    first = ingest_files(store, files)
    second = ingest_files(store, files)
    assert first.new["events"] == 2
    assert second.new == {t: 0 for t in second.new}
    assert store.manifest().rows["steps"] == 5
    assert store.manifest().rows["modified_properties"] == 11


def test_legacy_and_current_versions_of_a_record_replace_each_other(store: Store) -> None:
    ingest_files(store, [EXAMPLES / "graph-beta-legacy-list-provisioning-example2-failure.json"])
    ingest_files(store, [EXAMPLES / "graph-v1.0-list-provisioning-example2-failure.json"])
    assert len(store.read("events")) == 1
    assert len(store.read("steps")) == 3  # the steps of the superseded version are gone


def _record(i: int, **over: object) -> dict:
    rec = {
        "id": f"rec-{i}",
        "activityDateTime": "2026-11-20T10:00:00Z",
        "jobId": "scim.job",
        "cycleId": "c1",
        "changeId": f"ch-{i}",
        "provisioningAction": "update",
        "provisioningStatusInfo": {"status": "success", "errorInformation": None},
        "servicePrincipal": {"id": "sp-1", "displayName": "TheOrgWiki"},
        "sourceIdentity": {"id": f"u{i}", "displayName": f"User {i}", "identityType": "User"},
        "targetIdentity": {"id": "", "displayName": "", "identityType": "User"},
        "provisioningSteps": [],
        "modifiedProperties": [],
    }
    rec.update(over)
    return rec


def test_quirks_enum_case_integers_array_sp_fractions_and_json_strings(
    store: Store, tmp_path: Path
) -> None:
    records = [
        _record(1, provisioningAction="StagedDelete"),
        _record(
            2, provisioningAction="stageddelete", activityDateTime="2026-11-20T10:00:00.3538931Z"
        ),
        _record(3, servicePrincipal=[{"id": "sp-9", "displayName": "Array SP"}]),
        _record(
            4,
            activityDateTime="2026-11-20T12:00:00.1+02:00",
            provisioningSteps=[
                {
                    "name": "S",
                    "provisioningStepType": 4,
                    "status": 2,
                    "details": '{"SkipReason": "X"}',
                }
            ],
        ),
        _record(5, provisioningAction="teleport", provisioningStatusInfo={"status": "Exploded"}),
    ]
    path = _write(tmp_path / "page.json", {"value": records})
    ingest_files(store, [path])
    ev = _events(store)
    assert ev.loc["rec-1", "action"] == "staged_delete"
    assert ev.loc["rec-2", "action"] == "staged_delete"
    assert ev.loc["rec-2", "activity_at"] == pd.Timestamp("2026-11-20T10:00:00.353893Z")
    assert ev.loc["rec-3", "service_principal_id"] == "sp-9"
    assert ev.loc["rec-4", "activity_at"] == pd.Timestamp("2026-11-20T10:00:00.1Z")
    assert ev.loc["rec-4", "skip_reason"] == "X"
    assert (ev.loc["rec-5", "action"], ev.loc["rec-5", "action_raw"]) == ("unknown", "teleport")
    assert (ev.loc["rec-5", "status"], ev.loc["rec-5", "status_raw"]) == ("unknown", "Exploded")
    step = store.read("steps").iloc[0]
    assert (step["step_type"], step["status"]) == ("reference_resolution", "skipped")


def test_pages_concatenated_and_as_json_lines(store: Store, tmp_path: Path) -> None:
    page1 = {"@odata.context": "x", "value": [_record(1), _record(2)], "@odata.nextLink": "n"}
    page2 = {"value": [_record(3)]}
    pretty = tmp_path / "pages.json"
    pretty.write_text(json.dumps(page1, indent=2) + "\n" + json.dumps(page2, indent=2))
    lines = tmp_path / "records.jsonl"
    lines.write_text("\n".join(json.dumps(_record(i)) for i in range(4, 7)) + "\n")
    ingest_files(store, [pretty, lines])
    assert sorted(store.read("events")["id"]) == [f"rec-{i}" for i in range(1, 7)]


def test_bare_array_and_utf16_bom(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "download.json"
    path.write_bytes(json.dumps([_record(1), _record(2)]).encode("utf-16"))  # BOM + UTF-16
    result = ingest_files(store, [path])
    assert result.files[0].kind == "portal_json"
    assert len(store.read("events")) == 2


def test_azure_monitor_envelope(store: Store, tmp_path: Path) -> None:
    envelope = {
        "records": [
            {
                "time": "2026-11-20T10:15:03.1234567Z",
                "resourceId": "/tenants/tenant-42/providers/Microsoft.aadiam",
                "operationName": "Provisioning activity",
                "category": "ProvisioningLogs",
                "resultType": "Failure",
                "durationMs": "812",
                "correlationId": "change-7",
                "identity": "evt-7",
                "properties": {
                    "jobId": "scim.job",
                    "cycleId": "c9",
                    "action": "Create",
                    "servicePrincipal": {"Id": "sp-1", "Name": "TheOrgWiki"},
                    "sourceIdentity": {"Id": "u7", "Name": "Ada", "identityType": "User"},
                    "initiatedBy": {"Type": "System", "Id": "", "Name": "Azure AD Provisioning"},
                    "statusInfo": {"Status": 1},
                    "provisioningStatusInfo": {
                        "Status": 1,
                        "errorInformation": {"errorCode": "TheOrgWikiEntryConflict"},
                    },
                    "provisioningSteps": [
                        {"name": "EntryExportAdd", "provisioningStepType": 5, "status": 1}
                    ],
                },
            }
        ]
    }
    path = _write(tmp_path / "PT1H.json", envelope)
    result = ingest_files(store, [path])
    assert result.files[0].kind == "azure_monitor"
    ev = _events(store).loc["evt-7"]
    assert ev["tenant_id"] == "tenant-42"
    assert ev["change_id"] == "change-7"
    assert ev["duration_ms"] == 812
    assert (ev["action"], ev["status"]) == ("create", "failure")
    assert ev["error_code"] == "TheOrgWikiEntryConflict"
    assert ev["service_principal_name"] == "TheOrgWiki"
    assert ev["source_name"] == "Ada"
    assert ev["initiator_type"] == "system"
    assert ev["failed_step"] == "EntryExportAdd"
    assert store.read("steps")["step_type"].tolist() == ["export"]


def test_log_analytics_csv(store: Store, tmp_path: Path) -> None:
    row = {
        "TenantId": "workspace-1",
        "AADTenantId": "tenant-1",
        "TimeGenerated [UTC]": "2026-11-20T10:00:00.123Z",
        "Id": "la-1",
        "JobId": "scim.job",
        "CycleId": "c1",
        "ChangeId": "ch-1",
        "DurationMs": "40",
        "ProvisioningAction": "Update",
        "ResultType": "Skipped",
        "ResultSignature": "None",
        "ResultDescription": "",
        "ServicePrincipal": json.dumps({"Id": "sp-1", "Name": "TheOrgWiki"}),
        "SourceIdentity": json.dumps({"Id": "u1", "Name": "Bo", "identityType": "User"}),
        "ProvisioningSteps": json.dumps(
            [
                {
                    "name": "EntrySynchronizationSkip",
                    "provisioningStepType": 1,
                    "status": 2,
                    "details": {"SkipReason": "NotEffectivelyEntitled"},
                }
            ]
        ),
        "ModifiedProperties": "[]",
    }
    path = tmp_path / "query_data.csv"
    pd.DataFrame([row]).to_csv(path, index=False)
    result = ingest_files(store, [path])
    assert result.files[0].kind == "log_analytics"
    ev = _events(store).loc["la-1"]
    assert (ev["status"], ev["action"], ev["origin"]) == ("skipped", "update", "log_analytics")
    assert ev["tenant_id"] == "tenant-1"  # AADTenantId, not the workspace's TenantId
    assert ev["skip_reason"] == "NotEffectivelyEntitled"
    assert pd.isna(ev["error_code"])
    assert ev["service_principal_id"] == "sp-1"


def _portal_csv(tmp_path: Path, with_change_id: bool = True) -> list[Path]:
    change = "Change ID" if with_change_id else "Correlation"
    main_csv = tmp_path / "ProvisioningLogs.csv"
    main_csv.write_text(
        f"Date (UTC),{change},Cycle ID,Job ID,Action,Status,Source ID,Identity,Target ID,"
        "Application,Error Code,Reason,Duration (ms)\n"
        "2026-11-20T10:00:00Z,ch-1,c1,scim.job,Create,Success,u1,Ada,t1,TheOrgWiki,,,120\n"
        "2026-11-20T10:01:00Z,ch-2,c1,scim.job,Update,Failure,u2,=cmd(),,TheOrgWiki,"
        'TheOrgWikiEntryConflict,"409, uniqueness",90\n',
        encoding="utf-8-sig",
    )
    steps_csv = tmp_path / "ProvisioningLogs_ProvisioningSteps.csv"
    steps_csv.write_text(
        "Change ID,Step Name,Step Type,Step Status,Description\n"
        "ch-1,EntryImportAdd,Import,Success,Received\n"
        "ch-1,EntryExportAdd,Export,Success,Created\n"
        "ch-2,EntryExportUpdate,Export,Failure,Failed\n"
    )
    props_csv = tmp_path / "ProvisioningLogs_ModifiedProperties.csv"
    props_csv.write_text("Change ID,Display Name,Old Value,New Value\nch-1,userName,,ada@x\n")
    return [main_csv, steps_csv, props_csv]


def test_portal_csv_three_files_joined_on_change_id(store: Store, tmp_path: Path) -> None:
    result = ingest_files(store, _portal_csv(tmp_path))
    assert [f.kind for f in result.files] == ["portal_csv"] * 3
    ev = _events(store)
    assert sorted(ev.index) == ["ch-1", "ch-2"]
    assert ev.loc["ch-2", "error_code"] == "TheOrgWikiEntryConflict"
    assert ev.loc["ch-2", "error_reason"] == "409, uniqueness"
    assert ev.loc["ch-1", "duration_ms"] == 120
    steps = store.read("steps")
    assert steps.groupby("event_id").size().to_dict() == {"ch-1": 2, "ch-2": 1}
    assert store.read("modified_properties")["event_id"].tolist() == ["ch-1"]


def test_portal_steps_without_their_events_are_refused(store: Store, tmp_path: Path) -> None:
    files = _portal_csv(tmp_path)
    with pytest.raises(BadInput, match="matches no provisioning record"):
        ingest_files(store, files[1:])
    assert not store.exists()


# ---- bad input: exit 3, one line naming the file and place, store unchanged ----------------


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    good = json.dumps({"value": [_record(i) for i in range(3)]}, indent=1)
    truncated = tmp_path / "truncated.json"
    truncated.write_text(good[: len(good) // 2])
    invalid_utf8 = tmp_path / "latin1.json"
    invalid_utf8.write_bytes(good.replace("User 1", "Ren\u00e9").encode("latin-1"))
    (tmp_path / "nochange").mkdir()
    no_change = _portal_csv(tmp_path / "nochange", with_change_id=False)[0]
    empty = tmp_path / "empty.json"
    empty.write_text("")
    other = tmp_path / "notes.txt"
    other.write_text("Dear admin,\nthis is not a log.\n")
    no_id = _write(tmp_path / "noid.json", {"value": [_record(1, id="")]})
    bad_time = _write(
        tmp_path / "badtime.json", {"value": [_record(1, activityDateTime="yesterday")]}
    )
    return {
        "truncated": (truncated, "truncated.json:"),
        "invalid_utf8": (invalid_utf8, "latin1.json:"),
        "no_change_id": (no_change, "no Change ID column"),
        "empty": (empty, "empty"),
        "other": (other, "not a format provlens recognises"),
        "no_id": (no_id, "has no id"),
        "bad_time": (bad_time, "not an ISO 8601 time"),
    }


@pytest.mark.parametrize(
    "case", ["truncated", "invalid_utf8", "no_change_id", "empty", "other", "no_id", "bad_time"]
)
def test_bad_input_exit_3_one_line_and_store_unchanged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    store_dir = tmp_path / "store"
    good = _write(tmp_path / "good.json", {"value": [_record(100)]})
    assert main(["--store", str(store_dir), "ingest", "file", str(good)]) == 0
    before = (store_dir / "manifest.json").read_bytes()
    capsys.readouterr()
    bad, expected = _bad_inputs(tmp_path)[case]
    other_good = _write(tmp_path / "good2.json", {"value": [_record(200)]})
    code = main(["--store", str(store_dir), "ingest", "file", str(other_good), str(bad)])
    err = capsys.readouterr().err
    assert code == 3
    assert err.count("\n") == 1, err
    assert err.startswith("provlens: ")
    assert bad.name in err
    assert expected in err
    assert (store_dir / "manifest.json").read_bytes() == before
    # No debris either: the next batch cleans any staged part, and reads see the old rows.
    assert Store(store_dir).read("events")["id"].tolist() == ["rec-100"]


def test_truncated_json_names_line(tmp_path: Path) -> None:
    text = json.dumps({"value": [_record(i) for i in range(3)]}, indent=1)
    path = tmp_path / "t.json"
    path.write_text(text[:-40])
    with pytest.raises(BadInput) as info:
        ingest_files(Store(tmp_path / "s"), [path])
    line = int(str(info.value).split(":")[1])
    assert line >= text[:-40].count("\n")  # the end of the file, where it was cut


def test_store_info_cli_shows_path_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store_dir = tmp_path / "store"
    src = tmp_path / "in.json"
    shutil.copy(EXAMPLES / "graph-v1.0-list-provisioning-example2-failure.json", src)
    assert main(["--store", str(store_dir), "ingest", "file", str(src)]) == 0
    capsys.readouterr()
    assert main(["--store", str(store_dir), "store", "info"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == str(store_dir)
    text = "\n".join(out)
    assert "events" in text and "2019-06-24T20:53:08.000Z" in text
    assert "size on disk" in text


def test_a_record_twice_in_one_batch_keeps_one_copy_of_its_children(store: Store) -> None:
    example = EXAMPLES / "graph-v1.0-list-provisioning-example2-failure.json"
    ingest_files(store, [example, example])
    assert store.manifest().rows["events"] == 1
    assert len(store.read("steps")) == 3
    assert len(store.read("modified_properties")) == 6
