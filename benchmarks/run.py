"""provlens benchmark suite: one command, one table.

    python -m benchmarks.run                       # 10k, 100k and 1M events (~20 min)
    python -m benchmarks.run --sizes 10000,100000  # skip the 1M tier
    python -m benchmarks.run --quick               # 10k only, fast Graph pull (the smoke test)

Data comes from the demo simulator (``demo``), cached under ``--data`` (default
``artifacts/bench-data``; simulating the 1M tier takes about 10 minutes the first time). For
every size it measures, each in a fresh subprocess (wall time, CPU time and peak RSS of that
process alone):

1. File ingest of one Graph list response holding all the events: ``provlens ingest file``'s
   code path (ingest.files.ingest_files into a new store) beside the baselines on the same
   bytes: ``json.load`` + ``pandas.json_normalize`` (events, and steps via ``record_path``),
   msgraph-sdk's typed models (kiota JsonParseNode ->
   ``ProvisioningObjectSummaryCollectionResponse``, per page of 1000), and the floor, orjson
   parsing the bytes and nothing else. Baselines above ``--baseline-max`` events are measured on
   the first ``--baseline-max`` records, the typed models (about 100 records/s) on the first
   ``--typed-max``; their rate is per event, so it carries over, but not their memory.
2. Graph pull against the loopback server enforcing 5 requests / 10 s (benchmarks.graph_pull).
3. Reports the dashboard computes on first load, on the ingested store (plus the demo's SCIM and
   scope files), each timed, beside one full read of the events table.
4. Dashboard: `streamlit run` on that store, real headless Chromium; time to the first complete
   render of Overview, then of the Users page showing one user; the server's RSS.

Figures vary with the machine's load; ratios measured in the same run are the comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.browser import CHROMIUM, CHROMIUM_ARGS

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_SIZES = (10_000, 100_000, 1_000_000)
DASHBOARD_REPORTS = (
    "summary",
    "cycles",
    "users",
    "failures",
    "skips",
    "coverage",
    "estimate",
    "correlation",
    "scim-traffic",
    "quarantine-risk",
)
NOW = "2026-11-20T10:00:00Z"  # the demo's data window ends here


# ---- workers: each runs in its own process and prints one JSON line ---------------------


def _usage() -> dict[str, float]:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"cpu_s": ru.ru_utime + ru.ru_stime, "peak_rss_mb": ru.ru_maxrss / 1024}


def _timed(work: Callable[[], int]) -> dict[str, Any]:
    before = _usage()
    t0 = time.perf_counter()
    n = work()
    wall = time.perf_counter() - t0
    after = _usage()
    return {
        "events": n,
        "wall_s": wall,
        "cpu_s": after["cpu_s"] - before["cpu_s"],
        "peak_rss_mb": after["peak_rss_mb"],
        "rss_before_mb": before["peak_rss_mb"],
    }


def _pages_for(tier_dir: Path, limit: int) -> list[Path]:
    """The simulator's 1000-record pages covering the first ``limit`` records of the tier."""
    import orjson

    out, n = [], 0
    for page in sorted((tier_dir / "demo").glob("provisioning-*.json")):
        if n >= limit:
            break
        out.append(page)
        n += len(orjson.loads(page.read_bytes())["value"])
    return out


def worker_provlens(doc: Path, store: Path) -> dict[str, Any]:
    from ingest.files import ingest_files
    from ingest.store import Store

    def work() -> int:
        result = ingest_files(Store(store), [doc])
        return int(result.read.get("events", 0))

    return _timed(work)


def _first_records(doc: Path, limit: int) -> bytes:
    """Return a Graph list response of the first ``limit`` records of ``doc`` (streamed)."""
    from ingest.jsonstream import iter_chunks

    parts, n = [], 0
    for chunk in iter_chunks(doc, 0, "pages", doc.name, max_records=min(limit, 20_000)):
        take = min(len(chunk.starts), limit - n)
        lines = bytes(chunk.data).split(b"\n")[:take]
        parts.append(b",".join(lines))
        n += take
        if n >= limit:
            break
    return b'{"value":[' + b",".join(parts) + b"]}"


def worker_orjson(doc: Path, limit: int) -> dict[str, Any]:
    import orjson

    data = doc.read_bytes() if limit <= 0 else _first_records(doc, limit)

    def work() -> int:
        return len(orjson.loads(data)["value"])

    return _timed(work)


def worker_normalize(doc: Path, limit: int) -> dict[str, Any]:
    import io

    import pandas as pd

    raw = doc.read_bytes() if limit <= 0 else _first_records(doc, limit)

    def work() -> int:
        payload = json.load(io.BytesIO(raw))
        records = payload["value"]
        events = pd.json_normalize(records)
        steps = pd.json_normalize(
            records, record_path="provisioningSteps", meta=["id"], meta_prefix="event."
        )
        del steps
        return len(events)

    return _timed(work)


