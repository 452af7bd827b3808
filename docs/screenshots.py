"""Take the README's screenshots: one per dashboard page, in real Chromium, on a demo store.

    .venv/bin/provlens --store /tmp/demo --now 2026-12-03T11:30:00Z demo --no-dashboard
    .venv/bin/provlens --store /tmp/demo --now 2026-12-03T11:30:00Z alert   # the Alerts page's rows
    .venv/bin/python docs/screenshots.py /tmp/demo 2026-12-03T11:30:00Z

Writes docs/screenshot-<page>.png (1440x1100, light theme, browser zone Europe/Paris). The Users
and Events pages open a deep link to the demo's most recent failure, so they show a diagnosis.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dashboard import launch  # noqa: E402
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

PAGES = (
    "overview",
    "cycles",
    "users",
    "events",
    "failures",
    "coverage",
    "estimate",
    "access_time",
    "scim_traffic",
    "alerts",
    "export",
)


def _subject(store: Path, now: str) -> tuple[str, str]:
    """Return (UPN, change id) of the newest failure still failing (a conflict if any)."""
    import pandas as pd

    from ingest.store import Store
    from reports import Inputs, run_report

    events = Store(store).read("events")
    frame = run_report(
        "recent-failures", Inputs(events=events), now=pd.Timestamp(now), limit=100_000
    ).frame
    assert frame is not None and not frame.empty, "the demo store has no failure"
    open_ = frame.loc[~frame["cleared_by_success"].fillna(False).astype(bool)]
    # A conflict shows both sides: Entra's error and the wiki's 409 answer.
    conflict = open_.loc[open_["error_code"].astype("str").str.endswith("EntryConflict")]
    row = (conflict if len(conflict) else open_).iloc[0]
    return str(row["source_upn"]), str(row["last_change_id"])


def main(store: Path, now: str, out: Path = ROOT / "docs") -> None:
    """Serve the dashboard on ``store`` at ``now`` and save one screenshot per page."""
    from playwright.sync_api import sync_playwright

    upn, change = _subject(store, now)
    urls = {page: "" if page == "overview" else page for page in PAGES}
    urls["users"] = f"users?user={quote(upn)}"
    urls["events"] = f"events?change={quote(change)}"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    env = dict(os.environ, PROVLENS_STORE=str(store), PROVLENS_NOW=now, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [*launch.command(port, "127.0.0.1"), "--server.fileWatcherType=none"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"{base}/_stcore/health", timeout=2)  # noqa: S310
                break
            except OSError:
                time.sleep(0.25)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            context = browser.new_context(
                viewport={"width": 1440, "height": 1100},
                color_scheme="light",
                timezone_id="Europe/Paris",
            )
            page = context.new_page()
            ready = '[data-testid="stApp"][data-test-script-state="notRunning"]'
            for name, path in urls.items():
                page.goto(f"{base}/{path}", wait_until="domcontentloaded")
                page.wait_for_selector(ready, timeout=120_000)
                page.wait_for_timeout(2500)  # charts draw after the script run ends
                page.wait_for_selector(ready, timeout=120_000)
                target = out / f"screenshot-{name}.png"
                page.screenshot(path=str(target))
                print(target)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
