"""The query layer: one manifest version per question, filters pushed down, the model kept."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pandas as pd
import pytest

from ingest.schema import TABLES
from ingest.store import Store
from reports import Filters, ReportResult, service
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
    names = sorted(p.name for p in kept.glob("*.parquet"))
    # Beside the parts: the kept answers, and the JSON text of the kept rows (named by columns).
    assert [n for n in names if n.startswith("answer-")] == [
        "answer-failures.parquet",
        "answer-scim-traffic.parquet",
    ]
    texts = [n.partition(".json-")[0] for n in names if ".json-" in n]
    # correlation_rows twice: every row, and those shown with noise hidden
    assert texts == [
        "correlation_rows",
        "correlation_rows",
        "objects",
        "users_rows",
        "users_rows_noise",
    ]
    assert [n for n in names if not n.startswith("answer-") and ".json-" not in n] == [
        "app_scope.parquet",
        "correlation_rows.parquet",
        "cycles.parquet",
        "facts.parquet",
        "groups.parquet",
        "matches.parquet",
        "noise.parquet",
        "objects.parquet",
        "recent_failures.parquet",
        "timeline.parquet",
        "user_events.parquet",
        "user_index.parquet",
        "user_modified_properties.parquet",
        "user_names.parquet",
        "user_object_names.parquet",
        "user_objects.parquet",
        "user_request_index.parquet",
        "user_requests.parquet",
        "user_steps.parquet",
        "users_rows.parquet",
        "users_rows_noise.parquet",
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


def test_a_model_build_beyond_the_default_limit_is_built_again_under_a_larger_one(
    tmp_path: Path, monkeypatch, caplog
):
    store = _store(tmp_path / "s")
    q.clear_model_cache()
    monkeypatch.delenv(q.MODEL_MEMORY_ENV, raising=False)
    monkeypatch.setattr(q, "MODEL_MEMORY_STEPS", ("1KB", "2KB", q.MODEL_MEMORY))
    with caplog.at_level(logging.WARNING, logger=q.__name__):
        answer = service.run(store.path, "cycles").frame
    assert (q.derived_dir(store, store.version) / "complete").exists()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert [w.split(": ", 1)[1] for w in warnings] == [
        "building the derived model needs more than 1KB of memory; going on with 2KB",
        f"building the derived model needs more than 2KB of memory; going on with {q.MODEL_MEMORY}",
    ]
    q.clear_model_cache()
    shutil.rmtree(q.derived_dir(store, store.version))
    monkeypatch.setattr(q, "MODEL_MEMORY_STEPS", (q.MODEL_MEMORY,))
    pd.testing.assert_frame_equal(service.run(store.path, "cycles").frame, answer)


def test_a_model_statement_beyond_its_limit_is_run_again_under_the_next_one_in_place(
    tmp_path: Path, monkeypatch, caplog
):
    """The limit is raised on the build's connection and only the statement that ran out of
    memory runs again: the parts computed before it are not computed twice."""
    from reports import run_report

    store = _store(tmp_path / "s")
    q.clear_model_cache()
    monkeypatch.delenv(q.MODEL_MEMORY_ENV, raising=False)
    monkeypatch.setattr(q, "MODEL_MEMORY_STEPS", ("24MB", q.MODEL_MEMORY))
    asked: list[str] = []
    real = q.part_query

    def part_query(con, name: str) -> str:
        asked.append(name)
        sql = real(con, name)
        if name != "facts":
            return sql
        # The statement writing this part needs more than 24 MB (a hash of 8M numbers).
        hungry = "(SELECT count(DISTINCT range % 8000000) FROM range(8000000)) > 0"
        return f"SELECT * FROM ({sql}) WHERE {hungry}"

    monkeypatch.setattr(q, "part_query", part_query)
    with caplog.at_level(logging.INFO, logger=q.__name__):
        got = service.run(store.path, "estimate", now=ts("2026-06-01")).data
    assert asked == ["noise", "timeline", "groups", "matches", "objects", "facts", "app_scope"]
    messages = [r.getMessage() for r in caplog.records]
    assert [m.split(": ", 1)[1] for m in messages if "of memory" in m] == [
        f"building the derived model needs more than 24MB of memory; going on with {q.MODEL_MEMORY}"
    ]
    done = [m.split()[2] for m in messages if m.startswith("model part ")]
    assert done.count("noise") == 1 and done.count("facts") == 1
    raised = next(i for i, m in enumerate(messages) if "of memory" in m)
    assert messages.index(next(m for m in messages if "part objects computed" in m)) < raised
    assert (q.derived_dir(store, store.version) / "complete").exists()
    assert got == run_report("estimate", world(), now=ts("2026-06-01")).data


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


@pytest.mark.parametrize(
    "filters",
    [
        Filters(),
        Filters(since=ts("2026-11-20T00:30:00Z")),
        Filters(service_principal_ids=(SP,)),
        Filters(statuses=("failure",)),
    ],
    ids=["none", "since", "app", "status"],
)
def test_reports_computed_in_place_over_a_store_answer_as_over_frames(
    tmp_path: Path, filters: Filters
):
    """correlation, users, coverage, estimate, scim-traffic, failures and skips read the store
    in place (no input frame): their answers are the in-memory ones, figure for figure."""
    from reports import run_report

    store = _store(tmp_path / "s")
    w = world()
    names = ("correlation", "users", "coverage", "estimate", "scim-traffic", "failures", "skips")
    for name in names:
        for noise in (False, True):
            got = service.run(store, name, filters, include_noise=noise, now=ts("2026-06-01"))
            want = run_report(name, w, filters, include_noise=noise, now=ts("2026-06-01"))
            assert got.hidden_noise == want.hidden_noise, name
            assert got.data == want.data, name
            if want.frame is None:
                assert got.frame is None, name
                continue
            assert got.frame is not None, name
            pd.testing.assert_frame_equal(
                got.frame.reset_index(drop=True), want.frame.reset_index(drop=True)
            )


def test_rows_given_as_arrow_are_written_as_their_frame_would_be(tmp_path: Path):
    """The CLI streams a report's Arrow rows to JSON without a frame: the same bytes."""
    from reports.export import json_bytes, write_json_rows

    store = _store(tmp_path / "s")
    for name in ("correlation", "users"):
        # A filter: the rows are computed (unfiltered ones are kept: the next test).
        result = service.run(store, name, Filters(since=ts("2026-01-01")), include_noise=True)
        rows = result.arrow_rows()
        assert rows is not None and rows.num_rows, name  # the rows came out of DuckDB as Arrow
        out = tmp_path / f"{name}.json"
        assert write_json_rows(rows, out)
        assert out.read_bytes() == json_bytes(result.frame), name


