"""Graph object parsers (sync jobs, assignments, members) and their file formats."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.errors import BadInput
from ingest.files import ingest_files
from ingest.formats import Options, Source, detect
from ingest.formats.graph_objects import (
    assignments_frame,
    direct_flags,
    duration_seconds,
    group_members_frame,
    sync_jobs_frame,
)
from ingest.membership import derive_direct
from ingest.schema import validate
from ingest.store import Store

EXAMPLES = Path(__file__).parent / "data" / "examples"
SP = "6f1c1e5a-1111-4b7e-9d2a-0c5a1b2c3d4e"
GROUP = "0b8a4c11-2222-4b7e-9d2a-0c5a1b2c3d4e"
NESTED = "9c7d2e33-3333-4b7e-9d2a-0c5a1b2c3d4e"
AT = pd.Timestamp("2026-11-20T10:00:00Z")


def _example(name: str) -> dict:
    return json.loads((EXAMPLES / name).read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        ("PT40M", 2400),
        ("PT2M", 120),
        ("PT20M", 1200),
        ("P1DT1H", 90000),
        ("PT1.5S", 1),
        ("P10675199DT2H48M5.4775807S", None),  # TimeSpan.MaxValue: paused, never runs
        ("", None),
        (None, None),
        ("P1Y", None),  # years have no fixed length: unreadable, not guessed
    ],
)
def test_duration_seconds(raw: str | None, seconds: int | None) -> None:
    assert duration_seconds(raw) == seconds


def test_paused_job_sentinels_become_null() -> None:
    df = sync_jobs_frame([_example("graph-v1.0-get-synchronizationjob.json")], SP, AT)
    row = df.iloc[0]
    assert row["job_id"] == "{jobId}"
    assert row["status_code"] == "Paused"
    assert row["schedule_state"] == "Disabled"
    assert pd.isna(row["schedule_interval_s"])  # "never", not an overflow
    assert pd.isna(row["steady_state_first_at"]) and pd.isna(row["steady_state_last_at"])
    # a paused job's quarantine block has empty strings but a real series count
    assert pd.isna(row["quarantine_reason"]) and pd.isna(row["quarantine_began"])
    assert row["quarantine_series_count"] == 2
    assert str(df["captured_at"].dtype) == "datetime64[us, UTC]"


def test_active_and_quarantined_jobs() -> None:
    active = sync_jobs_frame([_example("entra-cloudsync-synchronizationjob-active.json")], SP, AT)
    a = active.iloc[0]
    assert a["schedule_interval_s"] == 120
    assert a["last_execution_began"] == pd.Timestamp("2019-11-20T16:15:21.116098Z")
    assert a["steady_state_first_at"] == pd.Timestamp("2019-11-08T15:48:05.736023Z")
    assert a["count_escrowed"] == 15
    quarantined = sync_jobs_frame(
        [_example("graph-beta-legacy-synchronizationjob-quarantined.json")], SP, AT
    ).iloc[0]
    assert quarantined["schedule_interval_s"] == 2400
    assert quarantined["quarantine_reason"] == "EncounteredQuarantineException"
    assert quarantined["quarantine_began"] == pd.Timestamp("2017-07-19T12:35:27.086913Z")
    assert pd.isna(quarantined["quarantine_next_attempt"])  # 0001-01-01 sentinel
    assert quarantined["quarantine_series_count"] == 6
    assert quarantined["last_execution_state"] == "Failed"
    notrun = sync_jobs_frame(
        [_example("entra-cross-tenant-sync-get-synchronizationjob-notrun-beta.json")], SP, AT
    ).iloc[0]
    assert pd.isna(notrun["last_execution_began"]) and pd.isna(notrun["last_execution_ended"])


def _assignment(principal: str, kind: str, role: str) -> dict:
    return {
        "id": "x",
        "appRoleId": role,
        "createdDateTime": "2026-10-01T08:00:00.1234567Z",
        "principalDisplayName": f"name {principal[:4]}",
        "principalId": principal,
        "principalType": kind,
        "resourceId": SP,
    }


def test_assignments_mark_default_access() -> None:
    df = assignments_frame(
        [
            _assignment(GROUP, "Group", "11111111-2222-3333-4444-555555555555"),
            _assignment(NESTED, "User", "00000000-0000-0000-0000-000000000000"),
            _assignment("u3", "ServicePrincipal", "11111111-2222-3333-4444-555555555555"),
        ]
    )
    assert df["service_principal_id"].tolist() == [SP] * 3
    assert df["principal_type"].tolist() == ["group", "user", "other"]
    assert df["default_access"].tolist() == [False, True, False]
    assert df["created_at"].iloc[0] == pd.Timestamp("2026-10-01T08:00:00.123456Z")


def _user(uid: str) -> dict:
    return {
        "@odata.type": "#microsoft.graph.user",
        "id": uid,
        "displayName": uid,
        "userPrincipalName": f"{uid}@contoso.example",
    }


def _group(gid: str) -> dict:
    return {"@odata.type": "#microsoft.graph.group", "id": gid, "displayName": gid}


def test_nested_membership_from_the_direct_list() -> None:
    transitive = [_user("u1"), _group(NESTED), _user("u3"), _user("u1")]
    df = group_members_frame(GROUP, transitive, {GROUP: {"u1", NESTED}})
    got = dict(zip(df["member_id"], df["direct"]))
    assert got == {"u1": True, NESTED: True, "u3": False}
    assert df.loc[df["member_id"] == "u3", "member_upn"].item() == "u3@contoso.example"
    assert df.loc[df["member_id"] == NESTED, "member_type"].item() == "group"


def test_nested_membership_from_a_nested_groups_list() -> None:
    # Without the group's own list, a member is nested when a known nested group holds it.
    transitive = [_user("u1"), _group(NESTED), _user("u3")]
    assert direct_flags(GROUP, transitive, {NESTED: {"u3"}}) == {
        "u1": True,
        NESTED: True,
        "u3": False,
    }
    # Nothing known beyond the list: everyone counts as direct.
    assert set(direct_flags(GROUP, transitive, {}).values()) == {True}


def _write(tmp_path: Path, name: str, doc: object) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def test_jobs_list_takes_the_service_principal_from_odata_context(tmp_path: Path) -> None:
    doc = _example("graph-v1.0-list-synchronizationjobs.json")
    doc["@odata.context"] = (
        f"https://graph.microsoft.com/v1.0/$metadata#servicePrincipals('{SP}')/synchronization/jobs"
    )
    src = Source(_write(tmp_path, "jobs.json", doc))
    fmt = detect(src)
    assert fmt.kind == "sync_jobs"
    frames = list(fmt.parse(src, Options(captured_at=AT)))
    df = frames[0]["sync_jobs"]
    assert df["service_principal_id"].tolist() == [SP]
    assert df["captured_at"].tolist() == [AT]


def test_single_job_takes_the_id_from_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / f"jobs-{SP}.json"
    shutil.copy(EXAMPLES / "graph-beta-legacy-synchronizationjob-quarantined.json", path)
    src = Source(path)
    fmt = detect(src)
    assert fmt.kind == "sync_jobs"
    df = next(iter(fmt.parse(src, Options())))["sync_jobs"]
    assert df["service_principal_id"].tolist() == [SP]
    assert df["quarantine_series_count"].tolist() == [6]


def test_job_with_a_broken_time_is_bad_input(tmp_path: Path) -> None:
    doc = _example("graph-beta-legacy-synchronizationjob-quarantined.json")
    doc["status"]["lastExecution"]["timeBegan"] = "yesterday"
    src = Source(_write(tmp_path, f"jobs-{SP}.json", doc))
    with pytest.raises(
        BadInput, match=r"jobs-.*\.json:1: a synchronization job has a value that is not an ISO"
    ):
        list(detect(src).parse(src, Options()))


def test_job_without_any_service_principal_is_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "job.json"
    shutil.copy(EXAMPLES / "graph-v1.0-get-synchronizationjob.json", path)
    src = Source(path)
    with pytest.raises(BadInput) as err:
        list(detect(src).parse(src, Options()))
    assert str(path) in str(err.value)
    assert "--service-principal-id" in str(err.value)
    # the option supplies it
    df = next(iter(detect(src).parse(src, Options(service_principal_id=SP))))["sync_jobs"]
    assert df["service_principal_id"].tolist() == [SP]


def test_assignments_and_members_files(tmp_path: Path) -> None:
    assigned = _write(
        tmp_path,
        "assigned.json",
        {
            "@odata.context": f"https://graph.microsoft.com/v1.0/$metadata#servicePrincipals('{SP}')"
            "/appRoleAssignedTo",
            "value": [_assignment(GROUP, "Group", "00000000-0000-0000-0000-000000000000")],
        },
    )
    src = Source(assigned)
    fmt = detect(src)
    assert fmt.kind == "assignments"
    df = next(iter(fmt.parse(src, Options())))["assignments"]
    assert df["default_access"].tolist() == [True]

    members = _write(
        tmp_path,
        f"members-{GROUP}.json",
        {
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#directoryObjects",
            "value": [_user("u1"), _group(NESTED)],
        },
    )
    src = Source(members)
    fmt = detect(src)
    assert fmt.kind == "group_members"
    df = next(iter(fmt.parse(src, Options())))["group_members"]
    assert df["group_id"].tolist() == [GROUP, GROUP]
    assert df["member_type"].tolist() == ["user", "group"]

    anonymous = _write(tmp_path, "members.json", {"value": [_user("u1")]})
    src = Source(anonymous)
    with pytest.raises(BadInput, match="--group-id"):
        list(detect(src).parse(src, Options()))


def test_provisioning_list_is_not_taken_for_a_graph_object() -> None:
    src = Source(EXAMPLES / "graph-v1.0-list-provisioning-example1-success.json")
    assert detect(src).kind not in ("sync_jobs", "assignments", "group_members")


def test_file_ingest_replaces_a_groups_members(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    first = _write(tmp_path, f"members-{GROUP}.json", {"value": [_user("u1"), _user("u2")]})
    ingest_files(store, [first])
    second = tmp_path / "again" / f"members-{GROUP}.json"
    second.parent.mkdir()
    second.write_text(json.dumps({"value": [_user("u2")]}), encoding="utf-8")
    ingest_files(store, [second])
    assert store.read("group_members")["member_id"].tolist() == ["u2"]


@settings(max_examples=60, deadline=None)
@given(
    days=st.integers(0, 9_999_999),
    hours=st.integers(0, 23),
    minutes=st.integers(0, 59),
    seconds=st.integers(0, 59),
)
def test_duration_seconds_property(days: int, hours: int, minutes: int, seconds: int) -> None:
    text = f"P{days}DT{hours}H{minutes}M{seconds}S"
    assert duration_seconds(text) == days * 86400 + hours * 3600 + minutes * 60 + seconds


_scalar = st.one_of(
    st.none(),
    st.text(max_size=8),
    st.integers(-5, 10**12),
    st.sampled_from(["0001-01-01T00:00:00Z", "2026-11-20T10:15:03.1234567Z", "", "PT40M"]),
)
_job = st.fixed_dictionaries(
    {"id": st.text(min_size=1, max_size=12)},
    optional={
        "templateId": _scalar,
        "schedule": st.one_of(
            st.none(),
            st.fixed_dictionaries(
                {},
                optional={
                    "interval": st.one_of(
                        _scalar, st.sampled_from(["P10675199DT2H48M5.4775807S", "PT2M"])
                    ),
                    "state": _scalar,
                },
            ),
        ),
        "status": st.one_of(
            st.none(),
            st.fixed_dictionaries(
                {},
                optional={
                    "code": _scalar,
                    "steadyStateFirstAchievedTime": _scalar,
                    "lastExecution": st.one_of(
                        st.none(),
                        st.dictionaries(
                            st.sampled_from(["timeBegan", "timeEnded", "countEntitled", "state"]),
                            _scalar,
                        ),
                    ),
                    "quarantine": st.one_of(
                        st.none(),
                        st.dictionaries(
                            st.sampled_from(["currentBegan", "reason", "seriesCount"]), _scalar
                        ),
                    ),
                },
            ),
        ),
    },
)


@settings(max_examples=40, deadline=None)
@given(jobs=st.lists(_job, max_size=4))
def test_sync_jobs_frame_takes_any_job_shape(jobs: list[dict]) -> None:
    """Odd but JSON-valid job payloads become schema-valid rows or a clean error, never garbage."""
    try:
        df = sync_jobs_frame(jobs, SP, AT)
    except ValueError as exc:
        assert "not an ISO 8601 time" in str(exc)  # named, so file ingest can say where
        return
    validate("sync_jobs", df)
    assert len(df) == len(jobs)
    assert df["job_id"].tolist() == [j["id"] for j in jobs]


def test_derive_direct_across_files() -> None:
    """Two transitiveMembers files read alone, then joined: the nested group members are nested."""
    parent = group_members_frame(GROUP, [_user("u1"), _group(NESTED), _user("u3")])
    child = group_members_frame(NESTED, [_user("u3")])
    alone = pd.concat([parent, child], ignore_index=True)
    assert alone["direct"].all()  # each file alone knows nothing about nesting
    got = derive_direct(alone)
    flags = {(r.group_id, r.member_id): r.direct for r in got.itertuples()}
    assert flags == {
        (GROUP, "u1"): True,
        (GROUP, NESTED): True,
        (GROUP, "u3"): False,
        (NESTED, "u3"): True,
    }
    assert alone["direct"].all()  # the input is untouched
    assert derive_direct(parent)["direct"].all()  # without the nested list: unchanged
