"""`provlens demo`: where it writes, what it prints, and that a re-run adds nothing."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from ingest.store import Store
from provlens.cli import main


def _digest(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in directory.iterdir()}


def test_demo_into_given_store_prints_it_and_is_idempotent(tmp_path: Path, capsys) -> None:
    store = tmp_path / "s"
    argv = [
        "--store",
        str(store),
        "--now",
        "2026-11-20T10:42:17Z",
        "demo",
        "--users",
        "150",
        "--days",
        "2",
        "--seed",
        "9",
        "--no-dashboard",
    ]
    assert main(argv) == 0
    captured = capsys.readouterr()
    out = captured.out.strip().splitlines()
    assert out == [str(store)]
    raw = store / "raw"
    truth = json.loads((raw / "scenario.json").read_text())
    # A person reads a summary on stderr: what was built, where, a CLI example, how to view it.
    err = captured.err
    assert "provlens demo ready" in err
    assert f"150 users, {truth['events']['total']:,} provisioning events" in err
    assert f"  store:  {store}" in err
    assert f"provlens --store {store} report failures" in err
    assert f"provlens --store {store} dashboard" in err
    # --now is floored to the hour: the data window ends there.
    assert truth["window"]["end"].startswith("2026-11-20T10:00:00")
    assert truth["scenario"]["users"] == 150
    first = _digest(raw)
    counts = Store(store).info()["rows"]
    assert counts["events"] == truth["events"]["total"]
    assert counts["scim_requests"] == truth["wiki"]["requests"]

    assert main(argv) == 0
    capsys.readouterr()
    assert _digest(raw) == first  # same seed and --now: the same bytes
    assert Store(store).info()["rows"]["events"] == truth["events"]["total"]


def test_demo_without_store_uses_its_own_store(tmp_path: Path, monkeypatch, capsys) -> None:
    # PROVLENS_STORE names the user's real store: the demo must not write there.
    monkeypatch.setenv("PROVLENS_STORE", str(tmp_path / "real"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    out_dir = tmp_path / "raw"
    argv = [
        "--now",
        "2026-11-20T10:00:00Z",
        "demo",
        "--users",
        "120",
        "--days",
        "1",
        "--out",
        str(out_dir),
        "--no-dashboard",
    ]
    assert main(argv) == 0
    printed = Path(capsys.readouterr().out.strip())
    assert printed == tmp_path / "data" / "provlens" / "demo-store"
    assert (out_dir / "scenario.json").is_file()
    assert Store(printed).info()["rows"]["events"] > 100
    assert not (tmp_path / "real").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--users", "5"], "--users"),
        (["--days", "0"], "--days"),
        (["--groups", "2"], "--groups"),
        (["--users", "100000", "--days", "2"], "--days"),
    ],
)
def test_demo_rejects_bad_sizes(tmp_path: Path, capsys, args: list[str], message: str) -> None:
    argv = ["--store", str(tmp_path / "s"), "demo", *args, "--no-dashboard"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("provlens: ") and message in err


def test_demo_never_deletes_files_it_did_not_write(tmp_path: Path, capsys) -> None:
    out_dir = tmp_path / "downloads"
    out_dir.mkdir()
    mine = out_dir / "members-00000000-1111-2222-3333-444444444444.json"
    mine.write_text('{"value": []}')
    argv = [
        "--store",
        str(tmp_path / "s"),
        "--now",
        "2026-11-20T10:00:00Z",
        "demo",
        "--users",
        "120",
        "--days",
        "1",
        "--out",
        str(out_dir),
        "--no-dashboard",
    ]
    assert main(argv) == 2
    assert "choose an empty directory" in capsys.readouterr().err
    assert mine.read_text() == '{"value": []}'
    # A directory an earlier demo wrote is replaced without complaint.
    empty = tmp_path / "fresh"
    argv[argv.index(str(out_dir))] = str(empty)
    assert main(argv) == 0
    assert main(argv) == 0
    assert (empty / "scenario.json").is_file()
