"""Page files read by DuckDB directly (ingest.records_direct) give the per-record engine's rows;
anything it cannot reproduce exactly is declined and read the careful way."""

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

from ingest import records_direct
from ingest.errors import BadInput
from ingest.files import ingest_files
from ingest.formats import Options
from ingest.records import records_to_frames
from ingest.store import Store, to_arrow
from tests.support.jsonschema_strategy import from_schema
from tests.test_parser_one import _recase

DATA = Path(__file__).parent / "data"
BASE = json.loads(
    (DATA / "examples" / "graph-v1.0-list-provisioning-example2-failure.json").read_text()
)["value"][0]
SCHEMA = json.loads((DATA / "schema" / "provisioningObjectSummary.v1.0.schema.json").read_text())
TABLES = ("events", "steps", "modified_properties")


def _record(rid: str) -> dict[str, Any]:
    rec = copy.deepcopy(BASE)
    rec["id"] = rid
    return rec


def _write_pages(tmp: Path, pages: list[list[Any]], raw: dict[int, bytes] | None = None) -> list:
    out = []
    for i, records in enumerate(pages):
        p = tmp / f"page-{i:03d}.json"
        body = (raw or {}).get(i) or orjson.dumps({"@odata.context": "x", "value": records})
        p.write_bytes(body)
        out.append(p)
    return out


def _per_record(pages: list[list[Any]]) -> dict[str, Any]:
    frames = records_to_frames([r for page in pages for r in page], "file")
    return {t: to_arrow(t, frames[t]) for t in TABLES}


def _assert_same(got: dict[str, Any], want: dict[str, Any]) -> None:
    for t in TABLES:
        assert got[t].num_rows == want[t].num_rows, t
        for name in want[t].column_names:
            assert got[t].column(name).to_pylist() == want[t].column(name).to_pylist(), (t, name)


def _store_tables(store: Store) -> dict[str, pd.DataFrame]:
    out = {}
    for t in TABLES:
        df = store.read(t)
        out[t] = df.sort_values(list(df.columns)).reset_index(drop=True)
    return out


def test_many_page_files_in_one_query_give_the_per_record_rows(tmp_path: Path) -> None:
    pages = [[_record(f"p{p}-r{r}") for r in range(30)] for p in range(7)]
    read = records_direct.pages_to_tables(_write_pages(tmp_path, pages), "file")
    assert read is not None  # plain Graph pages are read directly
    tables, owner, (step_parent, prop_parent) = read
    _assert_same(tables, _per_record(pages))
    assert owner.tolist() == [p for p in range(7) for _ in range(30)]
    assert owner[step_parent].tolist() == sorted(owner[step_parent].tolist())
    assert len(prop_parent) == tables["modified_properties"].num_rows


