"""The query layer: one manifest version per question, filters pushed down, the model kept."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ingest.schema import TABLES
from ingest.store import Store
from reports import Filters, service
from reports import query as q
from reports.model import MODEL_FORMAT
from tests.support.frames import SP, events, frame, ts, world


def _store(path: Path) -> Store:
    w = world()
    store = Store(path)
    with store.batch(source="file", detail="world") as batch:
        batch.add({name: w.table(name) for name in TABLES})
    return store


def test_reads_push_filters_and_columns_down(tmp_path: Path):
    store = _store(tmp_path / "s")
    snap = q.Snapshot.of(store)
    con = q.connect()
    f = Filters(since=ts("2026-11-20T01:00:00Z"), job_ids=("scim.j1",))
    ev = q.read_table(con, snap, "events", ["id", "activity_at"], f)
    assert list(ev.columns) == ["id", "activity_at"]
    assert sorted(ev["id"]) == ["e10", "e6", "e7", "e8", "e9"]
    assert str(ev["activity_at"].dtype) == "datetime64[us, UTC]"
    # children follow the selected events: e2's steps are before 01:00
    assert q.read_table(con, snap, "steps", None, f).empty
    assert q.read_table(con, snap, "modified_properties", None, f)["event_id"].tolist() == [
        "e7",
        "e10",
    ]
    # scope follows the app: another app has no assignments
    assert q.read_table(con, snap, "assignments", None, Filters(service_principal_ids=("x",))).empty
    assert (
        len(q.read_table(con, snap, "assignments", None, Filters(service_principal_ids=(SP,)))) == 5
    )


def test_a_question_is_answered_from_one_version_even_while_a_writer_replaces_parts(
    tmp_path: Path,
):
    store = _store(tmp_path / "s")
    stale = q.Snapshot.of(store)
    # Re-ingesting e1 rewrites the part holding it: the stale manifest's part is deleted.
    again = events([{"id": "e1", "activity_at": "2026-11-20T00:00:00Z", "status": "failure"}])
    with store.batch(source="file", detail="again") as batch:
        batch.add({"events": again})
    con = q.connect()
    with pytest.raises(q.PartVanished):
        q.read_table(con, stale, "events")
    calls: list[int] = []

    def ask(snap: q.Snapshot) -> tuple[int, int]:
        use = stale if not calls else snap  # the first attempt reads the replaced version
        calls.append(use.version)
        frame_ = q.read_table(con, use, "events")
        return use.version, int((frame_["id"] == "e1").sum())

    version, count = q.consistent(store, ask)
    assert calls == [1, 2] and (version, count) == (2, 1)
    assert service.run(store.path, "summary").data["failures_by_error_code"]["(none)"] == 1


def test_the_model_is_computed_once_per_version_and_kept_beside_the_parts(
    tmp_path: Path, monkeypatch
):
    store = _store(tmp_path / "s")
    q.clear_model_cache()
    first = service.run(store.path, "cycles").frame
    kept = q.derived_dir(store, store.version)
    assert (kept / "complete").exists()
    assert kept.name == f"v{store.version}.m{MODEL_FORMAT}"
    assert sorted(p.name for p in kept.glob("*.parquet")) == [
        "cycles.parquet",
        "facts.parquet",
        "matches.parquet",
        "noise.parquet",
        "objects.parquet",
        "user_events.parquet",
        "user_modified_properties.parquet",
        "user_names.parquet",
        "user_requests.parquet",
        "user_steps.parquet",
    ]

    def refuse(*args: object) -> None:
        raise AssertionError("the model of a stored version was computed again")

    monkeypatch.setattr(q, "compute_model", refuse)
    q.clear_model_cache()  # a new process: memory is empty, the kept model is read back
    pd.testing.assert_frame_equal(service.run(store.path, "cycles").frame, first)
    # a new version gets its own model
    monkeypatch.undo()
    more = frame("sync_jobs", [{"captured_at": "2026-11-21T00:00:00Z", "job_id": "scim.j9"}])
    with store.batch(source="file", detail="jobs") as batch:
        batch.add({"sync_jobs": more})
    service.run(store.path, "cycles")
    assert (q.derived_dir(store, store.version) / "complete").exists()


def test_an_empty_or_missing_store_answers_with_empty_results(tmp_path: Path):
    result = service.run(tmp_path / "nothing", "summary")
    assert result.data is not None and result.data["events"] == 0
    assert not (tmp_path / "nothing").exists()  # asking never creates a store


def test_a_column_older_parts_lack_is_read_as_null(tmp_path: Path):
    import pyarrow.parquet as pq

    store = _store(tmp_path / "s")
    snap = q.Snapshot.of(store)
    # Parts written before `envelope_result_type` existed: drop it from every events part.
    for path in snap.files("events"):
        pq.write_table(pq.read_table(path).drop_columns(["envelope_result_type"]), path)
    con = q.connect()
    ev = q.read_table(con, snap, "events", ["id", "status", "envelope_result_type"])
    assert len(ev) == len(world().events) and ev["envelope_result_type"].isna().all()
    assert str(ev["envelope_result_type"].dtype) == "str"
    summary = service.run(store, "summary").data
    assert summary is not None and summary["events"] == len(world().events)
    # A column no schema has is still an error, not a silent null.
    import duckdb

    with pytest.raises(duckdb.BinderException):
        q.read_table(con, snap, "events", ["id", "no_such_column"])


def test_one_users_rows_are_pushed_down_with_their_children(tmp_path: Path):
    """A one-user question reads that object's events (any of its names, any case) only."""
    store = _store(tmp_path / "s")
    snap = q.Snapshot.of(store)
    con = q.connect()
    # "Ada" names only e1, yet every event of u1 (e4, e10 carry no name) is that user's.
    rows = q.one_user_rows("  ADA ")
    ev = q.read_table(con, snap, "events", ["id"], Filters(), rows)
    assert sorted(ev["id"]) == ["e1", "e10", "e4"]
    assert q.read_table(con, snap, "modified_properties", None, Filters(), rows)[
        "event_id"
    ].tolist() == ["e10"]
    assert q.read_table(con, snap, "steps", None, Filters(), rows).empty
    since = Filters(since=ts("2026-11-20T01:00:00Z"))
    assert sorted(q.read_table(con, snap, "events", ["id"], since, rows)["id"]) == ["e10"]
    bo = q.read_table(con, snap, "steps", None, Filters(), q.one_user_rows("u2"))
    assert bo["event_id"].tolist() == ["e2", "e2"]
    assert q.read_table(con, snap, "events", ["id"], Filters(), q.one_user_rows("nobody")).empty
    # a report's own rows: the failures report reads failures only
    failed = q.read_table(con, snap, "events", ["id"], Filters(), q.Rows("status = 'failure'"))
    assert sorted(failed["id"]) == ["e2", "e8"]