def worker_typed(doc: Path, limit: int) -> dict[str, Any]:
    import orjson
    from kiota_serialization_json.json_parse_node_factory import JsonParseNodeFactory
    from msgraph.generated.models.provisioning_object_summary_collection_response import (
        ProvisioningObjectSummaryCollectionResponse as Page,
    )

    raw = doc.read_bytes() if limit <= 0 else _first_records(doc, limit)
    records = orjson.loads(raw)["value"]
    # The SDK parses one HTTP response (a page of up to 1000 records) at a time.
    pages = [orjson.dumps({"value": records[i : i + 1000]}) for i in range(0, len(records), 1000)]
    del records, raw
    factory = JsonParseNodeFactory()

    def work() -> int:
        n = 0
        for body in pages:
            node = factory.get_root_parse_node("application/json", body)
            page = node.get_object_value(Page)
            n += len(page.value or [])
        return n

    return _timed(work)


def worker_reports(store_path: Path) -> dict[str, Any]:
    import pandas as pd

    from dashboard.data import EVENT_COLUMNS
    from ingest.store import Store
    from reports import Inputs, run_report

    store = Store(store_path)
    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    events_all = store.read("events")
    out["scan_events_s"] = time.perf_counter() - t0
    out["events"] = len(events_all)
    del events_all
    t0 = time.perf_counter()
    tables = {t: store.read(t) for t in Inputs.__dataclass_fields__ if t != "events"}
    tables["events"] = store.read("events", columns=list(EVENT_COLUMNS))
    inputs = Inputs(**tables)
    out["load_inputs_s"] = time.perf_counter() - t0
    now = pd.Timestamp(NOW)
    times: dict[str, float] = {}
    for name in DASHBOARD_REPORTS:
        t0 = time.perf_counter()
        run_report(name, inputs, now=now)
        times[name] = time.perf_counter() - t0
    out["reports_s"] = times
    out["reports_total_s"] = sum(times.values())
    out["peak_rss_mb"] = _usage()["peak_rss_mb"]
    return out


def worker_dashboard(store_path: Path) -> dict[str, Any]:
    import socket
    import urllib.request

    import psutil
    from playwright.sync_api import sync_playwright

    from dashboard import launch

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    env = launch.environment(store_path)
    env["PROVLENS_NOW"] = NOW
    home = store_path.parent / "home"
    home.mkdir(exist_ok=True)
    env["HOME"] = str(home)
    log = (store_path.parent / "streamlit.log").open("wb")
    proc = subprocess.Popen(
        [*launch.command(port, "127.0.0.1"), "--server.fileWatcherType=none"],
        cwd=store_path.parent,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    out: dict[str, Any] = {}
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("streamlit did not become healthy") from None
                time.sleep(0.2)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1440, "height": 1100})
            t0 = time.perf_counter()
            page.goto(url, wait_until="domcontentloaded")
            page.get_by_role("heading", name="Overview", exact=True).first.wait_for(timeout=600_000)
            _settle(page)
            out["overview_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            page.get_by_test_id("stSidebarNav").get_by_text("Users", exact=True).click()
            page.get_by_role("heading", name="Users", exact=True).first.wait_for(timeout=600_000)
            page.get_by_text("Selected user").first.wait_for(timeout=600_000)
            _settle(page)
            out["users_s"] = time.perf_counter() - t0
            out["exceptions"] = page.locator('[data-testid="stException"]').count()
            browser.close()
        server = psutil.Process(proc.pid)
        rss = server.memory_info().rss + sum(
            c.memory_info().rss for c in server.children(recursive=True)
        )
        out["server_rss_mb"] = rss / 2**20
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    return out


def _settle(page: Any) -> None:
    """Complete render: the script run is over, no spinner or skeleton, every chart drawn."""
    page.wait_for_selector(
        '[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=600_000
    )
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stSpinner\"]') && "
        "!document.querySelector('[data-testid=\"stSkeleton\"]') && "
        "document.querySelectorAll('[data-testid=\"stPlotlyChart\"]').length > 0 && "
        "Array.from(document.querySelectorAll('[data-testid=\"stPlotlyChart\"]'))"
        ".every(c => c.querySelector('.main-svg'))",
        timeout=600_000,
    )


def worker_graph(quick: bool) -> dict[str, Any]:
    from benchmarks.graph_pull import graph_pull

    return graph_pull(pages=20, limit=5, window=1.0 if quick else 10.0)


WORKERS: dict[str, Callable[..., dict[str, Any]]] = {
    "provlens": worker_provlens,
    "orjson": worker_orjson,
    "normalize": worker_normalize,
    "typed": worker_typed,
    "reports": worker_reports,
    "dashboard": worker_dashboard,
    "graph": worker_graph,
}


