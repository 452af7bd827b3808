"""Grow a store to ten times the 1M tier: older weeks of the same tenant, one ingest per week.

    python -m benchmarks.history --tier /tmp/query/bench-data/tier-1000000 \\
        --base /tmp/perf/store-cold --store /tmp/dsh/store-10m --copies 10 --work /tmp/dsh/batches

The 1M demo tier (``benchmarks.data``; about 7 days of one app's provisioning log, 1011 Graph
pages of 1,000 records, plus the wiki's SCIM audit log) is the current week. Copy ``k`` (1 ..
copies-1) is the same week ``k * SHIFT_DAYS`` days earlier: every time moved back by whole days,
every event id, cycle id and change id (v4 UUIDs: their version digit becomes one per copy) and
wiki request id (`r-` becomes `r<k>-`) rewritten deterministically; users, groups, the app and
the job unchanged. So the store ends up as one tenant with ten weeks of history: the same
users appear in every week, as they do in a real log, and ``now`` (the tier's reference time)
stays the newest data.

Each copy is written to ``--work`` as Graph pages plus an audit log, ingested with ``provlens
ingest file`` (one run, one commit, like a weekly pull of both sides) and deleted before the next
one is written; so at most one copy's files (about 5 GB) exist at a time. The run stops before
writing a copy when the disk would keep less than ``--min-free-gb``. Each ingest's wall time and
peak RSS (``os.wait4`` of the ingest process) go to ``--out`` as JSON lines, as they happen.
The base store (``--base``: the 1M tier already ingested, with its state files) is copied, never
modified. Copies are ingested oldest first.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
SHIFT_DAYS = 8  # the tier spans 7 days and 30 minutes: copies never overlap
NAMESPACE = uuid.UUID("6f1c1b9e-3f0e-4c57-9d59-7d0c55f0a8a1")  # provlens benchmark copies


def shift_time(text: str, days: int) -> str:
    """Return an ISO 8601 time ``days`` earlier, the rest of the text (fraction, zone) as it was."""
    day = dt.date.fromisoformat(text[:10]) - dt.timedelta(days=days)
    return day.isoformat() + text[10:]


def new_uuid(copy: int, old: str) -> str:
    """Return the id ``old`` takes in copy ``copy`` (a uuid5: stable, distinct per copy)."""
    return str(uuid.uuid5(NAMESPACE, f"{copy}/{old}"))


def _nibble(copy: int) -> bytes:
    """Return the version digit the v4 ids of copy ``copy`` get instead of `4`."""
    return "012356789abcdef"[copy - 1 : copy].encode()


# The demo writes compact JSON with the record's id first: a record's own id follows `[{` or
# `},{`; nested ids (app, identities) follow `":{`. Ids are v4 UUIDs (version digit 4), so
# putting another digit there is a bijection and no copy's id can equal another copy's.
_RECORD_IDS = re.compile(
    rb'((?:\[|\},)\{"id":"|"cycleId":"|"changeId":")([0-9a-f]{8}-[0-9a-f]{4}-)4'
)
_ACTIVITY_DAY = re.compile(rb'"activityDateTime":"(\d{4}-\d\d-\d\d)')
_AUDIT_DAY = re.compile(rb'^\{"time":"(\d{4}-\d\d-\d\d)', re.MULTILINE)


def _day_shifter(days: int) -> Any:
    def shift(match: re.Match[bytes]) -> bytes:
        day = dt.date.fromisoformat(match.group(1).decode()) - dt.timedelta(days=days)
        return match.group(0)[: match.start(1) - match.start(0)] + day.isoformat().encode()

    return shift


def rewrite_record(rec: dict[str, Any], copy: int) -> dict[str, Any]:
    """Return a provisioning record as copy ``copy`` has it (ids rewritten, time shifted)."""
    days = copy * SHIFT_DAYS
    for key in ("id", "cycleId", "changeId"):
        if rec.get(key):
            rec[key] = new_uuid(copy, str(rec[key]))
    if rec.get("activityDateTime"):
        rec["activityDateTime"] = shift_time(str(rec["activityDateTime"]), days)
    return rec


def rewrite_page(raw: bytes, copy: int) -> tuple[bytes, int]:
    """Return a Graph page as copy ``copy`` has it, and its record count.

    The fast path edits the bytes (ids' version digit, the activity day); a page it cannot
    account for exactly (not every record's three ids and time found) is parsed and rewritten
    record by record instead.
    """
    records = raw.count(b'"activityDateTime"')
    out, ids = _RECORD_IDS.subn(rb"\g<1>\g<2>" + _nibble(copy), raw)
    out, days = _ACTIVITY_DAY.subn(_day_shifter(copy * SHIFT_DAYS), out)
    if ids == 3 * records and days == records:
        return out, records
    doc = orjson.loads(raw)
    doc["value"] = [rewrite_record(r, copy) for r in doc["value"]]
    doc.pop("@odata.nextLink", None)
    return orjson.dumps(doc), len(doc["value"])


def write_pages(pages: list[Path], out: Path, copy: int) -> int:
    """Write copy ``copy`` of the tier's pages into ``out``; return the records written."""
    n = 0
    for page in pages:
        data, count = rewrite_page(page.read_bytes(), copy)
        (out / page.name).write_bytes(data)
        n += count
    return n


def write_audit(audit: Path, out: Path, copy: int) -> int:
    """Write copy ``copy`` of the wiki's SCIM audit log (JSON Lines) into ``out``; return lines.

    Each line's time moves back by whole days and its request id `r-<hex>` becomes
    `r<copy>-<hex>`, edited in the bytes; the counts are checked against the lines.
    """
    shift = _day_shifter(copy * SHIFT_DAYS)
    tag = f'"request_id":"r{copy}-'.encode()
    n = 0
    with audit.open("rb") as src, out.open("wb") as dst:
        while True:
            block = src.read(1 << 26)
            if not block:
                break
            rest = src.readline()  # end the block on a line boundary
            block += rest
            lines = block.count(b"\n") + (0 if block.endswith(b"\n") else 1)
            block, times = _AUDIT_DAY.subn(shift, block)
            ids = block.count(b'"request_id":"r-')
            if times != lines or ids != lines:
                raise ValueError(f"{audit}: {lines} lines, {times} times, {ids} request ids")
            dst.write(block.replace(b'"request_id":"r-', tag))
            n += lines
    return n


def free_gb(path: Path) -> float:
    """Return the free space on ``path``'s file system in GB."""
    return shutil.disk_usage(path).free / 1e9


def ingest(store: Path, files: list[Path], log: Path) -> dict[str, Any]:
    """Run `provlens ingest file --no-model` on ``files`` into ``store``; return wall s, CPU s,
    peak RSS (of the ingest itself: the derived model it would build after its commit is the
    reports' cost, measured by benchmarks.reports_cli)."""
    cmd = [sys.executable, "-m", "provlens", "--store", str(store), "ingest", "file", "--no-model"]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    t0 = time.perf_counter()
    with log.open("ab") as fh:
        proc = subprocess.Popen([*cmd, *map(str, files)], cwd=ROOT, env=env, stdout=fh, stderr=fh)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {
        "exit": proc.returncode,
        "wall_s": round(time.perf_counter() - t0, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "peak_rss_mb": round(usage.ru_maxrss / 1024),
    }


def store_rows(store: Path) -> dict[str, int]:
    """Return the store's row count per table (from its manifest)."""
    manifest = json.loads((store / "manifest.json").read_text())
    return {str(k): int(v) for k, v in manifest["rows"].items()}


def main(argv: list[str] | None = None) -> int:
    """Build the store; print and append one JSON line per ingested copy."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tier", type=Path, required=True, help="tier dir holding demo/ (read only)")
    ap.add_argument("--base", type=Path, required=True, help="the tier ingested (copied)")
    ap.add_argument("--store", type=Path, required=True, help="the store to grow")
    ap.add_argument("--copies", type=int, default=10, help="weeks in the end (base included)")
    ap.add_argument("--work", type=Path, required=True, help="where one copy's files go")
    ap.add_argument("--out", type=Path, required=True, help="JSON lines: one per ingest")
    ap.add_argument("--min-free-gb", type=float, default=10.0)
    ap.add_argument("--no-audit", action="store_true", help="copy the events only")
    args = ap.parse_args(argv)

    demo = args.tier / "demo"
    pages = sorted(demo.glob("provisioning-*.json"))
    audit = demo / "wiki-scim-audit.jsonl"
    if not pages:
        print(f"{demo}: no provisioning-*.json pages", file=sys.stderr)
        return 2
    if not args.store.exists():
        shutil.copytree(args.base, args.store)
    args.work.mkdir(parents=True, exist_ok=True)
    log = args.out.with_suffix(".log")
    done = (
        {json.loads(line)["copy"] for line in args.out.read_text().splitlines()}
        if (args.out.exists())
        else set()
    )
    # Oldest first: copy copies-1 is the earliest week.
    for copy in range(args.copies - 1, 0, -1):
        if copy in done:
            continue
        need = 6.0 + args.min_free_gb  # one copy's pages (~3.6 GB) and audit (~1.5 GB) + margin
        if free_gb(args.work) < need:
            print(f"stopping: {free_gb(args.work):.1f} GB free, need {need:.0f}", file=sys.stderr)
            return 1
        batch = args.work / f"copy-{copy}"
        if batch.exists():
            shutil.rmtree(batch)
        batch.mkdir()
        t0 = time.perf_counter()
        events = write_pages(pages, batch, copy)
        files = sorted(batch.glob("provisioning-*.json"))
        requests = 0
        if audit.exists() and not args.no_audit:
            requests = write_audit(audit, batch / "wiki-scim-audit.jsonl", copy)
            files.append(batch / "wiki-scim-audit.jsonl")
        written_s = time.perf_counter() - t0
        disk = free_gb(args.work)
        run = ingest(args.store, files, log)
        shutil.rmtree(batch)
        line = {
            "copy": copy,
            "events": events,
            "wiki_requests": requests,
            "write_s": round(written_s, 1),
            "free_gb_at_ingest": round(disk, 1),
            **run,
            "rows": store_rows(args.store),
            "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        with args.out.open("a") as fh:
            fh.write(json.dumps(line) + "\n")
        print(json.dumps(line), flush=True)
        if run["exit"] != 0:
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