timestamps = st.datetimes(
    min_value=pd.Timestamp("2000-01-01").to_pydatetime(),
    max_value=pd.Timestamp("2099-12-31").to_pydatetime(),
).map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.lists(from_schema(SCHEMA), min_size=1, max_size=6),
    st.lists(timestamps, min_size=6, max_size=6),
)
def test_schema_generated_records_read_directly_give_the_per_record_rows(
    tmp_path_factory: pytest.TempPathFactory, recs: list[dict], times: list[str]
) -> None:
    for i, rec in enumerate(recs):
        rec["id"] = f"id-{i}"
        rec["activityDateTime"] = times[i]
    pages = [recs[: len(recs) // 2], recs[len(recs) // 2 :]]
    pages = [p for p in pages if p]
    read = records_direct.pages_to_tables(
        _write_pages(tmp_path_factory.mktemp("pages"), pages), "file"
    )
    if read is not None:  # declined pages are read the careful way (tested below)
        _assert_same(read[0], _per_record(pages))


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(from_schema(SCHEMA), min_size=1, max_size=4), st.integers(0, 2**32))
def test_keys_in_any_casing_are_read_directly_as_the_per_record_engine_reads_them(
    tmp_path_factory: pytest.TempPathFactory, recs: list[dict], seed: int
) -> None:
    rnd = random.Random(seed)
    for i, rec in enumerate(recs):
        rec["id"] = f"id-{i}"
        rec["activityDateTime"] = "2026-01-02T03:04:05Z"
    recased = [_recase(r, rnd) for r in recs]
    read = records_direct.pages_to_tables(
        _write_pages(tmp_path_factory.mktemp("pages"), [recased]), "file"
    )
    if read is not None:  # declined pages are read the careful way (tested below)
        _assert_same(read[0], _per_record([recased]))
        _assert_same(read[0], _per_record([recs]))


def test_a_recased_page_is_read_directly_and_gives_the_per_record_rows(tmp_path: Path) -> None:
    rnd = random.Random(3)
    pages = [[_recase(_record(f"p{p}-{r}"), rnd) for r in range(20)] for p in range(3)]
    assert orjson.dumps(pages).count(b'"Id"') + orjson.dumps(pages).count(b'"ID"') > 0
    read = records_direct.pages_to_tables(_write_pages(tmp_path, pages), "file")
    assert read is not None
    _assert_same(read[0], _per_record(pages))
    # The same records as the map spells them: the same rows.
    plain = [[_record(f"p{p}-{r}") for r in range(20)] for p in range(3)]
    _assert_same(read[0], _per_record(plain))


def test_escapes_decline_a_page_only_when_they_could_spell_a_key(tmp_path: Path) -> None:
    page = {"@odata.context": "x", "value": [_record(f"r{i}") for i in range(5)]}
    body = orjson.dumps(page)
    bag = b'"details":{"ApplicationId"'
    assert bag in body
    # A backtick (System.Text.Json writes it as \\u0060) and a non-Latin letter: no key
    # the map reads has them, so the page is read directly, and as the per-record engine reads it.
    harmless = body.replace(bag, b'"details":{"x\\u0060y\\u0416":"\\u0060","ApplicationId"', 1)
    harmless = harmless.replace(b'"displayName":"', b'"displayName":"\\u0060', 1)
    (tmp_path / "a").mkdir()
    paths = _write_pages(tmp_path / "a", [page["value"]], {0: harmless})
    read = records_direct.pages_to_tables(paths, "file")
    assert read is not None
    _assert_same(read[0], _per_record([orjson.loads(harmless)["value"]]))
    # A letter of a key the map reads, escaped, even inside a free-form text: declined.
    for spelled in (b'"\\u0041pplicationId"', b'"\\u0064isplayName"', b'"displ\\u0061yName"'):
        odd = body.replace(
            b'"ApplicationId"' if b"pplication" in spelled else b'"displayName"', spelled, 1
        )
        assert orjson.loads(odd) == page  # the same record for orjson
        paths = _write_pages(tmp_path / "a", [page["value"]], {0: odd})
        assert records_direct.pages_to_tables(paths, "file") is None, spelled


def test_the_map_reads_no_key_the_kelvin_sign_could_spell() -> None:
    # Python lower-cases the Kelvin sign to k, DuckDB does not: a key with a k would send every
    # page holding the sign the careful way (DECLINE); none has one today.
    assert not any("k" in k.lower() for k in records_direct.VOCABULARY)
    kelvin = "".join(f"\\x{b:02x}" for b in "\u212a".encode())
    assert kelvin not in records_direct.DECLINE


@pytest.mark.parametrize(
    "case",
    [
        "recased_duplicate_key",
        "bag_as_json_text",
        "bag_as_list",
        "bag_key_in_two_casings",
        "envelope",
        "trailing_comma",
        "escaped_letter_key",
        "pretty_printed",
        "records_member",
        "duplicate_key",
        "id_not_a_string",
        "repeated_id",
        "bare_nan",
    ],
)
def test_what_duckdb_would_read_otherwise_is_declined_and_read_the_careful_way(
    tmp_path: Path, case: str
) -> None:
    good = [[_record(f"g{p}-{r}") for r in range(5)] for p in range(3)]
    odd = _record("odd")
    body: bytes | None = None
    page = {"@odata.context": "x", "value": [odd]}
    if case == "recased_duplicate_key":
        # One key in two casings: the per-record engine keeps the first spelling.
        body = orjson.dumps(page).replace(b'"cycleId":', b'"CycleId":"first","cycleId":', 1)
    elif case in ("bag_as_json_text", "bag_as_list"):
        # The per-record engine reads a bag given as JSON text or as a one-object list.
        bag = {"userPrincipalName": "odd@contoso.example"}
        odd["sourceIdentity"]["details"] = orjson.dumps(bag).decode() if "text" in case else [bag]
    elif case == "bag_key_in_two_casings":
        odd["sourceIdentity"]["details"] = {
            "UserPrincipalName": "first@contoso.example",
            "userPrincipalName": "second@contoso.example",
        }
    elif case == "envelope":
        page["value"] = [{"category": "ProvisioningLogs", "operationName": "x", "properties": odd}]
    elif case == "trailing_comma":
        body = orjson.dumps(page)[:-3] + b",]}"
    elif case == "escaped_letter_key":
        body = orjson.dumps(page).replace(b'"jobId"', b'"\\u004aobId"', 1)
    elif case == "pretty_printed":
        body = json.dumps(page, indent=2).encode()
    elif case == "records_member":
        page["records"] = []
    elif case == "duplicate_key":
        body = orjson.dumps(page).replace(b'"cycleId":', b'"cycleId":"a","cycleId":', 1)
    elif case == "id_not_a_string":
        odd["id"] = 12.5
    elif case == "bare_nan":  # DuckDB reads it as a number; orjson refuses it
        body = orjson.dumps(page).replace(b'"cycleId":', b'"x":NaN,"cycleId":', 1)
    elif case == "repeated_id":
        page["value"] = [_record("g0-1")]
    pages = [*good, page["value"]]
    paths = _write_pages(tmp_path, pages, {3: body or orjson.dumps(page)})
    assert records_direct.pages_to_tables(paths, "file") is None
    # The files still ingest (or fail) exactly as the per-record engine reads them one by one.
    ref = Store(tmp_path / "ref")
    want_error = None
    try:
        for p in paths:
            ingest_files(ref, [p], options=Options(columnar_min_records=10**9))
    except BadInput as exc:
        want_error = str(exc)
    got = Store(tmp_path / "got")
    if want_error is not None:
        with pytest.raises(BadInput) as err:
            ingest_files(got, paths)
        assert str(err.value) == want_error
        assert not got.exists() or got.manifest().rows.get("events", 0) == 0
        return
    ingest_files(got, paths)
    for t, df in _store_tables(got).items():
        pd.testing.assert_frame_equal(df, _store_tables(ref)[t])


def _one_page_per_group(monkeypatch: pytest.MonkeyPatch) -> None:
    from ingest.formats import provisioning

    monkeypatch.setattr(provisioning, "DIRECT_BYTES", 1)  # every page file is a group


@pytest.mark.parametrize("group_per_page", [False, True])
def test_a_bad_page_among_good_ones_is_named_and_nothing_is_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, group_per_page: bool
) -> None:
    if group_per_page:  # the bad page's group is read while the ones before are finished
        _one_page_per_group(monkeypatch)
    pages = [[_record(f"p{p}-{r}") for r in range(20)] for p in range(4)]
    del pages[2][7]["activityDateTime"]
    paths = _write_pages(tmp_path, pages)
    store = Store(tmp_path / "s")
    ingest_files(store, paths[:1])
    before = store.manifest().rows
    with pytest.raises(BadInput) as err:
        ingest_files(store, paths)
    assert str(err.value).startswith(f"{paths[2]}:1: record 8")
    assert "activityDateTime" in str(err.value)
    assert store.manifest().rows == before