def _run_worker(name: str, *args: Any) -> dict[str, Any]:
    """Run worker ``name`` in a fresh Python process; return its JSON result (or an error)."""
    cmd = [sys.executable, "-m", "benchmarks.run", "--worker", name, *map(str, args)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return dict(json.loads(line))
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"error": " | ".join(tail) or f"exit {proc.returncode}"}


def _worker_main(argv: list[str]) -> int:
    name, *rest = argv
    fn = WORKERS[name]
    args: list[Any] = []
    for a in rest:
        args.append(int(a) if a.lstrip("-").isdigit() else Path(a) if "/" in a else a)
    if name == "graph":
        args = [rest[0] == "1"]
    print(json.dumps(fn(*args), default=str))
    return 0


# ---- the suite ----------------------------------------------------------------------------


def machine() -> dict[str, str]:
    """Describe the machine: CPU model, cores, memory, OS, Python."""
    cpu = "unknown"
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "unknown"
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": mem,
        "os": platform.platform(),
        "python": platform.python_version(),
        "load_avg": " ".join(f"{x:.1f}" for x in os.getloadavg()),
    }


def run_suite(args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks.data import prepare

    data_dir = Path(args.data)
    work = Path(args.work)
    sizes = [10_000] if args.quick else [int(s) for s in args.sizes.split(",") if s]
    skip = set(filter(None, args.skip.split(",")))
    results: dict[str, Any] = {"machine": machine(), "sizes": sizes, "tiers": {}}
    baseline_cache: dict[str, dict[str, Any]] = {}
    for n in sizes:
        _say(f"== {n:,} events: preparing data")
        tier = prepare(n, data_dir)
        res: dict[str, Any] = {"file_mb": tier.document.stat().st_size / 2**20}
        store = work / f"store-{n}"
        if store.exists():
            shutil.rmtree(store)
        store.parent.mkdir(parents=True, exist_ok=True)
        _say("   file ingest: provlens")
        res["provlens"] = _run_worker("provlens", tier.document, store)
        for base in ("orjson", "normalize", "typed"):
            if base in skip:
                continue
            cap = args.typed_max if base == "typed" else args.baseline_max
            limit = 0 if n <= cap else cap
            key = f"{base}:{limit or n}"
            if limit and key in baseline_cache:
                res[base] = {**baseline_cache[key], "sample": limit}
                continue
            _say(f"   file ingest: baseline {base}" + (f" (first {limit:,})" if limit else ""))
            src = tier.document if not limit else _sample_doc(tier, limit, data_dir)
            res[base] = _run_worker(base, src, 0)
            if limit:
                res[base]["sample"] = limit
            baseline_cache[key] = res[base]
        # The rest of the tenant (wiki audit, scope, state) so every report has its inputs.
        _say("   store: adding the demo's SCIM and scope files")
        from ingest.files import ingest_files
        from ingest.store import Store

        if "reports" not in skip or "dashboard" not in skip:
            ingest_files(Store(store), tier.state_files())
        if "reports" not in skip:
            _say("   reports")
            res["reports"] = _run_worker("reports", store)
        if "dashboard" not in skip:
            _say("   dashboard (streamlit + chromium)")
            res["dashboard"] = _run_worker("dashboard", store)
        results["tiers"][str(n)] = res
        if not args.keep_stores:
            shutil.rmtree(store, ignore_errors=True)
    if "graph" not in skip:
        _say("== Graph pull (loopback server, 5 requests / window)")
        results["graph"] = _run_worker("graph", "1" if args.quick else "0")
    return results


def _sample_doc(tier: Any, limit: int, data_dir: Path) -> Path:
    path = data_dir / f"sample-{tier.events}-{limit}.json"
    if not path.exists():
        path.write_bytes(_first_records(tier.document, limit))
    return path


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---- the table ----------------------------------------------------------------------------


def _f(x: Any, fmt: str = "{:,.1f}") -> str:
    if x is None or (isinstance(x, float) and x != x):
        return "–"
    return fmt.format(x)


def render(results: dict[str, Any]) -> str:
    """Return the results as Markdown tables."""
    m = results["machine"]
    out = [
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory']} RAM, {m['os']}, "
        f"Python {m['python']}; load average at the end {m['load_avg']}.",
        "",
        "### File ingest (one Graph list response holding all events)",
        "",
        "| events | file MB | method | wall s | events/s | CPU s | events/CPU-s | peak RSS MB |"
        " provlens speed-up (wall) | (CPU) |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    labels = {
        "provlens": "**provlens ingest file** (stream + columnar)",
        "orjson": "floor: orjson.loads of the bytes",
        "normalize": "json.load + pandas.json_normalize",
        "typed": "msgraph-sdk typed models",
    }
    for n, res in results["tiers"].items():
        prov = res.get("provlens", {})
        for key, label in labels.items():
            r = res.get(key)
            if not r:
                continue
            if "error" in r:
                out.append(f"| {int(n):,} | | {label} | error: {r['error'][:80]} | | | | | | |")
                continue
            ev, wall, cpu = r["events"], r["wall_s"], r["cpu_s"]
            sample = f" (first {r['sample']:,})" if r.get("sample") else ""
            rss = "–" if r.get("sample") else _f(r["peak_rss_mb"], "{:,.0f}")
            rate_w = ev / wall if wall else None
            rate_c = ev / cpu if cpu else None
            if key == "provlens" or "error" in prov:
                sw = sc = ""
            else:
                pw = prov["events"] / prov["wall_s"]
                pc = prov["events"] / prov["cpu_s"]
                sw = _f(pw / rate_w, "{:.1f}×") if rate_w else ""
                sc = _f(pc / rate_c, "{:.1f}×") if rate_c else ""
            out.append(
                f"| {int(n):,} | {res['file_mb']:,.0f} | {label}{sample} | {_f(wall)} | "
                f"{_f(rate_w, '{:,.0f}')} | {_f(cpu)} | {_f(rate_c, '{:,.0f}')} | {rss} | "
                f"{sw} | {sc} |"
            )
    out += [
        "",
        "Speed-up = provlens events/s ÷ that method's events/s (for the floor, above 1× means "
        "provlens stores frames faster than orjson alone builds Python objects).",
    ]
    if any("reports" in r for r in results["tiers"].values()):
        out += [
            "",
            "### Reports the dashboard computes on first load",
            "",
            "| events | events scan s | load inputs s | "
            + " | ".join(DASHBOARD_REPORTS)
            + " | all reports s | ÷ scan | peak RSS MB |",
            "|---:|---:|---:|" + "---:|" * len(DASHBOARD_REPORTS) + "---:|---:|---:|",
        ]
        for n, res in results["tiers"].items():
            r = res.get("reports")
            if not r:
                continue
            if "error" in r:
                out.append(f"| {int(n):,} | error: {r['error'][:100]} |")
                continue
            cells = " | ".join(_f(r["reports_s"].get(k), "{:.2f}") for k in DASHBOARD_REPORTS)
            out.append(
                f"| {int(n):,} | {r['scan_events_s']:.2f} | {r['load_inputs_s']:.2f} | {cells} | "
                f"{r['reports_total_s']:.2f} | "
                f"{r['reports_total_s'] / r['scan_events_s']:.1f}× | {r['peak_rss_mb']:,.0f} |"
            )
    if any("dashboard" in r for r in results["tiers"].values()):
        out += [
            "",
            "### Dashboard in headless Chromium (first complete render)",
            "",
            "| events | Overview s (target < 5) | Users page, one user s (target < 2) | "
            "Streamlit RSS MB | exceptions |",
            "|---:|---:|---:|---:|---:|",
        ]
        for n, res in results["tiers"].items():
            d = res.get("dashboard")
            if not d:
                continue
            if "error" in d:
                out.append(f"| {int(n):,} | error: {d['error'][:120]} | | | |")
                continue
            out.append(
                f"| {int(n):,} | {d['overview_s']:.2f} | {d['users_s']:.2f} | "
                f"{d['server_rss_mb']:,.0f} | {d['exceptions']} |"
            )
    g = results.get("graph")
    if g:
        out += ["", "### Graph pull (loopback server enforcing the reporting limit)", ""]
        if "error" in g:
            out.append(f"error: {g['error']}")
        else:
            out += [
                "| pages | records | limit | wall s | throttle floor s | wall ÷ floor | HTTP 429 |",
                "|---:|---:|---|---:|---:|---:|---:|",
                f"| {g['pages']} | {g['records']} | {g['limit']} | {g['wall_s']} | "
                f"{g['floor_s']} | {g['wall_s'] / g['floor_s']:.2f}× | {g['http_429']} |",
            ]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the suite (or one worker) and print the table."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        return _worker_main(argv[1:])
    p = argparse.ArgumentParser(description="provlens benchmark suite")
    p.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)))
    p.add_argument("--quick", action="store_true", help="10k events only, fast Graph pull")
    p.add_argument("--data", default=str(ROOT / "artifacts" / "bench-data"))
    p.add_argument("--work", default=str(ROOT / "artifacts" / "bench-work"))
    p.add_argument("--skip", default="", help="comma list: normalize,typed,orjson,reports,...")
    p.add_argument("--baseline-max", type=int, default=100_000)
    p.add_argument(
        "--typed-max",
        type=int,
        default=5_000,
        help="typed-model baseline on at most this many records (it runs ~100 records/s)",
    )
    p.add_argument("--keep-stores", action="store_true")
    p.add_argument("--json", help="also write the raw results to this file")
    args = p.parse_args(argv)
    results = run_suite(args)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    print(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