def test_the_service_reads_only_what_a_report_needs_and_answers_the_same(tmp_path: Path):
    from reports import REPORTS, run_report

    store = _store(tmp_path / "s")
    w = world()
    assert REPORTS["failures"].events_where == "status = 'failure'"
    assert REPORTS["timeline"].one_user
    for name, params in (
        ("failures", {}),
        ("skips", {}),
        ("users", {"user": "ada"}),
        ("timeline", {"user": "bo@contoso.example"}),
        ("events", {"user": "u1"}),
    ):
        got = service.run(store, name, include_noise=True, **params).frame
        want = run_report(name, w, include_noise=True, **params).frame
        assert got is not None and want is not None and len(want)
        pd.testing.assert_frame_equal(got, want, check_dtype=False)


def test_children_only_rows_keep_every_event_but_one_users_steps(tmp_path: Path):
    """A diagnosis or support pack counts every event, and reads only the user's steps."""
    store = _store(tmp_path / "s")
    snap = q.Snapshot.of(store)
    con = q.connect()
    rows = q.one_user_rows("ada@contoso.example").children()
    assert len(q.read_table(con, snap, "events", ["id"], Filters(), rows)) == 10
    mods = q.read_table(con, snap, "modified_properties", None, Filters(), rows)
    assert mods["event_id"].tolist() == ["e10"]
    assert q.read_table(con, snap, "steps", None, Filters(), rows).empty
    w = world()
    from reports import run_report
    from reports.export import support_pack

    for user in ("ada", "bo@contoso.example"):
        got = service.run(store, "diagnosis", user=user).data
        assert got == run_report("diagnosis", w, user=user).data
        pack = service.support_pack(store, user)
        want = support_pack(w, user)
        assert list(pack) == list(want)
        for name, table in want.items():
            pd.testing.assert_frame_equal(
                pack[name].reset_index(drop=True), table.reset_index(drop=True), check_dtype=False
            )


def test_a_model_build_beyond_its_memory_limit_says_how_to_raise_it(tmp_path: Path, monkeypatch):
    from ingest.errors import UsageError

    store = _store(tmp_path / "s")
    q.clear_model_cache()
    monkeypatch.setenv(q.MODEL_MEMORY_ENV, "1KB")
    with pytest.raises(UsageError, match=r"more than 1KB of memory; set PROVLENS_MODEL_MEMORY"):
        service.run(store.path, "cycles")
    assert not (q.derived_dir(store, store.version)).exists()  # nothing half kept
    monkeypatch.delenv(q.MODEL_MEMORY_ENV)
    assert q.model_memory() == q.MODEL_MEMORY
    service.run(store.path, "cycles")
    assert (q.derived_dir(store, store.version) / "complete").exists()


def test_sql_reports_over_frames_lacking_optional_columns_read_them_as_null() -> None:
    # A library caller's events without envelope_result_type (as a store written before it
    # existed): the SQL summary counts as before, with no Microsoft view.
    from reports import run_report
    from tests.support import frames as F

    inputs = F.inputs(
        events=[
            {"id": "e1", "activity_at": "2026-11-20T00:00:00Z", "status": "success"},
            {"id": "e2", "activity_at": "2026-11-20T00:01:00Z", "status": "failure"},
        ]
    )
    events = inputs.events.drop(columns=["envelope_result_type"])
    data = run_report("summary", F.inputs(events=events)).data
    assert data["events"] == 2
    assert data["by_envelope_result_type"] == {}
    assert data["success_rate"] == 0.5