@pytest.mark.parametrize("include_noise", [False, True])
def test_unfiltered_rows_are_read_where_the_model_keeps_them(tmp_path: Path, include_noise: bool):
    """Unfiltered, users, correlation and coverage answer with the rows the model keeps
    (scanned in place by the writer): the same rows, bytes and hidden noise as computed."""
    from reports import run_report
    from reports.export import json_bytes, write_json_rows
    from reports.sql import StoredRows

    store = _store(tmp_path / "s")
    memory = world()
    for name in ("correlation", "users", "coverage"):
        result = service.run(store, name, include_noise=include_noise)
        kept = result.rows_source()
        assert isinstance(kept, StoredRows), name
        out = tmp_path / f"{name}.json"
        assert write_json_rows(kept, out)
        assert out.read_bytes() == json_bytes(result.frame), name
        want = run_report(name, memory, include_noise=include_noise)
        pd.testing.assert_frame_equal(result.frame, want.frame, check_dtype=False)
        assert (result.hidden_noise, result.data) == (want.hidden_noise, want.data), name


ONE_USER_REPORTS = (
    "users",
    "timeline",
    "user-steps",
    "user-changes",
    "user-wiki-requests",
    "correlation",
    "events",
    "diagnosis",
)


def _same_answer(got: ReportResult, want: ReportResult, what: object) -> None:
    """Assert two report results hold the same data, hidden-noise count and rows."""
    assert got.data == want.data, what
    assert got.hidden_noise == want.hidden_noise, what
    if want.frame is not None:
        assert got.frame is not None, what
        pd.testing.assert_frame_equal(
            got.frame.reset_index(drop=True),
            want.frame.reset_index(drop=True),
            check_dtype=False,
        )


