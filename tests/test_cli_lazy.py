"""Command discovery is static: `provlens --help` and group help import no command module and
none of the heavy libraries; a command's module is imported only when it runs or asks for help."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

from provlens import cli, commands

ROOT = Path(__file__).resolve().parents[1]
HEAVY = (
    "pandas",
    "numpy",
    "pyarrow",
    "duckdb",
    "msgraph",
    "kiota_abstractions",
    "streamlit",
    "httpx",
    "azure",
    "pandera",
)

PROBE = """
import json, sys
from provlens.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
mods = sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r} or
              m.startswith("provlens.commands."))
print(json.dumps(mods))
"""


def imported_by(*argv: str) -> list[str]:
    """Return the heavy and command modules a fresh interpreter imported for ``provlens argv``."""
    code = PROBE.format(heavy=set(HEAVY))
    out = subprocess.run(
        [sys.executable, "-c", code, *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return list(json.loads(out.splitlines()[-1]))


@pytest.mark.parametrize("argv", [["--help"], ["ingest", "--help"], ["store", "--help"]])
def test_help_imports_no_command_and_no_heavy_library(argv: list[str]) -> None:
    assert imported_by(*argv) == []


def test_a_commands_help_imports_that_command_only() -> None:
    mods = imported_by("ingest", "scim", "--help")
    assert [m for m in mods if m.startswith("provlens.commands.")] == [
        "provlens.commands.ingest_scim"
    ]
    assert not [m for m in mods if m.split(".")[0] in ("pandas", "msgraph", "streamlit")]


def test_the_help_lines_come_from_the_registry(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["ingest", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for c in commands.COMMANDS:
        if c.words[0] == "ingest":
            assert f"{c.words[1]} {' '.join(c.help.split())[:40]}" in out


def test_every_command_module_is_registered_once_with_configure_and_run() -> None:
    names = {m.name for m in pkgutil.iter_modules(commands.__path__)}
    registered = [c.module for c in commands.COMMANDS]
    assert sorted(registered) == sorted(names), (
        "add a Command line in provlens/commands/__init__.py"
    )
    assert len({c.words for c in commands.COMMANDS}) == len(commands.COMMANDS)
    for c in commands.COMMANDS:
        mod = __import__(f"provlens.commands.{c.module}", fromlist=["run"])
        assert callable(mod.configure) and callable(mod.run)
        assert not hasattr(mod, "HELP"), f"{c.module}: the help line lives in the registry only"
        assert 1 <= len(c.words) <= 2


def test_an_unregistered_module_still_runs(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """A module merged without its registry line works (eagerly imported) by its COMMAND/HELP."""
    from provlens.commands import store_info

    monkeypatch.setattr(
        commands, "COMMANDS", tuple(c for c in commands.COMMANDS if c.module != "store_info")
    )
    monkeypatch.setattr(store_info, "COMMAND", ("store", "info"), raising=False)
    monkeypatch.setattr(store_info, "HELP", "legacy help line", raising=False)
    with pytest.raises(SystemExit):
        cli.main(["store", "--help"])
    assert "legacy help line" in capsys.readouterr().out


def test_store_info_does_not_import_pandera(tmp_path: Path) -> None:
    """pandera (about 1 s to import) is for validating in tests, not for reading the store."""
    mods = imported_by("--store", str(tmp_path / "s"), "store", "info")
    assert "provlens.commands.store_info" in mods
    assert "pandas" in mods  # the store is read with pandas
    assert not [m for m in mods if m.split(".")[0] == "pandera"]


def test_ingest_file_help_imports_no_heavy_library_and_lists_every_format() -> None:
    from ingest.files import kinds
    from provlens.commands import ingest_file

    assert list(ingest_file.KINDS) == kinds()
    heavy = [m for m in imported_by("ingest", "file", "--help") if not m.startswith("provlens.")]
    assert heavy == []
