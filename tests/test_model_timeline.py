"""The model's timeline: a time range's landing answers read only the events in range, in time
order, and answer exactly as counting every selected event does."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.schema import TABLES
from ingest.store import Store
from reports import Filters, Inputs, run_report, service, sql
from reports import query as q
from reports.inputs import object_key
from reports.model import Model
from reports.quarantine import reference_failures
from tests.support.frames import events, frame, steps

START = pd.Timestamp("2026-11-17T00:00:00Z")
SPAN = pd.Timedelta(days=3)
APPS = ("sp-a", "sp-b")
JOBS = ("scim.a1", "scim.b1", None)
NOW = pd.Timestamp("2026-11-21T00:00:00Z")
STATUSES = ["success", "failure", "skipped", "warning"]
# Each report compared with the frames' answer; all but summary and cycles read the timeline.
REPORTS = (
    "quarantine-risk",
    "overview",
    "recent-failures",
    "events-over-time",
    "cycles",
    "summary",
)


def _tenant(n: int = 600, seed: int = 13) -> Inputs:
    """Return ``n`` events over three days: two apps, two jobs and events without one, objects
    named by id, UPN or name only, times tied and missing, noise, and reference failures."""
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    ref_steps: list[dict[str, Any]] = []
    for i in range(1, n + 1):
        user = int(rng.integers(0, 80))
        app = APPS[user % 2]
        job = JOBS[0] if app == APPS[0] else JOBS[int(rng.integers(1, 3))]
        minute = int(rng.integers(0, SPAN // pd.Timedelta(minutes=1)))
        at = None if rng.random() < 0.02 else START + pd.Timedelta(minutes=minute)
        if at is not None and rng.random() < 0.3:
            at = at.floor("h")  # ties
        status = str(rng.choice(STATUSES, p=[0.5, 0.3, 0.15, 0.05]))
        group = user % 11 == 0
        failed = status == "failure"
        named = user % 7
        row = {
            "id": f"e{i}",
            "activity_at": at,
            "job_id": job,
            "cycle_id": None if rng.random() < 0.05 else f"c{int(rng.integers(0, 5))}",
            "service_principal_id": None if rng.random() < 0.03 else app,
            "service_principal_name": f"App {app}",
            "source_id": None if named == 1 else f"u{user}",
            "source_upn": None if named == 2 else f"user{user}@contoso.example",
            "source_name": f"User {user}",
            "source_type": "group" if group else "user",
            "action": str(rng.choice(["create", "update", "delete"])) if not group else "update",
            "status": status,
            "error_code": str(rng.choice(["E1", "E2"])) if failed else None,
            "failed_step": "ReferenceSync" if failed and rng.random() < 0.2 else None,
            "skip_reason": "NotEffectivelyEntitled" if status == "skipped" else None,
        }
        if status == "failure" and rng.random() < 0.2:
            ref_steps.append(
                {
                    "event_id": f"e{i}",
                    "position": 0,
                    "name": "ReferenceResolution",
                    "step_type": "reference_resolution",
                    "status": "failure",
                }
            )
        rows.append(row)
    jobs = [
        {
            "captured_at": "2026-11-20T00:00:00Z",
            "service_principal_id": APPS[0],
            "job_id": JOBS[0],
            "status_code": "Active",
        }
    ]
    return Inputs.from_tables(
        {"events": events(rows), "steps": steps(ref_steps), "sync_jobs": frame("sync_jobs", jobs)}
    )


@pytest.fixture(scope="module")
def tenant(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, Inputs]:
    tenant = _tenant()
    store = Store(tmp_path_factory.mktemp("timeline") / "s")
    with store.batch(source="file", detail="tenant") as batch:
        batch.add({name: tenant.table(name) for name in TABLES})
    q.clear_model_cache()
    service.run(store.path, "cycles")  # the model is kept
    return store, tenant


def _answer(result: Any) -> tuple[Any, Any, int]:
    frame_ = None if result.frame is None else result.frame.reset_index(drop=True).to_dict("list")
    return (result.data, frame_, int(result.hidden_noise))


def test_the_timeline_is_every_event_in_time_order_with_its_object_noise_and_reference() -> None:
    tenant = _tenant()
    model = Model(source=tenant)
    line = model.timeline
    ev = tenant.events
    assert len(line) == len(ev)
    # Time order, no time last, ties in stored order.
    order = ev.assign(_n=ev["activity_at"].isna(), _i=np.arange(len(ev)))
    order = order.sort_values(["_n", "activity_at", "_i"], kind="stable")
    assert line["_row"].tolist() == order["_i"].tolist()
    by_row = line.set_index("_row").sort_index()
    for c in ("job_id", "service_principal_id", "cycle_id", "action", "status", "error_code"):
        pd.testing.assert_series_equal(
            by_row[c].astype("object").where(by_row[c].notna(), None).reset_index(drop=True),
            ev[c].astype("object").where(ev[c].notna(), None).reset_index(drop=True),
            check_names=False,
        )
    # One number per object key (the same objects, none merged or split).
    keys = object_key(ev).reset_index(drop=True)
    pairs = pd.DataFrame({"k": keys, "n": by_row["_key"].to_numpy()}).drop_duplicates()
    assert pairs["k"].is_unique and pairs["n"].is_unique
    assert pairs["k"].nunique() == keys.nunique()
    assert by_row["_noise"].tolist() == model.noise_of(ev["id"]).tolist()
    assert sum(by_row["_noise"]) > 0
    ref = reference_failures(ev, tenant.steps)
    assert by_row["_ref"].tolist() == ref.tolist()
    assert sum(ref) > 0


def test_the_kept_timeline_lies_in_time_ordered_row_groups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(q, "TIMELINE_ROW_GROUP", 2048)  # DuckDB's smallest (a vector)
    tenant = _tenant(n=7000)
    store = Store(tmp_path / "s")
    with store.batch(source="file", detail="tenant") as batch:
        batch.add({name: tenant.table(name) for name in TABLES})
    q.clear_model_cache()
    service.run(store.path, "cycles")
    meta = pq.ParquetFile(q.derived_dir(store, store.version) / "timeline.parquet").metadata
    assert meta.num_rows == len(tenant.events)
    assert meta.num_row_groups >= 3
    column = meta.schema.names.index("activity_at")
    spans = [
        (meta.row_group(i).column(column).statistics, meta.row_group(i).num_rows)
        for i in range(meta.num_row_groups)
    ]
    timed = [s for s, _ in spans if s is not None and s.has_min_max]
    # Each row group starts at or after the previous one's end: a range reads only its own.
    assert all(a.max <= b.min for a, b in itertools.pairwise(timed))


def _counted(tenant: Inputs, filters: Filters) -> dict[str, Any]:
    """The figures the landing answers show, counted over the selected frames in pandas."""
    ev = filters.apply_events(tenant.events).copy()
    ev["_ref"] = reference_failures(ev, tenant.steps)
    ev["_key"] = object_key(ev)
    ev["_job"] = ev["job_id"].fillna("").astype("str")
    out: dict[str, Any] = {"events": len(ev), "objects": int(ev["_key"].nunique())}
    out["cycles"] = len(ev.loc[ev["cycle_id"].notna(), ["job_id", "cycle_id"]].drop_duplicates())
    decided = ev.loc[ev["status"].isin(["success", "failure"])].assign(
        _untimed=lambda f: f["activity_at"].isna(), _i=lambda f: np.arange(len(f))
    )
    decided = decided.sort_values(["_untimed", "activity_at", "_i"], kind="stable")
    last = decided.groupby(["_job", "_key"], sort=False).tail(1)
    failed = last.loc[last["status"] == "failure"]
    out["failures"] = failed.groupby("_job").size().to_dict()
    out["reference_failures"] = int(failed["_ref"].sum())
    return out


def _check(store: Store, tenant: Inputs, filters: Filters) -> None:
    for name in REPORTS:
        for noise in (False, True):
            got = service.run(store.path, name, filters, include_noise=noise, now=NOW)
            want = run_report(name, tenant, filters, include_noise=noise, now=NOW)
            assert repr(_answer(got)) == repr(_answer(want)), (name, noise, filters)
    counted = _counted(tenant, filters)
    overview = service.run(store.path, "overview", filters, now=NOW).data
    assert overview is not None
    assert overview["events"] == counted["events"]
    assert overview["source_objects"] == (counted["objects"] if counted["events"] else 0)
    assert overview["cycles"] == counted["cycles"]
    risk = service.run(store.path, "quarantine-risk", filters, now=NOW).frame
    assert risk is not None
    per_job = {
        ("" if pd.isna(j) or j == "None" else str(j)): int(f)
        for j, f in zip(risk["job_id"], risk["failures"], strict=True)
        if int(f)
    }
    assert per_job == counted["failures"]
    assert int(risk["reference_failures"].sum()) == counted["reference_failures"]


MINUTES = int(SPAN / pd.Timedelta(minutes=1))
instants = st.one_of(
    st.none(),
    st.integers(-60, MINUTES + 60).map(lambda m: START + pd.Timedelta(minutes=m)),
    st.integers(0, 3).map(lambda d: START + pd.Timedelta(days=d)),  # whole days
    st.integers(0, MINUTES * 60).map(lambda s: START + pd.Timedelta(seconds=s, microseconds=7)),
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    since=instants,
    length=st.one_of(st.none(), st.integers(0, 4 * 24 * 60)),
    apps=st.sampled_from([(), (APPS[0],), APPS]),
    jobs=st.sampled_from([(), (str(JOBS[1]),)]),
    statuses=st.sampled_from([(), ("failure",), ("success", "skipped")]),
)
def test_time_ranges_answer_from_the_timeline_as_counting_the_events_does(
    tenant: tuple[Store, Inputs],
    since: pd.Timestamp | None,
    length: int | None,
    apps: tuple[str, ...],
    jobs: tuple[str, ...],
    statuses: tuple[str, ...],
) -> None:
    store, frames = tenant
    until = None
    if length is not None:
        until = (since if since is not None else START) + pd.Timedelta(minutes=length)
    filters = Filters(
        since=since, until=until, service_principal_ids=apps, job_ids=jobs, statuses=statuses
    )
    _check(store, frames, filters)


@pytest.mark.parametrize(
    "filters",
    [
        Filters(since=START + pd.Timedelta(days=1), until=START + pd.Timedelta(days=2)),
        Filters(since=START + pd.Timedelta(hours=29, minutes=13, seconds=5)),
        Filters(since=START + pd.Timedelta(hours=30), until=START + pd.Timedelta(hours=31)),
        Filters(since=START + pd.Timedelta(days=9)),
        Filters(since=START, until=START + SPAN),
    ],
    ids=["whole-day", "partial-day", "one-hour", "no-data", "whole-range"],
)
def test_a_time_range_reads_the_timeline_not_the_events_or_steps(
    tenant: tuple[Store, Inputs], monkeypatch: pytest.MonkeyPatch, filters: Filters
) -> None:
    store, frames = tenant
    want = {n: _answer(run_report(n, frames, filters, now=NOW)) for n in REPORTS[:4]}
    read: list[tuple[str, ...]] = []
    real = sql.over_arrow

    def spy(inputs: Inputs, query: str, tables: Any, **kw: Any) -> Any:
        read.append(tuple(tables))
        if tables:
            assert "timeline.parquet" not in query
        else:
            assert "timeline.parquet" in query
        return real(inputs, query, tables, **kw)

    monkeypatch.setattr(sql, "over_arrow", spy)
    sql._kept.clear()
    risk = service.run(store.path, "quarantine-risk", filters, now=NOW)
    assert read and all(t == () for t in read)  # neither events nor steps were read
    assert repr(_answer(risk)) == repr(want["quarantine-risk"])
    read.clear()
    overview = service.run(store.path, "overview", filters, now=NOW)
    # Only the latest failures' own rows come from the events (their text columns).
    assert read.count(("events",)) == 1 and all(t in ((), ("events",)) for t in read)
    assert repr(_answer(overview)) == repr(want["overview"])
    for name in ("recent-failures", "events-over-time"):
        read.clear()
        got = service.run(store.path, name, filters, now=NOW)
        assert read and all(t == () for t in read), name  # the timeline (and the kept copy)
        assert repr(_answer(got)) == repr(want[name]), name


def test_two_threads_asking_the_same_kept_sql_compute_it_once(
    tenant: tuple[Store, Inputs], monkeypatch: pytest.MonkeyPatch
) -> None:
    """quarantine-risk and the Overview, computed side by side, share one count."""
    import threading
    import time

    store, _ = tenant
    calls: list[str] = []
    real = sql.over_arrow

    def slow(inputs: Inputs, query: str, tables: Any, **kw: Any) -> Any:
        calls.append(query)
        time.sleep(0.3)  # the second thread asks meanwhile
        return real(inputs, query, tables, **kw)

    monkeypatch.setattr(sql, "over_arrow", slow)
    sql._kept.clear()
    filters = Filters(since=START + pd.Timedelta(hours=7))
    got: list[Any] = []

    def ask() -> None:
        got.append(service.run(store.path, "quarantine-risk", filters, now=NOW).frame)

    threads = [threading.Thread(target=ask) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert len(got) == 2 and got[0] is not None and got[1] is not None
    pd.testing.assert_frame_equal(got[0], got[1])
    assert int(got[0]["events"].sum()) == len(Filters.apply_events(filters, _tenant().events))
