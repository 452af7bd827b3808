"""Kept CLI answers: an unfiltered `report NAME --format json` at a given --now, asked again on the
same store version by a fresh process, is written from what the normal path kept, without
importing pandas or DuckDB, byte for byte; any other question takes the normal path."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from ingest import kept
from ingest.store import Store
from provlens.kept import question
from tests.support.frames import world
from tests.test_cli_lazy import imported_by
from tests.test_query_layer import _store

NOW = "2026-11-20T10:00:00Z"
pytestmark = pytest.mark.xdist_group("cli_kept")


def _report(store: Path, name: str, out: Path, *more: str, now: str | None = NOW) -> set[str]:
    """Run the report in a fresh interpreter (``now`` None: no --now, the clock's); return the
    heavy packages it imported."""
    out.unlink(missing_ok=True)
    at = ("--now", now) if now is not None else ()
    argv = ("--store", str(store), *at, "report", name, *more)
    heavy = imported_by(*argv, "--format", "json", "--out", str(out))
    assert out.exists()
    return {m.split(".")[0] for m in heavy}


# users, correlation and coverage: rows from the model's kept JSON text (correlation's
# without its noise rows: their own text); the others: the bytes themselves.
@pytest.mark.parametrize(
    "name", ["summary", "users", "correlation", "coverage", "scim-traffic", "estimate"]
)
def test_a_kept_answer_is_written_without_pandas_and_is_the_computed_answer(
    tmp_path: Path, name: str
) -> None:
    store = _store(tmp_path / "s").path
    computed = tmp_path / "computed.json"
    assert "pandas" in _report(store, name, computed)  # computed, and kept
    version = Store(store).manifest().version
    at = kept.now_us(datetime.fromisoformat(NOW.replace("Z", "+00:00")))
    assert at is not None
    # Kept at any time when the report reads no now (all of these but the estimate).
    stem = kept.answer_stem(store, version, name, "json", at if name == "estimate" else None)
    assert kept.kept_writer(stem) is not None
    # Bytes, or a note naming text the model wrote when it was built (correlation's rows shown
    # with noise hidden too): an ask writes no text of its own.
    assert {p.suffix for p in stem.parent.iterdir()} <= {".out", ".text"}
    if stem.with_suffix(stem.suffix + ".text").exists():
        note = json.loads(stem.with_suffix(stem.suffix + ".text").read_text())
        assert not str(note["text"]).startswith(kept.ANSWERS)
    again = tmp_path / "again.json"
    heavy = _report(store, name, again)
    assert "pandas" not in heavy and "duckdb" not in heavy
    assert again.read_bytes() == computed.read_bytes()
    assert json.loads(again.read_bytes())  # an answer, not an empty file


def test_a_filtered_question_another_now_or_version_takes_the_normal_path(tmp_path: Path) -> None:
    store = _store(tmp_path / "s")
    path = store.path
    first = tmp_path / "first.json"
    _report(path, "failures", first)
    # Kept for this very question only.
    assert "pandas" not in _report(path, "failures", tmp_path / "same.json")
    for more in (["--include-noise"], ["--since", "2026-11-01T00:00:00Z"], ["--job-id", "j"]):
        assert "pandas" in _report(path, "failures", tmp_path / "filtered.json", *more)
    later = tmp_path / "later.json"
    assert "pandas" in _report(path, "estimate", tmp_path / "e.json")
    assert "pandas" in _report(path, "estimate", later, now="2026-11-21T10:00:00Z")
    answers = kept.model_dir(path, store.manifest().version) / kept.ANSWERS
    assert len(list(answers.glob("estimate.json.*"))) == 1  # the latest --now's only
    assert "pandas" in _report(path, "summary", tmp_path / "summary.json")  # never asked
    # A new store version: its own model, its own answers.
    w = world()
    with store.batch(source="file", detail="again") as batch:
        batch.add({"events": w.table("events").head(3).assign(id=["n1", "n2", "n3"])})
    assert "pandas" in _report(path, "failures", tmp_path / "new.json")


def test_only_the_one_form_of_command_line_is_read() -> None:
    asked = question(["--store", "/s", "--now", NOW, "report", "users", "--format=json"])
    assert asked is not None and asked.store == Path("/s") and asked.out is None
    assert asked.now_us == 1_795_168_800_000_000
    argv = ["--now=2026-11-20 10:00", "--store=/s", "report", "--out", "o", "x", "--format", "json"]
    both = question(argv)
    assert both is not None and both.report == "x" and both.out == "o"
    assert both.now_us == asked.now_us  # naive means UTC
    clock = question(["--store", "/s", "report", "users", "--format", "json"])
    assert clock is not None and clock.now_us is None  # the clock's now
    for argv in (
        ["--store", "/s", "--now", NOW, "report", "users"],  # the table format
        ["--store", "/s", "--now", NOW, "report", "users", "--format", "csv"],
        ["--store", "/s", "--now", NOW, "report", "users", "--format", "json", "--user", "a"],
        ["--store", "/s", "--now", NOW, "-v", "report", "users", "--format", "json"],
        ["--store", "/s", "--now", NOW, "report", "users", "--format", "json", "--now", NOW],
        ["--store", "/s", "--now", "next tuesday", "report", "users", "--format", "json"],
        ["--store", "/s", "--now", NOW, "export", "users", "--format", "json"],
    ):
        assert question(argv) is None, argv


def test_a_report_that_reads_no_now_is_served_with_or_without_now(tmp_path: Path) -> None:
    """A plain `report NAME --format json` (a cron job's) is kept and served when the report
    declares it reads no now (reports.ReportSpec.uses_now); the estimate's only at its --now."""
    path = _store(tmp_path / "s").path
    first = tmp_path / "first.json"
    assert "pandas" in _report(path, "summary", first, now=None)  # computed, and kept
    for now in (None, NOW, "2027-01-05T08:00:00Z"):
        again = tmp_path / "again.json"
        assert "pandas" not in _report(path, "summary", again, now=now), now
        assert again.read_bytes() == first.read_bytes()
    # The estimate reads now: the clock's is never kept, a given --now is, for that --now only.
    assert "pandas" in _report(path, "estimate", tmp_path / "e1.json", now=None)
    assert "pandas" in _report(path, "estimate", tmp_path / "e2.json", now=None)
    assert "pandas" in _report(path, "estimate", tmp_path / "e3.json")
    assert "pandas" not in _report(path, "estimate", tmp_path / "e4.json")
    assert "pandas" in _report(path, "estimate", tmp_path / "e5.json", now=None)
    assert (tmp_path / "e4.json").read_bytes() == (tmp_path / "e3.json").read_bytes()
