"""Bad input is refused cleanly: exit 3, one stderr line naming the file and place, store unchanged.

The corpus is ``tests/data/bad/`` (small files, committed; see its README) plus files generated
here into tmp (deep nesting, a huge single line). Every case runs through the real CLI entry point
(``provlens.cli.main``) against a store that already holds data, in the same call as a good file,
so "no change" also proves a batch is all-or-nothing across files.

Two things are *not* bad input (DESIGN.md "Output conventions"): UTF-16 with BOM decodes, and an
unknown enum value ingests as ``unknown`` with the raw value kept.

Sizes: CI writes a 20 MB single line; ``PROVLENS_STRESS=1`` writes the full 200 MB.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import orjson
import pytest

from ingest.store import Store
from provlens.cli import main

BAD = Path(__file__).parent / "data" / "bad"
EXAMPLES = Path(__file__).parent / "data" / "examples"
STRESS = os.environ.get("PROVLENS_STRESS") == "1"
# The larger counts need longer than the suite-wide 300 s per test.
pytestmark = pytest.mark.timeout(7200 if STRESS else 300)
BIG_LINE_MB = 200 if STRESS else 20

# file in tests/data/bad -> --kind to force (None: detect by content)
CORPUS: dict[str, str | None] = {
    "truncated.json": None,
    "truncated.jsonl": None,
    "invalid_utf8.json": None,
    "latin1.csv": None,
    "nul_bytes.json": None,
    "nul_bytes.jsonl": None,
    "nul_only.bin": None,
    "wrong_types_every_field.json": "graph",
    "wrong_types_id.json": None,
    "wrong_types_null_id.json": None,
    "wrong_types_time.json": None,
    "wrong_types_record.json": None,
    "wrong_types_audit.jsonl": None,
    "wrong_types_audit_status.jsonl": None,
    "wrong_types_scim_list.json": None,
    "date_year_99999.json": None,
    "date_year_0.json": None,
    "date_month_13.json": None,
    "date_audit_year_99999.jsonl": None,
    "date_audit_year_0.jsonl": None,
    "date_portal.csv": None,
    "mismatched_columns_extra.csv": None,
    "mismatched_columns_later_row.csv": None,
    "mismatched_columns_short.csv": None,
    "empty.json": None,
    "whitespace.json": None,
    "bom_only.json": None,
    "garbage.bin": None,
    "logs.zip": None,
    "logs_deflated.zip": None,
    "logs.json.gz": None,
    "not_a_log.txt": None,
    "access_log_bad_line.log": None,
    "no_records.json": None,
}
# Forcing a kind must not turn bad input into a success either.
FORCED: list[tuple[str, str]] = [
    ("empty.json", "scim_audit"),
    ("empty.json", "access_log"),
    ("whitespace.json", "scim_audit"),
    ("bom_only.json", "access_log"),
    ("logs.zip", "graph"),
    ("logs.zip", "scim_audit"),
    ("logs.json.gz", "portal_json"),
    ("garbage.bin", "portal_csv"),
    ("nul_only.bin", "log_analytics"),
    ("not_a_log.txt", "log_analytics"),
    ("not_a_log.txt", "portal_csv"),
    ("date_year_0.json", "portal_json"),
    ("truncated.json", "scim_list"),
    ("truncated.json", "sync_jobs"),
    ("truncated.json", "assignments"),
    ("truncated.json", "group_members"),
]


def _record(rid: str) -> dict:
    doc = json.loads((EXAMPLES / "graph-v1.0-list-provisioning-example1-success.json").read_text())
    rec = dict(doc["value"][0])
    rec["id"] = rid
    return rec


@pytest.fixture
def seeded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, Path]:
    """Return (store dir holding one good record, a second good file for the same call)."""
    store_dir = tmp_path / "store"
    good = tmp_path / "good.json"
    good.write_bytes(orjson.dumps({"value": [_record("kept-1")]}))
    assert main(["--store", str(store_dir), "ingest", "file", str(good)]) == 0
    other = tmp_path / "good2.json"
    other.write_bytes(orjson.dumps({"value": [_record("never-stored")]}))
    capsys.readouterr()
    return store_dir, other


def _place_named(err: str, path: Path) -> bool:
    """True when ``err`` names ``path`` and a place in it (file:line or file: record N)."""
    return bool(
        re.search(re.escape(path.name) + r"(:\d+|: ?record \d+|:resource \d+|:record \d+)", err)
    )


def assert_refused(
    store_dir: Path,
    other: Path,
    bad: Path,
    capsys: pytest.CaptureFixture[str],
    kind: str | None = None,
) -> str:
    """Ingest ``other`` + ``bad`` in one call and check the refusal contract; return stderr."""
    manifest = (store_dir / "manifest.json").read_bytes()
    info = Store(store_dir).info()
    # A forced kind applies to every file of the call, so then the bad file goes alone.
    argv = ["--store", str(store_dir), "ingest", "file", *([] if kind else [str(other)]), str(bad)]
    if kind:
        argv += ["--kind", kind]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 3, (code, err)
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert err.startswith("provlens: "), err
    assert "Traceback" not in err
    assert _place_named(err, bad), err
    assert len(err) < 2000, "one readable line, not a dump of the input"
    assert (store_dir / "manifest.json").read_bytes() == manifest
    assert Store(store_dir).info() == info
    ids = Store(store_dir).read("events")["id"].tolist()
    assert ids == ["kept-1"]
    return err


def test_corpus_is_complete() -> None:
    on_disk = {p.name for p in BAD.iterdir() if p.name != "README.md"}
    assert on_disk == set(CORPUS), "every committed bad file is exercised (and vice versa)"


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_bad_file_refused(
    name: str, seeded: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    store_dir, other = seeded
    assert_refused(store_dir, other, BAD / name, capsys, CORPUS[name])


@pytest.mark.parametrize(("name", "kind"), FORCED)
def test_bad_file_refused_with_forced_kind(
    name: str, kind: str, seeded: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    store_dir, other = seeded
    assert_refused(store_dir, other, BAD / name, capsys, kind)


def test_archives_refused_as_archives(
    seeded: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    store_dir, other = seeded
    for name in ("logs.zip", "logs_deflated.zip", "logs.json.gz"):
        err = assert_refused(store_dir, other, BAD / name, capsys)
        assert "archive" in err and "extract" in err, err


def test_year_zero_would_poison_every_later_command(
    seeded: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A date pandas parses but Python cannot hold must be refused, not stored."""
    store_dir, other = seeded
    err = assert_refused(store_dir, other, BAD / "date_year_0.json", capsys)
    assert "0000-01-01" in err
    assert main(["--store", str(store_dir), "report", "summary", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["events"] == 1


# ---- generated at test time -------------------------------------------------------------------

DEPTH = 100_000


def _generated(tmp_path: Path) -> dict[str, tuple[Path, str | None]]:
    cases: dict[str, tuple[Path, str | None]] = {}

    def put(name: str, data: bytes, kind: str | None = None) -> None:
        p = tmp_path / name
        p.write_bytes(data)
        cases[name] = (p, kind)

    put("nested_open.json", b"[" * DEPTH)
    put("nested_closed.json", b"[" * DEPTH + b"]" * DEPTH, "portal_json")
    put("nested_value.json", b'{"value": ' + b"[" * DEPTH + b"]" * DEPTH + b"}", "graph")
    put(
        "nested_activity.json",
        b'{"activityDateTime": "2026-11-20T10:00:00Z", "id": "x", "provisioningSteps": '
        + b"[" * DEPTH
        + b"]" * DEPTH
        + b"}",
    )
    # Several pretty-printed documents back to back go through a second JSON reader.
    put(
        "nested_concatenated.json",
        b'{\n "value": []\n}\n{"activityDateTime": ' + b"[" * DEPTH + b"]" * DEPTH + b"}",
        "graph",
    )
    put(
        "nested_audit.jsonl",
        b'{"time": "2026-11-20T10:15:03Z", "method": "GET", "path": "/scim/v2/Users", "request": '
        + b"[" * DEPTH
        + b"]" * DEPTH
        + b"}\n",
        "scim_audit",
    )
    put("nested_scim_list.json", b"[" * DEPTH + b"]" * DEPTH, "scim_list")
    put("nested_jobs.json", b'{"value": ' + b"[" * DEPTH + b"]" * DEPTH + b"}", "sync_jobs")
    return cases


GENERATED = [
    "nested_open.json",
    "nested_closed.json",
    "nested_value.json",
    "nested_activity.json",
    "nested_concatenated.json",
    "nested_audit.jsonl",
    "nested_scim_list.json",
    "nested_jobs.json",
]


@pytest.mark.parametrize("name", GENERATED)
def test_deeply_nested_json_refused(
    name: str, tmp_path: Path, seeded: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    store_dir, other = seeded
    path, kind = _generated(tmp_path)[name]
    assert_refused(store_dir, other, path, capsys, kind)


def _big_line(path: Path, prefix: bytes, mb: int) -> Path:
    chunk = b"A" * (1 << 20)
    with path.open("wb") as fh:
        fh.write(prefix)
        for _ in range(mb):
            fh.write(chunk)
    return path


# Source.lines() once took minutes on a 20 MB line (quadratic): a hang fails here, not in CI.
@pytest.mark.timeout(600 if STRESS else 120)
@pytest.mark.parametrize(
    ("name", "prefix", "kind"),
    [
        ("big_line.json", b'{"value": [{"id": "x", "activityDateTime": "', None),
        ("big_line.jsonl", b'{"time": "2026-11-20T10:15:03Z", "method": "GET", "path": "', None),
        ("big_line_audit.jsonl", b'{"time": "2026-11-20T10:15:03Z", "x": "', "scim_audit"),
        ("big_line.txt", b"", None),
        ("big_line.log", b"203.0.113.7 - - [20/Nov/2026:10:15:03 +0000] ", "access_log"),
    ],
)
def test_huge_single_line_refused(
    name: str,
    prefix: bytes,
    kind: str | None,
    tmp_path: Path,
    seeded: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    store_dir, other = seeded
    path = _big_line(tmp_path / name, prefix, BIG_LINE_MB)
    assert path.stat().st_size >= BIG_LINE_MB << 20
    assert_refused(store_dir, other, path, capsys, kind)


# ---- not bad input ----------------------------------------------------------------------------


def test_utf16_with_bom_decodes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rec = _record("utf16-1")
    rec["servicePrincipal"] = {**rec["servicePrincipal"], "displayName": "Zo\u00eb \u6f22\u5b57"}
    text = json.dumps({"value": [rec]}, indent=2, ensure_ascii=False)
    for bom, codec in ((b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be")):
        path = tmp_path / f"{codec}.json"
        path.write_bytes(bom + text.encode(codec))
        store_dir = tmp_path / f"store-{codec}"
        assert main(["--store", str(store_dir), "ingest", "file", str(path)]) == 0, capsys
        ev = Store(store_dir).read("events")
        assert ev["id"].tolist() == ["utf16-1"]
        assert ev["service_principal_name"].tolist() == ["Zo\u00eb \u6f22\u5b57"]


def test_unknown_enum_values_kept_raw(tmp_path: Path) -> None:
    rec = _record("enum-1")
    rec["provisioningAction"] = "teleport"
    rec["provisioningStatusInfo"] = {"status": "Sideways", "errorInformation": None}
    rec["initiatedBy"] = {**rec.get("initiatedBy", {}), "initiatorType": "robot"}
    steps = [dict(s) for s in rec["provisioningSteps"]]
    steps[0]["provisioningStepType"] = "divination"
    rec["provisioningSteps"] = steps
    path = tmp_path / "enums.json"
    path.write_bytes(orjson.dumps({"value": [rec]}))
    store_dir = tmp_path / "store"
    assert main(["--store", str(store_dir), "ingest", "file", str(path)]) == 0
    ev = Store(store_dir).read("events").iloc[0]
    assert (ev["action"], ev["action_raw"]) == ("unknown", "teleport")
    assert (ev["status"], ev["status_raw"]) == ("unknown", "Sideways")
    assert (ev["initiator_type"], ev["initiator_type_raw"]) == ("unknown", "robot")
    st = Store(store_dir).read("steps").sort_values("position").iloc[0]
    assert (st["step_type"], st["step_type_raw"]) == ("unknown", "divination")


def test_jsonl_strings_may_hold_unicode_line_separators(tmp_path: Path) -> None:
    """U+2028, U+2029 and U+0085 are legal raw inside JSON strings: not line breaks."""
    lines = [
        {
            "time": f"2026-11-20T10:15:0{i}Z",
            "method": "GET",
            "path": "/api/v2/scim/v2/Users",
            "status": 200,
            "client": f"proxy{sep}{i}",
        }
        for i, sep in enumerate(("\u2028", "\u2029", "\u0085"))
    ]
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b"\r\n".join(orjson.dumps(rec) for rec in lines) + b"\r\n")
    store_dir = tmp_path / "store"
    assert main(["--store", str(store_dir), "ingest", "file", str(path)]) == 0
    got = Store(store_dir).read("scim_requests").sort_values("received_at")
    assert got["client"].tolist() == ["proxy\u20280", "proxy\u20291", "proxy\u00852"]