def test_direct_reading_is_what_a_paged_ingest_uses(tmp_path: Path) -> None:
    pages = [[_record(f"p{p}-{r}") for r in range(300)] for p in range(3)]
    paths = _write_pages(tmp_path, pages)
    calls: list[int] = []
    real = records_direct.read_pages

    def spy(p: Any) -> Any:
        out = real(p)
        calls.append(0 if out is None else len(p))
        return out

    records_direct_mod = pytest.MonkeyPatch()
    records_direct_mod.setattr(records_direct, "read_pages", spy)
    try:
        result = ingest_files(Store(tmp_path / "s"), paths)
    finally:
        records_direct_mod.undo()
    assert calls == [3]
    assert [f.rows["events"] for f in result.files] == [300, 300, 300]


def test_the_next_group_is_read_while_the_one_before_is_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    _one_page_per_group(monkeypatch)
    pages = [[_record(f"p{p}-{r}") for r in range(30)] for p in range(4)]
    paths = _write_pages(tmp_path, pages)
    read, finish = records_direct.read_pages, records_direct.finish
    started: list[threading.Event] = [threading.Event() for _ in paths]
    threads: list[str] = []
    overlapped: list[bool] = []

    def read_spy(p: Any) -> Any:
        threads.append(threading.current_thread().name)
        started[paths.index(p[0])].set()
        return read(p)

    def finish_spy(r: Any, origin: str, min_records: int = 0) -> Any:
        k = len(overlapped)
        if k + 1 < len(paths):  # the next group's read has begun before this one is finished
            overlapped.append(started[k + 1].wait(10))
        else:
            overlapped.append(True)
        return finish(r, origin, min_records)

    monkeypatch.setattr(records_direct, "read_pages", read_spy)
    monkeypatch.setattr(records_direct, "finish", finish_spy)
    result = ingest_files(Store(tmp_path / "s"), paths)
    assert overlapped == [True] * 4
    assert threads and all(t.startswith("provlens-read") for t in threads)
    assert [f.rows["events"] for f in result.files] == [30] * 4
    _assert_same({t: Store(tmp_path / "s").read_arrow(t) for t in TABLES}, _per_record(pages))


