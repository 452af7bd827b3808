"""Directory audit (group membership changes): live pulls with the real msgraph-sdk, and files."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.errors import BadInput, RemoteError
from ingest.files import ingest_files
from ingest.formats import Source, detect
from ingest.formats.directory_audit import membership_changes_frame
from ingest.graph import GraphSession, PullConfig, build_client
from ingest.graph.audits import WATERMARK_KEY, AuditPull, audit_filter, pull_membership_changes
from ingest.store import Store
from provlens.cli import main
from tests.support.graph_server import (
    DEFAULT_ACCESS,
    Fault,
    GraphFixture,
    membership_audit,
    sync_job,
)

SP = "6f1c1e5a-1111-4b7e-9d2a-0c5a1b2c3d4e"
G1 = "0a1b2c3d-0000-4000-8000-0000000000g1".replace("g", "a")
G2 = "0a1b2c3d-0000-4000-8000-0000000000b2"
OTHER = "0a1b2c3d-0000-4000-8000-0000000000c3"
NOW = pd.Timestamp("2026-11-09T00:00:00Z")
ROLE = "11111111-2222-3333-4444-555555555555"


@pytest.fixture(autouse=True)
def _token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVLENS_GRAPH_TOKEN", "test-token")
    monkeypatch.setenv("PROVLENS_GRAPH_RATE", "1000/1")
    for name in ("PROVLENS_GRAPH_URL", "PROVLENS_GRAPH_DEVICE_CODE", "PROVLENS_STORE"):
        monkeypatch.delenv(name, raising=False)


def fast(**overrides: Any) -> PullConfig:
    cfg = PullConfig(
        rate=(1000, 1.0), top=3, backoff_base_s=0.01, backoff_max_s=0.05, give_up_after_s=5.0
    )
    for k, v in overrides.items():
        setattr(cfg, k, v)
    return cfg


def audits() -> list[dict[str, Any]]:
    """Eight membership changes of G1/G2 and one of an unassigned group, over a week."""
    return [
        membership_audit("a1", "2026-11-02T09:00:00Z", G1, "u1", upn="u1@contoso.example"),
        membership_audit("a2", "2026-11-03T09:00:00Z", G1, "u2", upn="u2@contoso.example"),
        membership_audit("a3", "2026-11-03T10:00:00Z", G2, "u3", upn="u3@contoso.example"),
        membership_audit("a4", "2026-11-04T09:00:00Z", G1, "u2", added=False),
        membership_audit("a5", "2026-11-05T09:00:00Z", G2, "u4", upn="u4@contoso.example"),
        membership_audit("a6", "2026-11-06T09:00:00Z", G1, "u5", upn="u5@contoso.example"),
        membership_audit("a7", "2026-11-07T09:00:00Z", G1, "u6", upn="u6@contoso.example"),
        membership_audit("a8", "2026-11-08T09:00:00Z", G2, "u7", upn="u7@contoso.example"),
        membership_audit("x1", "2026-11-04T12:00:00Z", OTHER, "u9", upn="u9@contoso.example"),
    ]


@pytest.fixture
def g() -> Iterator[GraphFixture]:
    with GraphFixture() as server:
        server.audits = audits()
        # An unrelated activity in the same log is never asked for.
        other = membership_audit("z1", "2026-11-05T00:00:00Z", G1, "u1")
        other["activityDisplayName"] = "Update group"
        server.audits.append(other)
        yield server


def pull(g: GraphFixture, store: Store, cfg: PullConfig | None = None, **kw: Any) -> AuditPull:
    cfg = cfg or fast()

    async def go() -> AuditPull:
        client, http = build_client(g.root, cfg)
        session = GraphSession(client, cfg, base_url=g.base)
        try:
            return await pull_membership_changes(session, store, now=NOW, **kw)
        finally:
            await http.aclose()

    return asyncio.run(go())


def test_pull_pages_filters_and_keeps_assigned_groups(g: GraphFixture, tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    g.empty_pages = {2}
    result = pull(g, store, since=pd.Timestamp("2026-11-01T00:00:00Z"), groups={G1, G2})
    mc = store.read("membership_changes").sort_values("changed_at")
    assert mc["audit_id"].tolist() == ["a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8"]
    assert mc["change"].tolist() == ["added"] * 3 + ["removed"] + ["added"] * 4
    a4 = mc.set_index("audit_id").loc["a4"]
    assert (a4["group_id"], a4["member_id"], a4["group_name"]) == (G1, "u2", "Group")
    a1 = mc.set_index("audit_id").loc["a1"]
    assert a1["member_upn"] == "u1@contoso.example"
    assert a1["initiated_by"] == "admin@contoso.example"
    assert a1["member_type"] == "user" and a1["result"] == "success"
    assert a1["changed_at"] == pd.Timestamp("2026-11-02T09:00:00Z")
    assert (result.records, result.stored) == (9, 8)  # x1's group is not assigned
    # One paged query per activity, filtered server-side with the operators Graph documents.
    logged = g.requests("/auditLogs/directoryAudits")
    firsts = [r.query["$filter"] for r in logged if "$skiptoken" not in r.query]
    assert len(firsts) == 2
    assert "activityDisplayName eq 'Add member to group'" in firsts[0]
    assert "activityDisplayName eq 'Remove member from group'" in firsts[1]
    assert "activityDateTime ge 2026-11-01T00:00:00Z" in firsts[0]
    assert len(logged) > 4  # $top=3: several pages, the empty second page followed on
    assert store.watermark(WATERMARK_KEY) == NOW


def test_rerun_adds_nothing_and_starts_at_the_watermark_minus_overlap(
    g: GraphFixture, tmp_path: Path
) -> None:
    store = Store(tmp_path / "s")
    pull(g, store, since=pd.Timestamp("2026-11-01T00:00:00Z"), groups={G1, G2})
    g.log.clear()
    again = pull(g, store, since=None, groups={G1, G2})
    assert again.start == NOW - pd.Timedelta(hours=2)
    assert store.info()["rows"]["membership_changes"] == 8
    assert all("activityDateTime ge 2026-11-08T22:00:00Z" in r.query["$filter"] for r in g.log)


def test_groups_default_to_the_stored_assignments_and_none_means_no_request(
    g: GraphFixture, tmp_path: Path
) -> None:
    store = Store(tmp_path / "s")
    nothing = pull(g, store, since=pd.Timestamp("2026-11-01T00:00:00Z"))
    assert (nothing.groups, nothing.pages) == (0, 0) and not g.log
    a = pd.DataFrame([{"service_principal_id": SP, "principal_id": G2, "principal_type": "group"}])
    with store.batch(source="test") as b:
        b.add({"assignments": a})
    pull(g, store, since=pd.Timestamp("2026-11-01T00:00:00Z"))
    assert sorted(store.read("membership_changes")["audit_id"]) == ["a3", "a5", "a8"]


def test_throttled_and_failing_pages_are_retried(g: GraphFixture, tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    g.script(
        Fault("status", status=429, retry_after="1", match="/auditLogs/directoryAudits"),
        Fault("status", status=503, match="Remove member"),
    )
    pull(g, store, since=pd.Timestamp("2026-11-01T00:00:00Z"), groups={G1, G2})
    assert store.info()["rows"]["membership_changes"] == 8
    assert g.count(429, "directoryAudits") == 1 and g.count(503, "directoryAudits") == 1


def test_a_malformed_record_stores_nothing_and_keeps_the_watermark(
    g: GraphFixture, tmp_path: Path
) -> None:
    store = Store(tmp_path / "s")
    pull(g, store, since=pd.Timestamp("2026-11-01T00:00:00Z"), groups={G1, G2})
    bad = membership_audit("b1", "2026-11-08T23:00:00Z", G1, "u8")
    bad["targetResources"][0]["modifiedProperties"] = []
    bad["targetResources"] = bad["targetResources"][:1]
    g.audits.append(bad)
    with pytest.raises(RemoteError, match="no membership change was stored"):
        pull(g, store, since=None, groups={G1, G2})
    assert store.info()["rows"]["membership_changes"] == 8
    assert store.watermark(WATERMARK_KEY) == NOW


def test_ingest_graph_reads_the_audit_of_the_assigned_groups(
    g: GraphFixture, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    g.service_principals[SP] = "TheOrgWiki"
    g.jobs[SP] = [sync_job("scim.aaaa.bbbb")]
    g.add_user("u1", "u1@contoso.example")
    g.add_group(G1, "wiki users", ["u1"])
    g.assign(SP, G1, ROLE)
    g.assign(SP, "u1", DEFAULT_ACCESS)
    store = tmp_path / "store"
    argv = ["--store", str(store), "--now", "2026-11-09T00:00:00Z", "ingest", "graph"]
    code = main([*argv, "--graph-url", g.root, "--service-principal-id", SP, "--days", "8"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "directory audit: 5 membership changes of 1 assigned groups" in out
    mc = Store(store).read("membership_changes")
    assert sorted(mc["audit_id"]) == ["a1", "a2", "a4", "a6", "a7"]
    # group_members rows carry the snapshot's capture time as their first sighting.
    gm = Store(store).read("group_members")
    assert gm["first_seen_at"].tolist() == [pd.Timestamp("2026-11-09T00:00:00Z")]


def test_ingest_graph_denied_audit_exits_4_naming_the_permission(
    g: GraphFixture, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    g.service_principals[SP] = "TheOrgWiki"
    g.jobs[SP] = [sync_job("scim.aaaa.bbbb")]
    g.add_user("u1", "u1@contoso.example")
    g.add_group(G1, "wiki users", ["u1"])
    g.assign(SP, G1, ROLE)
    g.denied["/directoryAudits"] = ""
    argv = ["--store", str(tmp_path / "s"), "--now", "2026-11-09T00:00:00Z", "ingest", "graph"]
    code = main([*argv, "--graph-url", g.root, "--service-principal-id", SP])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 4
    assert len(err) == 1 and "AuditLog.Read.All" in err[0] and "directoryAudits" in err[0]


# --- files -------------------------------------------------------------------------------------


def _write(path: Path, doc: Any) -> Path:
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def test_file_list_response_detected_by_content_and_ingested_once(tmp_path: Path) -> None:
    ctx = "https://graph.microsoft.com/v1.0/$metadata#auditLogs/directoryAudits"
    f = _write(tmp_path / "audit.json", {"@odata.context": ctx, "value": audits()})
    assert detect(Source(f)).kind == "directory_audit"
    store = Store(tmp_path / "s")
    ingest_files(store, [f])
    ingest_files(store, [f])
    mc = store.read("membership_changes")
    assert len(mc) == 9  # a file keeps every group it lists
    assert set(mc.loc[mc["change"] == "removed", "audit_id"]) == {"a4"}
    # A bare array of records (a portal-style dump) reads the same.
    bare = _write(tmp_path / "bare.json", audits()[:2])
    assert detect(Source(bare)).kind == "directory_audit"


def test_bad_file_is_one_line_and_nothing_is_stored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = _write(tmp_path / "a.json", {"value": audits()[:3]})
    broken = audits()[:2]
    del broken[1]["activityDateTime"]
    bad = _write(tmp_path / "b.json", {"value": broken})
    store = tmp_path / "s"
    code = main(["--store", str(store), "ingest", "file", str(good), str(bad)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 3
    assert len(err) == 1 and "b.json:record 2" in err[0] and "activityDateTime" in err[0]
    assert Store(store).info()["rows"]["membership_changes"] == 0


def test_group_added_to_a_group_and_remove_value_in_old_value() -> None:
    rec = membership_audit("n1", "2026-11-02T09:00:00Z", G1, G2, added=False)
    rec["targetResources"][0]["type"] = "Group"
    frame = membership_changes_frame([rec])
    row = frame.iloc[0]
    assert (row["member_id"], row["group_id"], row["member_type"], row["change"]) == (
        G2,
        G1,
        "group",
        "removed",
    )


def test_audit_filter_escapes_quotes() -> None:
    a, b = pd.Timestamp("2026-11-01T00:00:00Z"), NOW
    assert audit_filter("O'Brien", a, b).endswith("activityDisplayName eq 'O''Brien'")


@settings(max_examples=60, deadline=None)
@given(
    records=st.lists(
        st.fixed_dictionaries(
            {
                "id": st.text(min_size=1, max_size=8),
                "activityDisplayName": st.sampled_from(
                    ["Add member to group", "remove MEMBER from group", "Update user", ""]
                ),
                "activityDateTime": st.datetimes(
                    min_value=pd.Timestamp("2020-01-01").to_pydatetime(),
                    max_value=pd.Timestamp("2030-01-01").to_pydatetime(),
                ).map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%S.%fZ")),
                "targetResources": st.lists(
                    st.fixed_dictionaries(
                        {
                            "id": st.one_of(st.none(), st.text(max_size=6)),
                            "type": st.sampled_from(["User", "Group", "Device", None]),
                            "modifiedProperties": st.lists(
                                st.fixed_dictionaries(
                                    {
                                        "displayName": st.sampled_from(
                                            ["Group.ObjectID", "Group.DisplayName", "X"]
                                        ),
                                        "newValue": st.one_of(
                                            st.none(), st.text(max_size=8).map(json.dumps)
                                        ),
                                        "oldValue": st.one_of(st.none(), st.text(max_size=8)),
                                    }
                                ),
                                max_size=3,
                            ),
                        }
                    ),
                    max_size=3,
                ),
            }
        ),
        max_size=6,
    )
)
def test_parser_property_rows_or_one_bad_input(records: list[dict[str, Any]]) -> None:
    try:
        frame = membership_changes_frame(records)
    except BadInput as exc:
        assert "record" in str(exc)
        return
    wanted = [
        r
        for r in records
        if r["activityDisplayName"].lower() in ("add member to group", "remove member from group")
    ]
    assert len(frame) == len(wanted)
    assert frame["change"].isin(["added", "removed"]).all()
    assert frame["group_id"].notna().all() and frame["member_id"].notna().all()