def test_one_user_reports_read_only_the_users_rows_and_answer_the_same(tmp_path: Path, monkeypatch):
    """Asked about one user, a report reads the kept one-user copies, never the parts of
    events, steps, modified properties or wiki requests, and answers as over every row."""
    from reports import run_report

    store = _store(tmp_path / "s")
    w = world()
    service.run(store, "cycles")  # the model (and its one-user copies) kept
    q.clear_model_cache()
    whole = q.Snapshot.source

    def parts_refused(self: q.Snapshot, table: str, ordered: bool = False) -> str | None:
        if table in ("events", "steps", "modified_properties", "scim_requests"):
            raise AssertionError(f"a one-user question read the parts of {table}")
        return whole(self, table, ordered)

    monkeypatch.setattr(q.Snapshot, "source", parts_refused)
    now = ts("2026-11-21T00:00:00Z")
    for user in ("ada", " ADA@contoso.example", "u2", "bo@contoso.example", "nobody", "e1"):
        for name in ONE_USER_REPORTS:
            for noise in (False, True):
                got = service.run(store, name, include_noise=noise, now=now, user=user)
                want = run_report(name, w, include_noise=noise, now=now, user=user)
                _same_answer(got, want, (user, name))
    # Filtered, the diagnosis counts every selected event again: it reads the parts.
    with pytest.raises(AssertionError, match="read the parts of events"):
        service.run(store, "diagnosis", Filters(since=ts("2026-11-20T01:00:00Z")), user="ada")


def test_the_user_search_reads_the_objects_it_can_find_and_counts_every_one(
    tmp_path: Path, monkeypatch
):
    from reports import run_report

    store = _store(tmp_path / "s")
    w = world()
    service.run(store, "cycles")
    q.clear_model_cache()
    sliced: list[str] = []
    search = q.search_slice

    def spy(model: object, query: str) -> object:
        out = search(model, query)  # type: ignore[arg-type]
        if out is not None:
            sliced.append(query)
        return out

    monkeypatch.setattr(q, "search_slice", spy)
    for query in ("ada", "CONTOSO", "u2", "xyz", "", "no", "e", "a"):
        for noise in (False, True):
            got = service.run(store, "user-search", include_noise=noise, query=query)
            want = run_report("user-search", w, include_noise=noise, query=query)
            assert got.data == want.data and got.hidden_noise == want.hidden_noise, query
            assert got.frame is not None and want.frame is not None
            pd.testing.assert_frame_equal(got.frame, want.frame, check_dtype=False)
    # An empty query, or one a null value's text ("None") holds, reads the whole table.
    assert set(sliced) == {"ada", "CONTOSO", "u2", "xyz", "a"}


def test_the_models_facts_are_the_estimates_and_the_users_tables_counts(tmp_path: Path):
    from reports import run_report
    from reports.estimate import objects_in_scope
    from reports.model import model_of

    store = _store(tmp_path / "s")
    w = world()
    con = q.connect()
    kept = q.model_for(con, q.Snapshot.of(store)).facts.iloc[0]
    computed = model_of(w).facts.iloc[0]
    assert objects_in_scope(w) == (
        int(kept["users_in_scope"]) + int(kept["groups_in_scope"]),
        "scope",
    )
    for facts in (kept, computed):
        assert pd.Timestamp(facts["latest_at"]) == w.events["activity_at"].max()
        assert int(facts["users_rows"]) == len(run_report("users", w, include_noise=True).frame)
        quiet = run_report("users", w)
        assert int(facts["users_rows_quiet"]) == len(quiet.frame)
        assert int(facts["noise_events"]) == quiet.hidden_noise > 0


