"""`provlens ingest` builds the new store version's derived model after its commit
(provlens.prepare), so the first question reads it instead of building it; ``--no-model`` leaves
it to that question; a model that cannot be built warns and loses nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ingest.store import Store
from provlens.cli import main
from reports import query, service

EXAMPLES = Path(__file__).parent / "data" / "examples"
FAILURE = EXAMPLES / "graph-v1.0-list-provisioning-example2-failure.json"
SUCCESS = EXAMPLES / "graph-v1.0-list-provisioning-example1-success.json"


def _ingest(store: Path, *argv: str) -> int:
    return main(["--store", str(store), "ingest", "file", *argv])


def _model_kept(store: Path) -> bool:
    st = Store(store)
    return query.load_model(st, st.version) is not None


def test_ingest_builds_the_model_of_the_new_version(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "store"
    assert _ingest(store, str(FAILURE)) == 0
    out = capsys.readouterr().out
    version = Store(store).version
    assert f"derived model of version {version} built in" in out
    assert _model_kept(store)
    # The next version gets its own model.
    assert _ingest(store, str(SUCCESS)) == 0
    assert Store(store).version == version + 1 and _model_kept(store)
    assert f"derived model of version {version + 1} built in" in capsys.readouterr().out


def test_no_model_leaves_it_to_the_first_question(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "store"
    assert _ingest(store, "--no-model", str(FAILURE)) == 0
    assert "derived model" not in capsys.readouterr().out
    assert not _model_kept(store)
    # What the ingest would have done: prepare builds it once, then finds it kept.
    first = service.prepare(store)
    assert first.built and first.kept and first.version == Store(store).version
    assert _model_kept(store)
    again = service.prepare(store)
    assert not again.built and again.kept


def test_a_model_that_cannot_be_built_warns_and_keeps_the_ingest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(store: object) -> service.Prepared:
        raise OSError("No space left on device")

    monkeypatch.setattr(service, "prepare", broken)
    store = tmp_path / "store"
    src = tmp_path / "in.json"
    shutil.copy(FAILURE, src)
    assert _ingest(store, str(src)) == 0
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines() == [
        "provlens: warning: the derived model was not built (OSError: No space left on device); "
        "the ingest is committed, and the first report builds the model"
    ]
    assert Store(store).manifest().rows["events"] == 1
    assert not _model_kept(store)
    monkeypatch.undo()
    assert main(["--store", str(store), "report", "summary", "--format", "json"]) == 0
    assert _model_kept(store)
