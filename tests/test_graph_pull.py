"""Graph pulls with the real msgraph-sdk client against the loopback Graph server."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from ingest.errors import RemoteError
from ingest.graph import (
    GraphSession,
    LogPull,
    PullConfig,
    Stats,
    build_client,
    log_filter,
    pull_logs,
    pull_state,
    time_slices,
)
from ingest.store import Store
from tests.support.graph_server import (
    DEFAULT_ACCESS,
    Fault,
    GraphFixture,
    make_record,
    sync_job,
)

SP = "6f1c1e5a-1111-4b7e-9d2a-0c5a1b2c3d4e"
SP2 = "7a2d2f6b-2222-4c8f-8e3b-1d6b2c3d4e5f"
NOW = pd.Timestamp("2026-11-08T00:00:00Z")
SINCE = pd.Timestamp("2026-11-01T00:00:00Z")
ROLE = "11111111-2222-3333-4444-555555555555"


@pytest.fixture(autouse=True)
def _token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVLENS_GRAPH_TOKEN", "test-token")
    for name in ("PROVLENS_GRAPH_URL", "PROVLENS_GRAPH_RATE", "PROVLENS_GRAPH_DEVICE_CODE"):
        monkeypatch.delenv(name, raising=False)


def fast(**overrides: Any) -> PullConfig:
    """A config with the real logic but test-sized waits."""
    cfg = PullConfig(
        rate=(1000, 1.0),
        top=25,
        backoff_base_s=0.01,
        backoff_max_s=0.05,
        give_up_after_s=5.0,
        timeout_s=5.0,
    )
    for k, v in overrides.items():
        setattr(cfg, k, v)
    return cfg


def pull(
    g: GraphFixture,
    store: Store,
    config: PullConfig | None = None,
    *,
    sp: str | None = None,
    since: pd.Timestamp | None = SINCE,
    now: pd.Timestamp = NOW,
) -> tuple[LogPull, Stats]:
    """Run pull_logs through a real GraphServiceClient; return its result and counters."""
    cfg = config or fast()

    async def main() -> tuple[LogPull, Stats]:
        client, http = build_client(g.root, cfg)
        session = GraphSession(client, cfg, base_url=g.base)
        try:
            return await pull_logs(
                session, store, service_principal_id=sp, since=since, now=now
            ), session.stats
        finally:
            await http.aclose()

    return asyncio.run(main())


def stored_ids(store: Store) -> list[str]:
    return store.read("events", columns=["id"])["id"].tolist()


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store")


@pytest.fixture
def g() -> Iterator[GraphFixture]:
    """A running loopback Graph server (token ``test-token``)."""
    with GraphFixture() as server:
        yield server


def test_pages_filter_and_exact_counts(g: GraphFixture, store: Store) -> None:
    recs = g.seed(120, service_principals=[SP, SP2])
    g.empty_pages = {2, 3}  # Graph may answer empty pages that still link onwards
    result, stats = pull(g, store, fast(slice=pd.Timedelta(days=7)))
    assert result.records == 120
    assert sorted(stored_ids(store)) == sorted(r["id"] for r in recs)
    assert stats.pages == 5 + 2  # 25+25+25+25+20 records and the two empty pages
    assert len(store.read("steps")) == 240
    assert store.watermark("graph:*") == NOW
    first = g.requests("/auditLogs")[0]
    assert first.query["$filter"] == (
        "activityDateTime gt 2026-10-31T23:59:59Z and activityDateTime lt 2026-11-08T00:00:00Z"
    )
    assert first.query["$top"] == "25"
    assert all(r.authorization == "Bearer test-token" for r in g.requests())
    assert all("$skiptoken" in r.query for r in g.requests("/auditLogs")[1:])


def test_service_principal_and_time_filter(g: GraphFixture, store: Store) -> None:
    recs = g.seed(80, service_principals=[SP, SP2])
    since = pd.Timestamp("2026-11-03T00:00:00Z")
    until = pd.Timestamp("2026-11-05T00:00:00Z")
    result, _ = pull(g, store, sp=SP2, since=since, now=until)
    want = {
        r["id"]
        for r in recs
        if r["servicePrincipal"]["id"] == SP2
        and since <= pd.Timestamp(r["activityDateTime"]) < until
    }
    assert 0 < len(want) < 40
    assert set(stored_ids(store)) == want
    assert result.service_principals == {SP2}
    assert store.watermark(f"graph:{SP2}") == until
    assert store.watermark("graph:*") is None
    filters = {r.query["$filter"] for r in g.requests("/auditLogs") if "$skiptoken" not in r.query}
    assert filters == {
        log_filter(a, b, SP2) for a, b in time_slices(since, until, pd.Timedelta(days=1))
    }
    assert all(f.endswith(f"servicePrincipal/id eq '{SP2}'") for f in filters)


def test_rerun_adds_nothing_and_overlap_catches_late_records(g: GraphFixture, store: Store) -> None:
    g.seed(60)
    pull(g, store, fast(default_days=8), since=None, now=NOW)  # first run: default window
    version, rows = store.version, store.info()["rows"]
    assert rows["events"] == 60
    again, _ = pull(g, store, since=None, now=NOW)
    assert again.start == NOW - pd.Timedelta(hours=2)  # watermark minus the overlap
    assert store.info()["rows"] == rows  # nothing added
    # a record that arrives late, stamped an hour before the watermark
    late = make_record(random.Random(1), NOW.to_pydatetime() - pd.Timedelta(hours=1), SP, "wiki")
    g.records.append(late)
    later = NOW + pd.Timedelta(minutes=30)
    pull(g, store, since=None, now=later)
    assert store.info()["rows"]["events"] == 61
    assert late["id"] in stored_ids(store)
    assert store.watermark("graph:*") == later
    assert store.version > version
    # --since re-reads everything and still adds nothing
    pull(g, store, since=SINCE, now=later)
    assert store.info()["rows"]["events"] == 61


def test_429_with_and_without_retry_after(g: GraphFixture, store: Store) -> None:
    g.seed(50)
    g.script(
        Fault("status", status=429, retry_after="1"),
        Fault("status", status=429, retry_after=None, times=2, skip=1),
    )
    t0 = time.monotonic()
    result, stats = pull(g, store, fast(slice=pd.Timedelta(days=7)))
    elapsed = time.monotonic() - t0
    assert result.records == 50 and len(stored_ids(store)) == 50
    assert stats.throttled == 3 and g.count(429) == 3
    assert elapsed >= 1.0  # Retry-After: 1 was honoured
    statuses = [r.status for r in g.requests("/auditLogs")]
    assert statuses[:5] == [429, 200, 429, 429, 200]


@pytest.mark.parametrize(
    ("fault", "retries"),
    [
        (Fault("status", status=503, retry_after="1"), 1),
        (Fault("status", status=500), 1),
        (Fault("status", status=502, times=2), 2),
        (Fault("status", status=504), 1),
        (Fault("reset", skip=1), 1),  # connection reset in the middle of the second page
        (Fault("truncate", skip=2), 1),  # Content-Length promises more than arrives
        (Fault("slow", delay=1.5, skip=1), 1),  # longer than the client's timeout
        (Fault("status", status=401), 1),  # an expired token: retried once
    ],
    ids=["503-retry-after", "500", "502x2", "504", "reset", "truncated", "timeout", "401-once"],
)
def test_transient_faults_are_retried(
    g: GraphFixture, store: Store, fault: Fault, retries: int
) -> None:
    recs = g.seed(60)
    g.script(fault)
    result, stats = pull(g, store, fast(slice=pd.Timedelta(days=7), timeout_s=0.5))
    assert sorted(stored_ids(store)) == sorted(r["id"] for r in recs)
    assert result.failed == []
    assert stats.retries == retries
    assert stats.requests == stats.pages + retries
    assert not g.faults  # the fault was served


def test_nextlink_404_rereads_the_slice(g: GraphFixture, store: Store) -> None:
    recs = g.seed(60)
    g.script(Fault("status", status=404, match="$skiptoken", skip=1))
    pull(g, store, fast(slice=pd.Timedelta(days=7)))
    assert sorted(stored_ids(store)) == sorted(r["id"] for r in recs)
    firsts = [r for r in g.requests("/auditLogs") if "$skiptoken" not in r.query]
    assert len(firsts) == 2  # the slice started over


def test_malformed_page_fails_its_slice_and_stores_nothing_of_it(
    g: GraphFixture, store: Store
) -> None:
    g.seed(60)
    g.script(Fault("malformed", skip=1, times=3))  # page 2 is broken every time
    with pytest.raises(RemoteError) as err:
        pull(g, store, fast(slice=pd.Timedelta(days=7)))
    text = str(err.value)
    assert "not valid JSON" in text and "$skiptoken" in text
    assert "watermark graph:* stays at unset" in text
    assert stored_ids(store) == []  # page 1 was not committed without its slice
    assert store.watermark("graph:*") is None
    # once Graph answers properly, the run completes
    result, _ = pull(g, store, fast(slice=pd.Timedelta(days=7)))
    assert result.records == 60 and len(stored_ids(store)) == 60


def test_a_page_without_value_is_malformed(g: GraphFixture, store: Store) -> None:
    g.seed(10)
    g.script(Fault("no_value"))
    with pytest.raises(RemoteError, match="without a 'value' array"):
        pull(g, store, fast(slice=pd.Timedelta(days=7)))
    assert stored_ids(store) == []


def test_one_bad_slice_does_not_waste_the_rest(g: GraphFixture, store: Store) -> None:
    recs = g.seed(70)  # 10 a day, 2026-11-01 .. 2026-11-07
    g.script(
        Fault("status", status=503, match="activityDateTime gt 2026-11-02T23:59:59Z", times=100)
    )
    with pytest.raises(RemoteError) as err:
        pull(g, store, fast(give_up_after_s=0.3))
    text = str(err.value)
    assert "2026-11-03T00:00:00Z..2026-11-04T00:00:00Z" in text and "kept failing" in text
    bad_day = {r["id"] for r in recs if r["activityDateTime"].startswith("2026-11-03")}
    assert set(stored_ids(store)) == {r["id"] for r in recs} - bad_day
    # the watermark stops before the failed slice, so the next run re-reads it
    assert store.watermark("graph:*") == pd.Timestamp("2026-11-03T00:00:00Z")
    g.faults.clear()
    pull(g, store, since=None)
    assert sorted(stored_ids(store)) == sorted(r["id"] for r in recs)
    assert store.watermark("graph:*") == NOW


def test_gives_up_in_bounded_time_when_graph_is_down(g: GraphFixture, store: Store) -> None:
    g.seed(30)
    g.script(Fault("status", status=503, times=10_000))
    with pytest.raises(RemoteError, match="stopped after 2 failed time slices in a row"):
        pull(g, store, fast(give_up_after_s=0.2))
    days_tried = {r.query["$filter"] for r in g.requests("/auditLogs")}
    assert len(days_tried) == 2  # not all seven
    assert stored_ids(store) == []


def test_403_names_the_missing_permission(g: GraphFixture, store: Store) -> None:
    g.seed(10)
    g.denied["/auditLogs"] = "Insufficient privileges to complete the operation."
    with pytest.raises(RemoteError) as err:
        pull(g, store)
    text = str(err.value)
    assert "HTTP 403" in text and "AuditLog.Read.All" in text and "Directory.Read.All" in text
    assert "/auditLogs/provisioning" in text
    assert len(g.requests("/auditLogs")) == 1  # not retried, no other slice tried


def test_401_twice_is_an_authentication_error(g: GraphFixture, store: Store) -> None:
    g.seed(10)
    g.token = "another-token"
    with pytest.raises(RemoteError, match=r"HTTP 401.*PROVLENS_GRAPH_TOKEN"):
        pull(g, store)
    assert len(g.requests("/auditLogs")) == 2


def test_pacing_keeps_under_the_servers_limit(g: GraphFixture, store: Store) -> None:
    g.seed(100)
    g.rate_limit = (5, 1.0)  # the reporting API's 5 per 10 s, scaled to 1 s
    t0 = time.monotonic()
    result, stats = pull(g, store, fast(rate=(5, 1.0), top=10, slice=pd.Timedelta(days=7)))
    elapsed = time.monotonic() - t0
    assert result.records == 100
    assert g.count(429) == 0 and stats.throttled == 0
    assert stats.requests == 11  # 10 full pages and the trailing empty one
    assert elapsed >= 2.0  # 11 requests at 5 per second cannot finish before the floor
    assert stats.paced_s > 0


def test_server_throttle_is_obeyed_without_pacing(g: GraphFixture, store: Store) -> None:
    g.seed(35)
    g.rate_limit = (3, 1.0)
    result, stats = pull(g, store, fast(top=10, slice=pd.Timedelta(days=7)))
    assert result.records == 35
    assert stats.throttled == g.count(429) >= 1  # Retry-After brought it through


def test_double_slash_from_the_default_adapter(g: GraphFixture) -> None:
    g.seed(3)
    resp = httpx.get(
        f"{g.base}//auditLogs/provisioning", headers={"Authorization": "Bearer test-token"}
    )
    assert resp.status_code == 200 and len(resp.json()["value"]) == 3
    assert g.requests()[-1].path == "/v1.0/auditLogs/provisioning"


def _scope(g: GraphFixture) -> None:
    g.service_principals[SP] = "TheOrgWiki"
    g.jobs[SP] = [
        sync_job("scim.aaaa.bbbb"),
        sync_job(
            "scim.cccc.dddd",
            code="Paused",
            interval="P10675199DT2H48M5.4775807S",
            state="Paused",
            steady_first="0001-01-01T00:00:00Z",
        ),
    ]
    for uid in ("u1", "u2", "u3", "u4"):
        g.add_user(uid, f"{uid}@contoso.example")
    g.add_group("g-nested", "nested", ["u3"])
    g.add_group("g-wiki", "wiki users", ["u1", "g-nested"])
    g.assign(SP, "g-wiki", ROLE)
    g.assign(SP, "u2", ROLE)
    g.assign(SP, "u4", DEFAULT_ACCESS)


def _state(g: GraphFixture, store: Store, config: PullConfig | None = None) -> Any:
    cfg = config or fast()

    async def main() -> Any:
        client, http = build_client(g.root, cfg)
        session = GraphSession(client, cfg, base_url=g.base)
        try:
            return await pull_state(session, store, SP, NOW)
        finally:
            await http.aclose()

    return asyncio.run(main())


def test_job_status_and_scope(g: GraphFixture, store: Store) -> None:
    _scope(g)
    got = _state(g, store)
    assert (got.jobs, got.assignments, got.groups, got.members) == (2, 3, 1, 3)
    jobs = store.read("sync_jobs").set_index("job_id")
    assert jobs.loc["scim.aaaa.bbbb", "schedule_interval_s"] == 2400
    assert jobs.loc["scim.aaaa.bbbb", "steady_state_first_at"] == pd.Timestamp(
        "2026-10-02T09:00:00.123456Z"
    )
    assert pd.isna(jobs.loc["scim.aaaa.bbbb", "steady_state_last_at"])  # 0001-01-01
    assert pd.isna(jobs.loc["scim.cccc.dddd", "schedule_interval_s"])  # paused: never
    assert pd.isna(jobs.loc["scim.cccc.dddd", "steady_state_first_at"])
    assert (jobs["service_principal_id"] == SP).all() and (jobs["captured_at"] == NOW).all()
    assigned = store.read("assignments").set_index("principal_id")
    assert assigned["default_access"].to_dict() == {"g-wiki": False, "u2": False, "u4": True}
    assert assigned.loc["g-wiki", "principal_type"] == "group"
    members = store.read("group_members")
    assert dict(zip(members["member_id"], members["direct"])) == {
        "u1": True,
        "g-nested": True,
        "u3": False,  # only reachable through the nested group: not provisioned
    }
    assert set(members["group_id"]) == {"g-wiki"}
    # the next pull replaces scope (an unassigned user disappears), and adds a job snapshot
    g.assignments[SP] = [a for a in g.assignments[SP] if a["principalId"] != "u2"]
    g.group_members["g-wiki"] = ["u1"]
    _state(g, store)
    assert sorted(store.read("assignments")["principal_id"]) == ["g-wiki", "u4"]
    assert store.read("group_members")["member_id"].tolist() == ["u1"]


def test_jobs_403_names_synchronization_permission(g: GraphFixture, store: Store) -> None:
    _scope(g)
    g.denied["/synchronization/jobs"] = ""
    with pytest.raises(RemoteError, match=r"HTTP 403.*Synchronization\.Read\.All"):
        _state(g, store)
    assert store.read("assignments").empty  # the app's state is one batch: nothing stored


def test_record_in_the_slice_overlap_is_stored_once_with_its_steps(
    g: GraphFixture, store: Store
) -> None:
    """Slices overlap by a second (gt start-1s); a record read twice in a batch counts once."""
    rng = random.Random(3)
    at = pd.Timestamp("2026-11-01T23:59:59.500Z").to_pydatetime()
    edge = make_record(rng, at, SP, "wiki")
    g.records.append(edge)
    g.seed(10)
    pull(g, store, fast(slice=pd.Timedelta(days=1)))
    firsts = [r for r in g.requests("/auditLogs") if "$skiptoken" not in r.query]
    assert len(firsts) == 7
    assert len(stored_ids(store)) == 11
    steps = store.read("steps")
    assert steps.groupby("event_id").size().eq(2).all()
    assert len(steps) == 22 and len(store.read("modified_properties")) == 22