def test_a_model_kept_by_another_model_format_is_not_read(tmp_path: Path):
    store = _store(tmp_path / "s")
    old = store.path / "derived" / f"v{store.version}"  # what code before the stamp wrote
    old.mkdir(parents=True)
    (old / "complete").write_text("1\n")
    for part in ("noise", "cycles", "matches", "objects"):
        (old / f"{part}.parquet").write_text("not parquet")
    q.clear_model_cache()
    assert service.run(store, "cycles").frame is not None
    assert (q.derived_dir(store, store.version) / "complete").exists()
    assert not old.exists()  # dropped with the models of other formats


LANDING = (
    "quarantine-risk",
    "overview",
    "job-header",
    "filter-options",
    "recent-failures",
    "events-over-time",
)


@pytest.mark.parametrize(
    "chosen",
    [
        Filters(),
        Filters(service_principal_ids=(SP,)),
        Filters(job_ids=("scim.j1",)),
        Filters(service_principal_ids=("no-such-app",)),
        Filters(since=ts("2026-01-01")),
    ],
    ids=["none", "app", "job", "unknown-app", "time"],
)
def test_the_models_groups_answer_the_landing_reports_as_counting_the_events_does(
    tmp_path: Path, monkeypatch, chosen: Filters
):
    """The groups and app_scope parts (per job and app; per app) give quarantine-risk, the
    overview, job-header and filter-options the answers counting every selected event gives."""
    from reports import estimate, job_status, model, recent_failures, run_report

    store = _store(tmp_path / "s")
    now = ts("2026-06-01")

    def answers() -> list[object]:
        out: list[object] = []
        for name in LANDING:
            for got in (
                service.run(store, name, chosen, now=now),
                run_report(name, world(), chosen, now=now),
            ):
                out.append((got.data, None if got.frame is None else got.frame.to_dict("list")))
        return out

    q.clear_model_cache()
    kept = answers()
    monkeypatch.setattr(model, "selected_groups", lambda inputs, filters: None)
    monkeypatch.setattr(job_status, "selected_groups", lambda inputs, filters: None)
    monkeypatch.setattr(estimate, "_kept_app_scope", lambda inputs, apps: None)
    monkeypatch.setattr(recent_failures, "_kept", lambda inputs, filters, limit: None)
    q.clear_model_cache()
    counted = answers()
    assert repr(kept) == repr(counted)
    assert kept[0] == kept[1]  # the store's answer is the frames' answer


def test_the_unfiltered_landing_answers_read_no_event(tmp_path: Path, monkeypatch):
    from reports import Inputs, sql
    from reports.recent_failures import recent_sql

    store = _store(tmp_path / "s")
    q.clear_model_cache()
    service.run(store, "cycles")  # the model is kept
    want = sql.over(Inputs(events=world().events), recent_sql(Filters(), 20), ["events"])

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("counted the events instead of reading the model's groups")

    monkeypatch.setattr(sql, "over", refuse)
    monkeypatch.setattr(sql, "over_arrow", refuse)
    risk = service.run(store, "quarantine-risk").frame
    assert risk is not None and int(risk["events"].sum()) == len(world().events)
    options = service.run(store, "filter-options").data
    assert options is not None
    assert options["jobs"] == sorted(set(world().events["job_id"].dropna()))
    recent = service.run(store, "recent-failures").frame
    assert recent is not None
    assert recent["failures"].tolist() == want["failures"].tolist()
    assert recent["source_id"].tolist() == want["source_id"].tolist()
    assert len(want) > 0


