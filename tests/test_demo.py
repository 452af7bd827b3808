"""The demo simulator: reproducibility, and its invariants checked on the ingested frames."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from itertools import pairwise
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest

from demo import Scenario, generate
from demo.run import build, demo_store_path
from demo.scenario import DOCS_MAX_MINUTES_PER_OBJECT, DOCS_MIN_MINUTES_PER_OBJECT
from ingest.store import Store

END = "2026-11-20T10:00:00Z"
WINDOW_S = 120  # DESIGN.md correlation: a request belongs to an event within ±120 s


def _digests(directory: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.iterdir())
        if p.is_file()
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict[str, pd.DataFrame]]:
    """A small quarantined demo, built and ingested once for the invariant tests."""
    root = tmp_path_factory.mktemp("demo")
    sc = Scenario(users=300, seed=11, days=7, end=END, quarantine=True)
    result = build(sc, root / "store")
    store = Store(root / "store")
    tables = (
        "events",
        "steps",
        "modified_properties",
        "sync_jobs",
        "assignments",
        "group_members",
        "scim_resources",
        "scim_requests",
    )
    frames = {t: store.read(t) for t in tables}
    return result.truth, frames


def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    sc = Scenario(users=250, seed=3, days=3, end=END, quarantine=True)
    generate(sc, tmp_path / "a")
    generate(sc, tmp_path / "b")
    a, b = _digests(tmp_path / "a"), _digests(tmp_path / "b")
    assert len(a) > 10
    assert a == b


def test_different_seeds_differ(tmp_path: Path) -> None:
    generate(Scenario(users=250, seed=3, days=3, end=END), tmp_path / "a")
    generate(Scenario(users=250, seed=4, days=3, end=END), tmp_path / "b")
    a, b = _digests(tmp_path / "a"), _digests(tmp_path / "b")
    assert a["wiki-scim-audit.jsonl"] != b["wiki-scim-audit.jsonl"]
    assert a["provisioning-00001.json"] != b["provisioning-00001.json"]


def test_end_time_moves_every_timestamp(tmp_path: Path) -> None:
    t1 = generate(Scenario(users=200, seed=5, days=2, end=END), tmp_path / "a")
    t2 = generate(Scenario(users=200, seed=5, days=2, end="2026-11-21T10:00:00Z"), tmp_path / "b")
    assert t1["window"]["end"].startswith("2026-11-20T10:00:00")
    assert t2["window"]["end"].startswith("2026-11-21T10:00:00")
    s1 = pd.Timestamp(t1["initial_cycle"]["started_at"])
    s2 = pd.Timestamp(t2["initial_cycle"]["started_at"])
    assert s2 - s1 == pd.Timedelta(days=1)


def test_pages_are_graph_list_responses_of_at_most_1000(tmp_path: Path) -> None:
    truth = generate(Scenario(users=2500, seed=1, days=2, end=END), tmp_path)
    pages = sorted(tmp_path.glob("provisioning-*.json"))
    assert len(pages) >= 3
    total = 0
    for i, p in enumerate(pages):
        doc = orjson.loads(p.read_bytes())
        assert doc["@odata.context"].endswith("$metadata#auditLogs/provisioning")
        assert 0 < len(doc["value"]) <= 1000
        total += len(doc["value"])
        last = i == len(pages) - 1
        assert ("@odata.nextLink" in doc) is not last
        if not last:
            assert "$skiptoken=" in doc["@odata.nextLink"]
        rec = doc["value"][0]
        assert rec["servicePrincipal"]["displayName"] == "TheOrgWiki"
        assert rec["initiatedBy"] == {
            "id": "",
            "displayName": "Azure AD Provisioning Service",
            "initiatorType": "system",
        }
        assert 2 <= len(rec["provisioningSteps"]) <= 6
    assert total == truth["events"]["total"]


def test_every_cycle_lies_within_its_bounds_and_cycles_do_not_overlap(built) -> None:
    truth, f = built
    ev = f["events"]
    assert len(ev) == truth["events"]["total"]
    assert ev["job_id"].nunique() == 1
    assert ev["service_principal_id"].unique().tolist() == [truth["tenant"]["service_principal_id"]]
    assert set(ev["origin"]) == {"demo"}
    bounds = {c["cycle_id"]: c for c in truth["cycles"]}
    assert set(ev["cycle_id"]) == set(bounds)
    g = ev.groupby("cycle_id")["activity_at"].agg(["min", "max", "size"])
    for cid, row in g.iterrows():
        c = bounds[cid]
        start, end = pd.Timestamp(c["started_at"]), pd.Timestamp(c["ended_at"])
        assert row["min"] >= start.floor("us") and row["max"] <= end.ceil("us")
        assert row["size"] == c["events"]
    ordered = g.sort_values("min")
    assert (ordered["min"].iloc[1:].to_numpy() > ordered["max"].iloc[:-1].to_numpy()).all()
    assert truth["cycles"][0]["kind"] == "initial"
    assert len(truth["cycles"]) > 20  # incremental cycles about every 40 minutes


def test_initial_cycle_follows_the_documented_rate(built) -> None:
    truth, f = built
    ev = f["events"]
    ini = truth["initial_cycle"]
    cyc = ev[ev["cycle_id"] == ini["cycle_id"]]
    minutes = (cyc["activity_at"].max() - cyc["activity_at"].min()).total_seconds() / 60
    in_scope = ini["objects_in_scope"]
    assert (
        DOCS_MIN_MINUTES_PER_OBJECT * in_scope <= minutes <= DOCS_MAX_MINUTES_PER_OBJECT * in_scope
    )
    observed = cyc["source_id"].nunique() / minutes
    assert observed == pytest.approx(truth["rate"]["objects_per_min"], rel=0.10)
    # Incremental cycles follow about every 40 minutes after it.
    starts = sorted(pd.Timestamp(c["started_at"]) for c in truth["cycles"][1:])
    assert starts[0] - pd.Timestamp(ini["ended_at"]) >= pd.Timedelta(minutes=2)


def _event_index(ev: pd.DataFrame) -> dict[str, np.ndarray]:
    idx: dict[str, list[int]] = defaultdict(list)
    secs = (ev["activity_at"].astype("int64") // 1_000_000).to_numpy()
    cols = {
        "target_id": ev["target_id"].to_numpy(),
        "source_id": ev["source_id"].to_numpy(),
        "source_upn": ev["source_upn"].str.lower().to_numpy(),
    }
    for i, s in enumerate(secs):
        for name, values in cols.items():
            v = values[i]
            if isinstance(v, str) and v:
                idx[f"{name}:{v}"].append(int(s))
    return {k: np.sort(np.array(v)) for k, v in idx.items()}


def test_every_wiki_request_maps_to_an_event_except_injected(built) -> None:
    truth, f = built
    ev, rq = f["events"], f["scim_requests"]
    assert len(rq) == truth["wiki"]["requests"]
    index = _event_index(ev)
    secs = (rq["received_at"].astype("int64") // 1_000_000).to_numpy()
    unexplained = []
    for i, row in enumerate(rq.itertuples(index=False)):
        keys = []
        if isinstance(row.resource_id, str):
            keys.append(f"target_id:{row.resource_id}")
        if isinstance(row.external_id, str):
            keys.append(f"source_id:{row.external_id}")
        if isinstance(row.user_name, str):
            keys.append(f"source_upn:{row.user_name.lower()}")
        ok = False
        for k in keys:
            times = index.get(k)
            if times is None:
                continue
            j = np.searchsorted(times, secs[i])
            near = [times[x] for x in (j - 1, j) if 0 <= x < len(times)]
            if any(abs(t - secs[i]) <= WINDOW_S for t in near):
                ok = True
                break
        if not ok:
            unexplained.append(row.request_id)
    assert sorted(unexplained) == sorted(truth["wiki"]["wiki_only_request_ids"])
    assert len(unexplained) >= 2  # the portal's Test Connection and the orphan's creation


def test_failure_counts_match_the_scenario(built) -> None:
    truth, f = built
    ev, rq = f["events"], f["scim_requests"]
    fail = ev[ev["status"] == "failure"]
    got = fail.groupby("error_code")["source_id"].agg(["size", "nunique"])
    expected = {v["error_code"]: v for v in truth["failures"].values() if v["events"]}
    assert set(got.index) == set(expected)
    for code, v in expected.items():
        assert got.loc[code, "size"] == v["events"], code
        assert got.loc[code, "nunique"] == v["objects"], code
    planned = truth["scenario"]["failure_counts"]
    assert truth["failures"]["conflict"]["objects"] == planned["conflict"]
    assert truth["failures"]["mandatory_missing"]["objects"] == planned["mandatory_missing"]
    assert truth["failures"]["throttled"]["objects"] >= planned["throttled"]
    assert truth["failures"]["server_error"]["objects"] >= planned["server_error"]
    assert truth["failures"]["unauthorized"]["events"] > 0  # the quarantine episode
    # Escrowed objects are retried across cycles.
    conflict = fail[fail["error_code"] == "TheOrgWikiEntryConflict"]
    assert conflict.groupby("source_id")["cycle_id"].nunique().max() >= 3
    # The wiki saw one rejected request per failed attempt that reached it.
    status = rq["status_code"].value_counts()
    assert status.get(409, 0) == truth["failures"]["conflict"]["events"]
    assert status.get(429, 0) == truth["failures"]["throttled"]["events"]
    assert status.get(500, 0) == truth["failures"]["server_error"]["events"]
    assert status.get(401, 0) == truth["failures"]["unauthorized"]["events"]
    assert set(rq.loc[rq["status_code"] == 409, "scim_type"]) == {"uniqueness"}
    cat = fail.groupby("error_code")["error_category"].first()
    assert cat["TheOrgWikiEntryConflict"] == "non_service_failure"
    assert cat["TheOrgWikiTooManyRequests"] == "failure"
    # Transient failures succeed on a later retry.
    transient = fail[
        fail["error_code"].isin(["TheOrgWikiTooManyRequests", "TheOrgWikiInternalServerError"])
    ]
    later = ev[ev["source_id"].isin(transient["source_id"]) & (ev["status"] == "success")]
    assert set(later["source_id"]) == set(transient["source_id"])


def test_skips_and_noise_match_the_scenario(built) -> None:
    truth, f = built
    ev, mp = f["events"], f["modified_properties"]
    skipped = ev[ev["status"] == "skipped"]
    assert (skipped["skip_reason"] == "NotEffectivelyEntitled").all()
    assert len(skipped) == truth["noise"]["skip_events"]
    assert len(skipped) == sum(v["events"] for v in truth["skips"].values())
    updates = ev.loc[ev["action"] == "update", "id"]
    names = mp[mp["event_id"].isin(updates)].groupby("event_id")["name"].agg(set)
    noop = names[names.map(lambda s: s == {"accountDisabled"})]
    assert len(noop) == truth["noise"]["noop_update_events"] > 0
    movers = mp[mp["event_id"].isin(updates) & mp["old_value"].notna()]
    assert len(movers) > 0  # movers carry old -> new values
    assert (movers["old_value"] != movers["new_value"]).all()


def test_wiki_state_agrees_with_entra_except_injected(built) -> None:
    truth, f = built
    ev, res = f["events"], f["scim_resources"]
    users = res[res["resource_type"] == "User"]
    assert len(users) == truth["wiki"]["users"]
    by_ext = users.dropna(subset=["external_id"]).set_index("external_id")
    user_ev = ev[(ev["source_type"] == "user") & (ev["status"] == "success")]
    last = user_ev.sort_values("activity_at").groupby("source_id").tail(1)
    entra_only = set(truth["wiki"]["entra_only_user_ids"])
    for row in last.itertuples(index=False):
        if row.source_id in entra_only:
            assert row.source_id not in by_ext.index
            continue
        if row.action == "delete":
            assert row.source_id not in by_ext.index
        else:
            assert row.source_id in by_ext.index, row.source_upn
            assert bool(by_ext.loc[row.source_id, "active"]) is (row.action != "disable")
            assert by_ext.loc[row.source_id, "id"] == row.target_id
    # Orphans: in the wiki, unknown to Entra.
    orphans = users[users["id"].isin(truth["wiki"]["orphan_user_ids"])]
    assert len(orphans) == truth["scenario"]["wiki_orphans"]
    assert orphans["external_id"].isna().all()
    upns = set(ev["source_upn"].dropna().str.lower())
    assert not set(orphans["user_name"].str.lower()) & upns
    # Each disable was a PATCH setting active to "False" (Entra's default string form).
    rq = f["scim_requests"]
    disables = ev[(ev["action"] == "disable") & (ev["status"] == "success")]
    off = rq[(rq["operation"] == "patch") & (rq["active_set"] == False)]  # noqa: E712
    assert len(off) == len(disables) > 0
    assert set(off["resource_id"]) == set(disables["target_id"])
    deletes = ev[(ev["action"] == "delete") & (ev["status"] == "success")]
    assert set(rq.loc[rq["method"] == "DELETE", "resource_id"]) == set(deletes["target_id"])
    # The user Entra claims to have created never reached the wiki.
    assert entra_only and entra_only <= set(ev.loc[ev["action"] == "create", "source_id"])


def test_scope_and_job_snapshot(built) -> None:
    truth, f = built
    jobs, asg, gm = f["sync_jobs"], f["assignments"], f["group_members"]
    assert len(jobs) == 2
    final = jobs.sort_values("captured_at").iloc[-1]
    assert final["status_code"] == "Active"
    assert final["schedule_interval_s"] == 40 * 60
    assert final["job_id"] == truth["tenant"]["job_id"]
    assert final["job_id"].startswith("scim.")
    assert final["steady_state_first_at"] == pd.Timestamp(truth["initial_cycle"]["ended_at"]).floor(
        "us"
    )
    q = jobs.sort_values("captured_at").iloc[0]
    assert q["status_code"] == "Quarantine"
    assert q["quarantine_reason"] == "EncounteredQuarantineException"
    assert asg["default_access"].any() and (~asg["default_access"]).any()
    assert set(asg["principal_type"]) == {"user", "group"}
    assert (gm["member_type"] == "group").any()  # nested groups are listed
    assert gm["member_upn"].dropna().str.endswith("@contoso.example").all()


def test_tricky_display_names_are_present(built) -> None:
    _truth, f = built
    names = set(f["events"]["source_name"].dropna())
    assert any("<img src=x onerror=alert(1)>" in n and "**bold**" in n for n in names)
    assert any(n.startswith("=") for n in names)


def test_scenario_json_is_written_beside_the_raw_files(built, tmp_path: Path) -> None:
    truth, _f = built
    assert truth["label"].startswith("Contoso (demo)")
    assert truth["tenant"]["tenant_name"] == "Contoso (demo)"
    truth2 = generate(Scenario(users=200, seed=2, days=2, end=END), tmp_path)
    on_disk = json.loads((tmp_path / "scenario.json").read_text())
    assert on_disk["events"] == truth2["events"]
    assert set(on_disk["files"]) | {"scenario.json"} == {p.name for p in tmp_path.iterdir()}


def test_demo_store_is_not_the_default_store(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("PROVLENS_STORE", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert demo_store_path() != Store.default_path()
    assert demo_store_path().name == "demo-store"


def test_audit_log_is_in_time_order_and_shaped_like_design(tmp_path: Path) -> None:
    truth = generate(Scenario(users=400, seed=8, days=3, end=END, quarantine=True), tmp_path)
    lines = (tmp_path / "wiki-scim-audit.jsonl").read_bytes().splitlines()
    records = [orjson.loads(line) for line in lines]
    assert len(records) == truth["wiki"]["requests"]
    times = [r["time"] for r in records]
    assert times == sorted(times)
    keys = ["time", "request_id", "method", "path", "status", "latency_ms", "client"]
    assert all(list(r)[:7] == keys for r in records)
    assert len({r["request_id"] for r in records}) == len(records)
    methods = {r["method"] for r in records}
    assert methods == {"GET", "POST", "PATCH", "DELETE"}
    filters = [r for r in records if "?filter=userName%20eq%20" in r["path"]]
    answered = [r for r in filters if r["status"] == 200]
    assert answered and all(r["response"]["totalResults"] == 0 for r in answered)
    assert {r["status"] for r in filters} == {200, 401}  # 401 while the token was bad
    disables = [
        r
        for r in records
        if r["method"] == "PATCH"
        and r["request"]["Operations"] == [{"op": "Replace", "path": "active", "value": "False"}]
    ]
    assert disables and all(r["response"]["active"] is False for r in disables)


@pytest.mark.parametrize(
    ("users", "groups", "seed", "days", "quarantine"),
    [
        (120, 5, 1, 2, False),
        (900, None, 2, 7, True),
        (1500, 40, 3, 4, False),
        (600, 12, 4, 1, True),
    ],
)
def test_raw_invariants_hold_across_sizes(
    tmp_path: Path, users: int, groups: int | None, seed: int, days: int, quarantine: bool
) -> None:
    sc = Scenario(users=users, groups=groups, seed=seed, days=days, end=END, quarantine=quarantine)
    truth = generate(sc, tmp_path)
    start, end = pd.Timestamp(truth["window"]["start"]), pd.Timestamp(truth["window"]["end"])
    events = [
        rec
        for p in sorted(tmp_path.glob("provisioning-*.json"))
        for rec in orjson.loads(p.read_bytes())["value"]
    ]
    assert len(events) == truth["events"]["total"]
    assert len({e["id"] for e in events}) == len(events)
    by_cycle: dict[str, list[pd.Timestamp]] = defaultdict(list)
    codes: dict[str, int] = defaultdict(int)
    for e in events:
        by_cycle[e["cycleId"]].append(pd.Timestamp(e["activityDateTime"]))
        info = e["provisioningStatusInfo"]
        assert (info["errorInformation"] is not None) == (info["status"] == "failure")
        if info["errorInformation"]:
            codes[info["errorInformation"]["errorCode"]] += 1
    spans = sorted((min(v), max(v)) for v in by_cycle.values())
    assert start <= spans[0][0] and spans[-1][1] <= end
    assert all(a[1] < b[0] for a, b in pairwise(spans))
    ini = truth["initial_cycle"]
    assert (
        DOCS_MIN_MINUTES_PER_OBJECT * ini["objects_in_scope"]
        <= ini["minutes"]
        <= DOCS_MAX_MINUTES_PER_OBJECT * ini["objects_in_scope"]
    )
    expected = {v["error_code"]: v["events"] for v in truth["failures"].values() if v["events"]}
    assert dict(codes) == expected
    planned = sc.failure_counts()
    assert truth["failures"]["conflict"]["objects"] == planned["conflict"]
    assert truth["failures"]["mandatory_missing"]["objects"] == planned["mandatory_missing"]
    assert truth["changes"]["unassigned"] > 0 and truth["changes"]["deleted"] > 0
    assert (truth["failures"]["unauthorized"]["events"] > 0) is quarantine
    assert ("quarantine" in truth) is quarantine
    audit = (tmp_path / "wiki-scim-audit.jsonl").read_bytes().splitlines()
    first, last = orjson.loads(audit[0])["time"], orjson.loads(audit[-1])["time"]
    assert start <= pd.Timestamp(first) and pd.Timestamp(last) <= end


def test_identical_across_processes_and_hash_seeds(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    code = (
        "import sys; from pathlib import Path; from demo import Scenario, generate; "
        "generate(Scenario(users=300, seed=21, days=2, end=sys.argv[2], quarantine=True), "
        "Path(sys.argv[1]))"
    )
    for name, hash_seed in (("a", "1"), ("b", "2")):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        subprocess.run(
            [sys.executable, "-c", code, str(tmp_path / name), END],
            check=True,
            env=env,
            cwd=Path(__file__).resolve().parent.parent,
        )
    assert _digests(tmp_path / "a") == _digests(tmp_path / "b")


def test_reports_agree_with_the_ground_truth(built) -> None:
    from collections import Counter

    from reports import Inputs, run_report

    truth, f = built
    inputs = Inputs(**f)
    expected = truth["expected_reports"]
    assert "other" not in expected["correlation_verdicts"]
    corr = run_report("correlation", inputs, include_noise=True).frame
    assert dict(Counter(corr["verdict"])) == expected["correlation_verdicts"]
    cov = run_report("coverage", inputs).frame
    assert dict(Counter(cov["verdict"])) == expected["coverage_verdicts"]
    assert expected["coverage_verdicts"]["orphaned"] == truth["scenario"]["wiki_orphans"]
    assert expected["coverage_verdicts"]["missing_in_wiki"] == truth["scenario"]["wiki_missing"]


def test_stored_membership_of_nested_group_members_is_not_direct(built) -> None:
    _truth, f = built
    gm = f["group_members"]
    nested = set(gm.loc[gm["member_type"] == "group", "member_id"])
    assert nested
    via_nested = set(gm.loc[gm["group_id"].isin(nested), "member_id"])
    parents = gm[~gm["group_id"].isin(nested) & gm["member_id"].isin(via_nested)]
    parents = parents[parents["group_id"].isin(gm.loc[gm["member_id"].isin(nested), "group_id"])]
    assert len(parents) > 0
    assert not parents["direct"].any()