def test_the_import_steps_upn_fills_only_events_without_their_own(tmp_path: Path) -> None:
    recs = []
    for i in range(6):
        rec = _record(f"u{i}")
        step = next(s for s in rec["provisioningSteps"] if s["provisioningStepType"] == "import")
        step["details"] = {"UserPrincipalName": f"step-{i}@contoso.example"}
        if i % 2:
            rec["sourceIdentity"]["details"] = {"userPrincipalName": f"own-{i}@contoso.example"}
        else:
            rec["sourceIdentity"]["details"] = {}
        recs.append(rec)
    read = records_direct.pages_to_tables(_write_pages(tmp_path, [recs]), "file")
    assert read is not None
    upn = dict(
        zip(
            read[0]["events"].column("id").to_pylist(),
            read[0]["events"].column("source_upn").to_pylist(),
            strict=True,
        )
    )
    assert upn == {f"u{i}": f"{'own' if i % 2 else 'step'}-{i}@contoso.example" for i in range(6)}
    _assert_same(read[0], _per_record([recs]))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.none(),
            st.integers(-(10**18), 10**18).map(str),
            st.sampled_from(["", " 12", "1.5", "-0", "007", "1e3", "x", "9" * 16, "-" + "9" * 15]),
            st.text("0123456789.-e ", max_size=20),
        ),
        max_size=30,
    )
)
def test_durations_are_the_field_maps_duration_of_each_text(values: list[str | None]) -> None:
    import pyarrow as pa

    from ingest import fieldmap

    got = records_direct._durations(pa.array(values, pa.string())).to_pylist()
    assert got == [None if v is None else fieldmap.duration(v) for v in values]


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_any_letter_of_any_key_written_as_an_escape_declines_the_bytes(data: st.DataObject) -> None:
    import pyarrow as pa

    key = data.draw(st.sampled_from(records_direct.VOCABULARY))
    at = data.draw(st.integers(0, len(key) - 1))
    letter = key[at].swapcase() if data.draw(st.booleans()) else key[at]
    code = f"{ord(letter):04x}"
    code = code.upper() if data.draw(st.booleans()) else code
    spelled = key[:at] + "\\u" + code + key[at + 1 :]
    raw = b'{"value":[{"' + spelled.encode() + b'":"x"}]}'
    assert orjson.loads(raw)["value"][0] == {key[:at] + letter + key[at + 1 :]: "x"}
    assert records_direct._declined(pa.py_buffer(raw))
    # The same bytes without the escape pass.
    assert not records_direct._declined(pa.py_buffer(orjson.dumps(orjson.loads(raw))))