def test_each_question_has_its_own_connection_to_the_processs_database() -> None:
    # One database per process (a connection costs ~0.3 ms, not ~25 ms), yet each question's
    # views and registered frames are its own: two asked side by side never see the other's.
    first, second = q.connect(), q.connect()
    try:
        first.execute("CREATE OR REPLACE TEMP VIEW asked AS SELECT 1 AS v")
        second.execute("CREATE OR REPLACE TEMP VIEW asked AS SELECT 2 AS v")
        first.register("rows", pd.DataFrame({"v": [10, 11]}))
        second.register("rows", pd.DataFrame({"v": [20]}))
        assert first.sql("SELECT v FROM asked").fetchall() == [(1,)]
        assert second.sql("SELECT v FROM asked").fetchall() == [(2,)]
        assert first.sql("SELECT sum(v) FROM rows").fetchall() == [(21,)]
        assert second.sql("SELECT sum(v) FROM rows").fetchall() == [(20,)]
        assert first.sql("SELECT current_setting('TimeZone')").fetchall() == [("UTC",)]
    finally:
        first.close()
    # Closing one leaves the others (and the database) usable; a new one starts empty.
    assert second.sql("SELECT v FROM asked").fetchall() == [(2,)]
    second.close()
    third = q.connect()
    with pytest.raises(Exception, match="asked"):
        third.sql("SELECT * FROM asked").fetchall()
    third.close()


def test_one_users_rows_are_read_once_for_the_texts_that_name_the_same_objects(
    tmp_path: Path, monkeypatch
):
    """The Users page asks by the link's UPN (search, diagnosis), then by the search row's key:
    the kept copies' rows of those objects are read once, and every answer is the one computed
    over every row."""
    from reports import run_report

    store = _store(tmp_path / "s")
    w = world()
    service.run(store, "cycles")
    q.clear_model_cache()
    read: list[tuple[str, ...]] = []
    rows_of_keys = q._rows_of_keys

    def spy(root: Path, keys: list[str]) -> object:
        read.append(tuple(keys))
        return rows_of_keys(root, keys)

    monkeypatch.setattr(q, "_rows_of_keys", spy)
    now = ts("2026-11-21T00:00:00Z")
    upn = "ada@contoso.example"
    found = service.run(store, "user-search", query=upn).frame
    assert found is not None and len(found) == 1
    key = str(found["user_key"].iloc[0])
    asks = [("diagnosis", upn)] + [(name, key) for name in ONE_USER_REPORTS]
    for name, user in asks:
        got = service.run(store, name, now=now, user=user)
        want = run_report(name, w, now=now, user=user)
        _same_answer(got, want, (name, user))
    assert read == [(key,)]  # the search's read served the UPN's and the key's questions


def test_questions_asked_side_by_side_read_their_own_tables(tmp_path: Path):
    """Two threads asking reports over the store at once (the dashboard's ask threads): each
    question's views of the parts are its own, so each answers as when asked alone."""
    from concurrent.futures import ThreadPoolExecutor

    store = _store(tmp_path / "s")
    service.run(store, "cycles")
    asks = [
        ("overview", Filters()),
        ("cycles", Filters(since=ts("2026-11-20T01:00:00Z"))),
        ("users", Filters(since=ts("2026-11-20T01:00:00Z"))),
        ("overview", Filters(since=ts("2026-11-20T01:00:00Z"))),
    ] * 3
    now = ts("2026-11-21T00:00:00Z")

    def answer(ask: tuple[str, Filters]) -> object:
        got = service.run(store, ask[0], ask[1], now=now)
        return (got.data, None if got.frame is None else got.frame.to_json())

    alone = [answer(a) for a in asks]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(answer, asks))
    assert together == alone


@pytest.mark.parametrize("include_noise", [False, True])
def test_unfiltered_rows_are_written_from_their_kept_json_text(tmp_path: Path, include_noise: bool):
    """users, correlation and coverage keep each answered row's JSON beside their kept rows:
    the writer reads it back (noise hidden, or coverage's rows, by the kept condition), the same
    bytes as formatting the rows again and as the frame's JSON; without the kept text, the rows
    are formatted as before."""
    from reports.export import _json_line_chunks, json_bytes, write_json_rows

    store = _store(tmp_path / "s")
    for name in ("correlation", "users", "coverage"):
        result = service.run(store, name, include_noise=include_noise)
        kept = result.rows_source()
        text = Path(kept.text_path())
        assert text.exists(), name  # kept with the model
        out = tmp_path / f"{name}.json"
        assert write_json_rows(kept, out)
        from_text = out.read_bytes()
        assert from_text == json_bytes(result.frame), name
        moved = text.with_name(text.name + ".away")
        text.rename(moved)
        try:
            assert write_json_rows(kept, out)
            assert out.read_bytes() == from_text, name  # formatted again: the same bytes
        finally:
            moved.rename(text)
        # Batches of the kept text, end to end: the same rows (a batch of 2 rows here).
        chunks = _json_line_chunks(kept, rows=2)
        assert chunks is not None
        assert b"[\n" + b"".join(bytes(c) for c in chunks) + b"\n]\n" == from_text, name


@pytest.mark.parametrize("name", ["scim-traffic", "failures"])
def test_unfiltered_answers_the_model_keeps_are_read_back(tmp_path: Path, monkeypatch, name: str):
    """scim-traffic's and failures' unfiltered answers are kept with the model (asked while it
    is built): read back, the frame the build gives (values and dtypes), in memory as well;
    asked with a filter, a parameter or noise shown, they are computed."""
    from reports import run_report
    from reports.model import answer_file

    store = _store(tmp_path / "s")
    computed = service.run(store, name).frame  # builds the model, keeping the answer
    root = q.derived_dir(store, store.info()["version"])
    assert answer_file(root, name).exists()
    want = run_report(name, world()).frame
    pd.testing.assert_frame_equal(computed, want)
    q.clear_model_cache()

    def refuse(*args, **kwargs):
        raise AssertionError("computed instead of read back")

    monkeypatch.setattr(service, "run_report", refuse)
    kept = service.run(store, name, Filters(), now=ts("2026-06-01")).frame
    pd.testing.assert_frame_equal(kept, want)
    for asked in (
        {"filters": Filters(since=ts("2026-01-01"))},
        {"include_noise": True},
        {"granularity": "minute"},
    ):
        with pytest.raises(AssertionError, match="computed instead"):
            service.run(store, name, **asked)


def test_small_sql_answers_are_kept_with_the_model_and_read_back(tmp_path: Path, monkeypatch):
    """The small SQL answers of the reports asked while the model is built are kept with it
    and read back by the same question in a later process (no DuckDB query over the events),
    the same answers; another filter asks DuckDB."""
    from reports import run_report
    from reports import sql as rsql

    store = _store(tmp_path / "s")
    service.run(store, "cycles")  # builds the model
    root = q.derived_dir(store, store.info()["version"])
    assert len(list((root / "answers").glob("*.parquet"))) >= 4
    q.clear_model_cache()
    rsql._kept.clear()
    asked: list[str] = []
    real = rsql._answer_file

    def spy(inputs, sql, tables):
        path = real(inputs, sql, tables)
        asked.append("kept" if path is not None and path.exists() else f"computed {sql}")
        return path

    monkeypatch.setattr(rsql, "_answer_file", spy)
    w = world()
    for name in ("summary", "skips", "estimate"):
        got = service.run(store, name, Filters(), now=ts("2026-06-01"))
        want = run_report(name, w, Filters(), now=ts("2026-06-01"))
        assert got.data == want.data, name
        if want.frame is not None:
            pd.testing.assert_frame_equal(got.frame, want.frame, check_dtype=False)
    assert asked and set(asked) == {"kept"}, asked
    asked.clear()
    service.run(store, "summary", Filters(since=ts("2026-01-01")))
    assert len(asked) == 1 and asked[0].startswith("computed"), asked