_BAG_SHAPES = st.sampled_from(["object", "json_text", "list", "plain_text", "number", "null"])


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    shapes=st.lists(
        st.tuples(st.sampled_from(["sourceIdentity", "sourceSystem", "targetSystem"]), _BAG_SHAPES),
        min_size=1,
        max_size=4,
    )
)
def test_the_line_engine_reads_a_bag_in_any_shape_as_the_per_record_engine_or_declines(
    shapes: list[tuple[str, str]],
) -> None:
    from ingest import records_fast

    bag = {
        "userPrincipalName": "bag@contoso.example",
        "servicePrincipalId": "sp-1",
        "servicePrincipalDisplayName": "Contoso app",
    }
    recs = [_record(f"r{i}") for i in range(len(shapes) + 2)]
    for rec, (owner, shape) in zip(recs, shapes, strict=False):
        rec[owner]["details"] = {
            "object": bag,
            "json_text": orjson.dumps(bag).decode(),
            "list": [bag],
            "plain_text": "no bag",
            "number": 7,
            "null": None,
        }[shape]
    got = records_fast.lines_to_frames(b"\n".join(orjson.dumps(r) for r in recs), "file", str)
    if got is None:  # declined: the careful path reads the chunk record by record
        return
    want = records_to_frames(recs, "file")
    for t in TABLES:
        pd.testing.assert_frame_equal(got[t], want[t], obj=t)


_NON_JSON = st.sampled_from(["NaN", "-NaN", "Infinity", "-Infinity", "inf", "-inf", "nan"])


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    token=_NON_JSON,
    where=st.sampled_from(["member", "first_item", "next_item"]),
    at=st.integers(0, 599),
)
def test_a_bare_nan_or_infinity_is_refused_alike_by_every_engine(
    tmp_path_factory: pytest.TempPathFactory, token: str, where: str, at: int
) -> None:
    from ingest import records_fast

    tmp = tmp_path_factory.mktemp("nan")
    recs = [orjson.dumps(_record(f"r{i}")) for i in range(600)]
    spliced = {
        "member": b'"x":' + token.encode() + b",",
        "first_item": b'"x":[' + token.encode() + b"],",
        "next_item": b'"x":[1, ' + token.encode() + b"],",
    }[where]
    recs[at] = recs[at].replace(b'"cycleId":', spliced + b'"cycleId":', 1)
    assert records_fast.lines_to_frames(b"\n".join(recs), "file", str) is None
    # One large file (the splitter's chunks: the line engine, the direct reading of lines) and
    # one page (the direct reading of pages) fail with the per-record engine's line.
    for name, body in (
        ("one.json", b"[" + b",\n".join(recs) + b"]"),
        ("page.json", b'{"@odata.context":"x","value":[' + b",".join(recs) + b"]}"),
    ):
        path = tmp / name
        path.write_bytes(body)
        errors = []
        for options in (Options(), Options(columnar_min_records=10**9)):
            store = Store(tmp / f"{name}-{len(errors)}")
            with pytest.raises(BadInput) as err:
                ingest_files(store, [path], options=options)
            errors.append(str(err.value))
            assert not store.exists() or store.manifest().rows.get("events", 0) == 0
        assert errors[0] == errors[1]
        assert str(path) in errors[0]


@pytest.mark.parametrize(
    "text",
    ['"Doe, Nancy"', '"Error: Information missing"', '"retry, infinite loop"', '"a: NaNa"'],
)
def test_words_like_nan_or_inf_inside_texts_keep_the_fast_path(text: str) -> None:
    # Only a bare token where a JSON value stands sends bytes the per-record way: a display name
    # "Doe, Nancy" or a reason "Error: Information ..." must not slow a whole page down.
    import pyarrow as pa

    from ingest import records_direct as rd

    assert not rd._declined(pa.py_buffer(f'{{"displayName": {text}, "n": 1}}'.encode()))
    assert rd._declined(pa.py_buffer(b'{"displayName": "x", "n": NaN}'))