def test_whole_answers_are_not_kept_for_a_version_whose_tables_are_too_large(
    tmp_path: Path, monkeypatch
):
    """A whole answer reads its tables into pandas: beyond KEPT_ANSWER_ROWS rows per table it
    is not kept (asked, it is computed), while the small SQL answers still are."""
    from reports.model import answer_file

    monkeypatch.setattr(q, "KEPT_ANSWER_ROWS", 5)
    store = _store(tmp_path / "s")
    got = service.run(store, "scim-traffic").frame
    root = q.derived_dir(store, store.info()["version"])
    assert not answer_file(root, "scim-traffic").exists()
    assert not answer_file(root, "failures").exists()
    assert list((root / "answers").glob("*.parquet"))
    pd.testing.assert_frame_equal(got, service.run(store, "scim-traffic").frame)


def _page_asks(store: Store, upn: str) -> list[tuple[str, str]]:
    """Return the one-user asks of the Users page opened on ``upn`` (benchmarks.dashboard's
    USERS_ASKS after the search): the diagnosis by the UPN, the rest by the search row's key."""
    found = service.run(store, "user-search", query=upn).frame
    assert found is not None and len(found) == 1
    key = str(found["user_key"].iloc[0])
    return [("diagnosis", upn)] + [
        (name, key)
        for name in ("timeline", "user-steps", "user-changes", "correlation", "user-wiki-requests")
    ]


def _count_calls(monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> list[object]:
    """Replace ``owner.name`` by a wrapper recording each call's arguments; return the record."""
    calls: list[object] = []
    original = getattr(owner, name)

    def spy(*args: object, **kwargs: object) -> object:
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, spy)
    return calls


def test_a_users_timeline_is_derived_once_for_all_the_pages_answers(tmp_path: Path, monkeypatch):
    """The diagnosis (asked by the UPN), the timeline, steps, changes and wiki requests (by the
    object key) over one user's rows derive the user's timeline once, and read each of the
    rows' tables once; every answer is the one computed over every row."""
    from reports import run_report
    from reports import users as users_report

    store = _store(tmp_path / "s")
    w = world()
    service.run(store, "cycles")
    q.clear_model_cache()
    asks = _page_asks(store, "ada@contoso.example")
    now = ts("2026-11-21T00:00:00Z")
    wanted = [run_report(name, w, now=now, user=user) for name, user in asks]
    timelines = _count_calls(monkeypatch, users_report, "_timeline_of")
    reads = _count_calls(monkeypatch, q, "_read_table")
    for (name, user), want in zip(asks, wanted, strict=True):
        _same_answer(service.run(store, name, now=now, user=user), want, (name, user))
    assert len(timelines) == 1  # five asks derived it
    sliced = [r for r in reads if isinstance(r[1], q.SliceSnapshot) and r[2] in r[1].views]
    # The diagnosis reads every event of its rows with their children and requests; then the
    # key's timeline reads its object's events (to know it: the rest is derived), correlation
    # its own columns of events and requests; steps, changes and wiki requests read nothing.
    diagnosis = ["events", "steps", "modified_properties", "scim_requests"]
    by_key = ["events", "events", "scim_requests"]
    assert sorted(r[2] for r in sliced) == sorted([*diagnosis, *by_key])
    # Asked again, nothing is derived or read again.
    for name, user in asks:
        service.run(store, name, now=now, user=user)
    assert len(timelines) == 1
    assert len(
        [r for r in reads if isinstance(r[1], q.SliceSnapshot) and r[2] in r[1].views]
    ) == len(sliced)


def test_a_users_answers_asked_side_by_side_derive_the_timeline_once(tmp_path: Path, monkeypatch):
    """The dashboard asks a user's answers on two threads at once: the second question needing
    the timeline being derived waits for it, and each answers as when asked alone."""
    from concurrent.futures import ThreadPoolExecutor

    from reports import run_report
    from reports import users as users_report

    store = _store(tmp_path / "s")
    w = world()
    service.run(store, "cycles")
    now = ts("2026-11-21T00:00:00Z")
    for upn in ("ada@contoso.example", "bo@contoso.example"):
        q.clear_model_cache()
        asks = _page_asks(store, upn)
        wanted = [run_report(name, w, now=now, user=user) for name, user in asks]
        timelines = _count_calls(monkeypatch, users_report, "_timeline_of")
        with ThreadPoolExecutor(2) as pool:
            got = list(pool.map(lambda a: service.run(store, a[0], now=now, user=a[1]), asks))
        for (name, user), answer, want in zip(asks, got, wanted, strict=True):
            _same_answer(answer, want, (name, user))
        assert len(timelines) == 1, upn
        monkeypatch.undo()


def test_a_users_timeline_is_derived_again_for_other_filters(tmp_path: Path):
    """What is derived from one user's rows is kept per filters: a time range asked after the
    whole history (and the noise shown after hidden) answers as over every row."""
    from reports import run_report

    store = _store(tmp_path / "s")
    w = world()
    service.run(store, "cycles")
    q.clear_model_cache()
    key = _page_asks(store, "ada@contoso.example")[1][1]
    for filters in (Filters(), Filters(since=ts("2026-11-20T01:00:00Z")), Filters()):
        for name in ("timeline", "user-steps", "user-wiki-requests", "correlation"):
            for noise in (False, True):
                got = service.run(store, name, filters, include_noise=noise, user=key)
                want = run_report(name, w, filters, include_noise=noise, user=key)
                _same_answer(got, want, (name, filters, noise))
    late = service.run(store, "timeline", Filters(since=ts("2026-11-20T01:00:00Z")), user=key)
    whole = service.run(store, "timeline", user=key)
    assert late.frame is not None and whole.frame is not None
    assert 0 < len(late.frame) < len(whole.frame)


def test_a_value_being_computed_once_is_waited_for_and_a_failure_computed_again() -> None:
    import threading

    from reports.model import Once

    once = Once()
    started, release = threading.Event(), threading.Event()
    computed: list[str] = []

    def slow() -> str:
        computed.append("slow")
        started.set()
        release.wait(5)
        return "value"

    first = threading.Thread(target=lambda: once.get("k", slow))
    first.start()
    started.wait(5)
    waiter: list[str] = []
    second = threading.Thread(target=lambda: waiter.append(once.get("k", lambda: "other")))
    second.start()
    release.set()
    first.join(5)
    second.join(5)
    assert waiter == ["value"] and computed == ["slow"]

    def failing() -> str:
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        once.get("f", failing)
    assert once.get("f", lambda: "then") == "then"


def test_the_overviews_user_counts_are_the_coverage_users_whether_the_model_is_kept_or_not(
    tmp_path: Path,
):
    from reports import run_report
    from reports.model import model_of

    store = _store(tmp_path / "s")
    w = world()
    users = model_of(w).objects
    users = users.loc[users["coverage"].astype(bool)]
    expected = {
        "users_assigned": int((users["scope_via"].fillna("none") != "none").sum()),
        "users_in_scope": int(users["in_scope"].fillna(False).astype(bool).sum()),
        "users_active_in_wiki": int((users["wiki_state"] == "active").fillna(False).sum()),
    }
    assert expected["users_assigned"] > expected["users_in_scope"] > 0
    assert 0 < expected["users_active_in_wiki"] < len(users)
    kept = service.run(store, "overview").data  # over the kept objects part's file
    computed = run_report("overview", w).data  # over the part's frame
    for data in (kept, computed):
        assert {k: data[k] for k in expected} == expected
