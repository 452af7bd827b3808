"""The dashboard in real headless Chromium: Overview, one user, a filter change; server memory.

    python -m benchmarks.dashboard --store S [--user UPN] [--now ISO] [--runs 3] [--out R.json]

Starts the real app on the store the way `provlens dashboard` does (``dashboard.launch``'s
command line and environment, localhost, a free port, file watching off, a private HOME), opens
it in Debian's Chromium through Playwright and times, from the action to the complete page:

1. **Overview**: opening the dashboard's address. The first open after the server started is
   *cold*: opened as soon as the server answers its health check, nothing cached but what the
   server's warm-up (dashboard.serve, started with the server process, before Streamlit's
   server is up) has computed meanwhile (the landing page's answers, two side by side; the page
   waits for an answer being computed instead of computing it twice); the derived model is read
   from beside the parts or computed; and a new browser profile: Streamlit's scripts are
   fetched. When each warm-up answer was ready is read from the server's log and reported
   beside the figures, with the seconds from starting the server to its health check's answer
   (``server_ready_s``: a user cannot open the page sooner);
   the next ones open a new tab of the same profile on the same server (*warm*: the server's
   caches hold the answers, the browser has the scripts).
2. **Filter change on Overview**: the sidebar's time range set to the last two days of data, then
   back to all of it, and one app picked then removed; each the first time for those filters
   (*cold*: new answers) and again (*warm*). The server's warm-up also computes the landing
   answers for the data's last 1, 2 and 7 days (``dashboard.asks.RECENT_DAYS``) once the
   default ones are done, so the first change to the last two days finds them computed when the
   warm-up got that far (its log line says when); a range it does not compute (the last 3 days,
   ``filter_time_other_cold``) is timed once too, then back to all data. Timed from the click
   that sends the change (leaving the typed date field, clicking the app), not the typing
   before it.
3. **Users page opened on one user**: the deep link ``users?user=<UPN>`` (what a ticket holds)
   in a new tab; the first open of that user is cold, reopening it warm. The model is already in
   the server's memory by then (Overview ran first), and the browser has the scripts. A new tab
   is a new page load: Streamlit's page start (scripts, websocket) and its table and chart
   components' scripts are part of it.
4. **Another user picked on the open Users page** (in-app, no new tab): in the last deep-link
   tab, the next user's UPN typed into the search box (untimed), then Enter; timed from the Enter
   to the complete page showing that user (its ``UPN: …`` line). *Cold*: a user never shown
   before (``--runs`` of them: the UPNs of the latest failed events after the measured user's);
   *warm*: back to a user already shown (its answers cached).

5. **The floor**: a bare Streamlit page (``benchmarks/floor_app.py``: a title, a line of text, a
   button), served with the dashboard's Streamlit options, opened ``--runs`` times in new tabs of
   the same profile: what any Streamlit page costs here before it shows an answer (page start,
   websocket, one script run, drawing). The page-load figures above are read against it.

**Complete** means all of these at once, checked in the page (``COMPLETE_JS``): Streamlit's
script state is ``notRunning`` and a run finished after the action (a MutationObserver counts
``running`` -> ``notRunning`` transitions, so a page still showing the previous run's elements
does not count); no element is marked stale (``data-stale="true"``: Streamlit greys elements of
the previous run until the new run replaces them); no spinner or skeleton; the page's last
element is present (Overview: the latest-failures table's download button or its empty notice;
Users: the support-pack download; a user picked in-app: also its ``UPN: …`` line);
every Plotly chart has drawn its SVG and every Vega-Lite chart
(Streamlit's native charts) its marks. The time recorded is
when this first held; it must still hold 0.5 s later (else the wait goes on), so a page that
reruns itself is not caught half-way. A wait that runs out is an error in the results, never a
figure.

Beside each figure: the page's Events KPI (Overview; a filter change must change it for the
time range), Python exceptions shown on the page (``stException``) and JavaScript errors
(``pageerror``). The server's peak RSS is its ``VmHWM`` (Linux) at the end, with every child
process's RSS. ``--compare`` times what a user would otherwise run for the same answers: the CLI
(``provlens report overview`` / ``diagnosis --user``) in a fresh process.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dashboard.asks import LANDING_ASKS as OVERVIEW_ASKS  # noqa: E402
from dashboard.asks import RECENT_DAYS  # noqa: E402
from dashboard.asks import SIDEBAR_ASKS as SIDEBAR_ASKS  # noqa: E402
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

# Issue 13's targets, seconds (the 1M tier; 10M: Overview only).
# The Users target (< 1 s on one user) is read for both ways of opening one: by deep link in a new
# tab (users_cold) and by picking another user on the open page (users_switch_cold).
TARGETS_1M = {
    "overview_cold": 3.0,
    "users_cold": 1.0,
    "users_switch_cold": 1.0,
    "filter_cold": 1.0,
}
TARGETS_10M = {"overview_cold": 10.0}

# Counts finished script runs: running -> notRunning on stApp's data-test-script-state.
RUN_COUNTER_JS = """
(() => {
  window.__provlensRuns = 0;
  window.__provlensMarks = {started: [], ended: []};  // performance.now() of each run
  const obs = new MutationObserver((records) => {
    for (const r of records) {
      const now = r.target.getAttribute('data-test-script-state');
      if (now === 'running' && r.oldValue !== 'running') {
        window.__provlensMarks.started.push(performance.now());
      }
      if (r.oldValue === 'running' && now !== 'running') {
        window.__provlensRuns += 1;
        window.__provlensMarks.ended.push(performance.now());
      }
    }
  });
  const start = () => obs.observe(document.documentElement, {
    subtree: true, attributes: true, attributeOldValue: true,
    attributeFilter: ['data-test-script-state'],
  });
  if (document.documentElement) start(); else document.addEventListener('DOMContentLoaded', start);
})();
"""

COMPLETE_JS = """
(args) => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  if ((window.__provlensRuns || 0) <= args.after) return false;
  if (document.querySelector('[data-stale="true"]')) return false;
  if (document.querySelector('[data-testid="stSpinner"], [data-testid="stSkeleton"]')) return false;
  if (!document.querySelector(args.marker)) return false;
  if (args.text && !Array.from(document.querySelectorAll('[data-testid="stText"]'))
      .some(t => t.innerText.includes(args.text))) return false;
  const h1 = Array.from(document.querySelectorAll('h1')).map(h => h.innerText.trim());
  if (!h1.includes(args.heading)) return false;
  const charts = Array.from(document.querySelectorAll('[data-testid="stPlotlyChart"]'));
  if (!charts.every(c => c.querySelector('.main-svg'))) return false;
  const vega = Array.from(document.querySelectorAll('[data-testid="stVegaLiteChart"]'));
  return vega.every(c => c.querySelector('canvas.marks, svg.marks'));
}
"""

# A finished run that shows an exception will never complete: its text, else null.
FAILED_JS = """
(args) => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return null;
  if ((window.__provlensRuns || 0) <= args.after) return null;
  const exc = document.querySelector('[data-testid="stException"]');
  return exc ? exc.innerText.trim().split('\\n').slice(0, 2).join(' ').slice(0, 300) : null;
}
"""

# The last element each page draws (a widget's key becomes the class st-key-<key>).
OVERVIEW_MARKER = ".st-key-dl_latest-failures"
USERS_MARKER = ".st-key-users_support_pack_xlsx"
# The engine's floor: a bare Streamlit page (benchmarks/floor_app.py) and its last element.
FLOOR_APP = Path(__file__).resolve().parent / "floor_app.py"
FLOOR_MARKER = ".st-key-floor_done"

KPI_JS = """
(label) => {
  for (const m of document.querySelectorAll('[data-testid="stMetric"]')) {
    const l = m.querySelector('[data-testid="stMetricLabel"]');
    if (l && l.innerText.trim() === label) {
      const v = m.querySelector('[data-testid="stMetricValue"]');
      return v ? v.innerText.trim() : null;
    }
  }
  return null;
}
"""


def free_port() -> int:
    """Return a TCP port free on localhost now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A running dashboard server."""

    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    polled_peak_mb: float = 0.0
    ready_s: float | None = None  # from starting the process to its health check's answer
    stopped: str | None = None  # why the watchdog stopped the server

    def watch(self, max_rss_mb: float | None, every_s: float = 0.5) -> None:
        """Poll the server's RSS (children included) until it exits; stop it above the cap.

        Keeps the shared machine safe from a run that would take all its memory (the derived
        model at 10M events on today's code): the measurement ends as an error naming the cap.
        """
        import psutil

        try:
            proc = psutil.Process(self.proc.pid)
            while self.proc.poll() is None:
                rss = proc.memory_info().rss + sum(
                    c.memory_info().rss for c in proc.children(recursive=True)
                )
                self.polled_peak_mb = max(self.polled_peak_mb, rss / 2**20)
                if max_rss_mb is not None and rss / 2**20 > max_rss_mb:
                    mb = rss / 2**20
                    self.stopped = f"server RSS {mb:.0f} MB passed the cap {max_rss_mb:.0f} MB"
                    self.proc.kill()
                    return
                time.sleep(every_s)
        except psutil.Error:
            return

    def memory_mb(self) -> dict[str, float]:
        """Return the server's peak and current RSS (MB), children's current RSS included."""
        import psutil

        out = {"peak_rss_mb": 0.0, "rss_mb": 0.0}
        try:
            status = Path(f"/proc/{self.proc.pid}/status").read_text()
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    out["peak_rss_mb"] = int(line.split()[1]) / 1024
            proc = psutil.Process(self.proc.pid)
            rss = proc.memory_info().rss
            kids = sum(c.memory_info().rss for c in proc.children(recursive=True))
            out["rss_mb"] = (rss + kids) / 2**20
            out["peak_rss_mb"] += kids / 2**20
        except (OSError, psutil.Error):
            pass
        out["polled_peak_rss_mb"] = self.polled_peak_mb
        return {k: round(v) for k, v in out.items()}


@contextlib.contextmanager
def dashboard(
    store: Path,
    now: str | None,
    work: Path,
    timeout: float = 120,
    max_rss_mb: float | None = None,
) -> Iterator[Server]:
    """Run the dashboard on ``store`` like `provlens dashboard` (localhost, free port).

    A watchdog polls its memory and stops it above ``max_rss_mb`` (``Server.stopped`` says so).
    """
    from dashboard import launch

    port = free_port()
    env = launch.environment(store)
    if now:
        env[launch.NOW_ENV] = now
    command = [*launch.command(port, "127.0.0.1"), "--server.fileWatcherType=none"]
    with _serve(command, port, env, work, timeout, max_rss_mb) as server:
        yield server


@contextlib.contextmanager
def floor_page(work: Path, timeout: float = 120) -> Iterator[Server]:
    """Run :data:`FLOOR_APP` with the dashboard's Streamlit options (localhost, free port)."""
    from dashboard import launch

    port = free_port()
    command = [*launch.command(port, "127.0.0.1"), "--server.fileWatcherType=none"]
    # `python -m dashboard.serve run <app> <options>` -> `python -m streamlit run <floor> ...`
    at = command.index("dashboard.serve")
    command[at], command[at + 2] = "streamlit", str(FLOOR_APP)
    env = dict(os.environ)
    with _serve(command, port, env, work / "floor", timeout, None) as server:
        yield server


@contextlib.contextmanager
def _serve(
    command: list[str],
    port: int,
    env: dict[str, str],
    work: Path,
    timeout: float,
    max_rss_mb: float | None,
) -> Iterator[Server]:
    """Start ``command`` (a Streamlit server on ``port``), wait for its health check; stop it
    at the end."""
    import threading

    work.mkdir(parents=True, exist_ok=True)
    home = work / "home"
    home.mkdir(parents=True, exist_ok=True)
    env["HOME"] = str(home)  # no ~/.streamlit secrets or settings of the machine leak in
    log = work / "streamlit.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(command, cwd=work, env=env, stdout=fh, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with code {proc.returncode}; see {log}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{url} not healthy within {timeout} s") from None
                time.sleep(0.2)
        server = Server(url, proc, log, ready_s=round(time.perf_counter() - started, 2))
        threading.Thread(target=server.watch, args=(max_rss_mb,), daemon=True).start()
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Probe:
    """One browser tab on the dashboard, timing actions to the complete page."""

    page: Any
    timeout_s: float
    js_errors: list[str] = field(default_factory=list)
    server: Server | None = None

    @staticmethod
    def profile(browser: Any) -> Any:
        """Return a new browser profile (context): empty HTTP cache, no cookies."""
        context = browser.new_context(viewport={"width": 1440, "height": 1100})
        context.add_init_script(RUN_COUNTER_JS)
        return context

    @classmethod
    def open(cls, context: Any, timeout_s: float, server: Server | None = None) -> Probe:
        """Return a probe on a new tab of ``context`` (each page load is a new app session)."""
        page = context.new_page()
        probe = cls(page, timeout_s, server=server)
        page.on("pageerror", lambda exc: probe.js_errors.append(str(exc)[:300]))
        return probe

    def close(self) -> None:
        """Close the tab (its profile stays, with its cached scripts)."""
        self.page.close()

    def runs(self) -> int:
        """Return how many script runs finished in this tab so far."""
        return int(self.page.evaluate("() => window.__provlensRuns || 0"))

    def wait_complete(
        self, t0: float, heading: str, marker: str, after: int, text: str | None = None
    ) -> float:
        """Return seconds from ``t0`` until the page is complete (see the module docstring);
        with ``text``, a text element of the page must also hold it."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        args = {"heading": heading, "marker": marker, "after": after, "text": text}
        deadline = t0 + self.timeout_s
        while True:
            left = deadline - time.perf_counter()
            try:
                # In slices, so a server that died is noticed at once, not at the deadline.
                self.page.wait_for_function(
                    COMPLETE_JS, arg=args, timeout=max(min(left, 5.0), 0.001) * 1000, polling=50
                )
            except PlaywrightTimeout:
                if self.server is not None and self.server.proc.poll() is not None:
                    raise RuntimeError(self.server.stopped or "the server exited") from None
                failed = self.page.evaluate(FAILED_JS, args)
                if failed:
                    at = time.perf_counter() - t0
                    raise RuntimeError(
                        f"after {at:.1f} s the page shows a Python exception: {failed}"
                    ) from None
                if time.perf_counter() >= deadline:
                    raise
                continue
            done = time.perf_counter() - t0
            runs = self.runs()
            self.page.wait_for_timeout(500)
            if self.runs() == runs and self.page.evaluate(COMPLETE_JS, args):
                return done
            args["after"] = self.runs() - 1 if self.runs() > runs else after

    def goto(self, url: str, heading: str, marker: str) -> float:
        """Open ``url`` and return the seconds to the complete page."""
        t0 = time.perf_counter()
        try:
            self.page.goto(url, wait_until="commit", timeout=self.timeout_s * 1000)
        except Exception:
            if self.server is not None and self.server.stopped:
                raise RuntimeError(self.server.stopped) from None
            raise
        return self.wait_complete(t0, heading, marker, 0)

    def phases(self) -> dict[str, float | None]:
        """Return, in seconds since this tab's navigation started, when its first script run
        started (the page loaded and connected) and when its last run ended (the server's part
        is over; the rest up to complete is the browser drawing)."""
        marks = self.page.evaluate("() => window.__provlensMarks || {started: [], ended: []}")
        started, ended = marks.get("started") or [], marks.get("ended") or []
        return {
            "first_run_started_s": round(started[0] / 1000, 2) if started else None,
            "last_run_ended_s": round(ended[-1] / 1000, 2) if ended else None,
        }

    def act(
        self,
        commit: Any,
        heading: str,
        marker: str,
        prepare: Any = None,
        text: str | None = None,
    ) -> float:
        """Run ``prepare()`` (untimed: typing), then ``commit()`` (the click or key that sends
        the change); return the seconds from the commit to the complete rerun (showing
        ``text``, when given)."""
        if prepare is not None:
            prepare()
        before = self.runs()
        t0 = time.perf_counter()
        commit()
        return self.wait_complete(t0, heading, marker, before, text)

    def type_user(self, user: str) -> None:
        """Type ``user`` into the Users page's search box, without sending it (:meth:`enter`)."""
        box = self.page.get_by_label("Search by name, UPN or object id")
        box.fill(user)

    def enter(self) -> None:
        """Press Enter in the focused field: the text input sends its value."""
        self.page.keyboard.press("Enter")

    def kpi(self, label: str) -> str | None:
        """Return the value shown by the KPI tile ``label``."""
        value = self.page.evaluate(KPI_JS, label)
        return None if value is None else str(value)

    def exceptions(self) -> int:
        """Return how many Python exceptions the page shows."""
        return int(self.page.locator('[data-testid="stException"]').count())

    def type_time_range(self, first: str, last: str) -> None:
        """Type the dates (ISO) into the sidebar's time range, without leaving the field.

        Streamlit's date range is two react-aria date fields of year/month/day segments; the
        range is sent when the field loses focus (:meth:`leave_field`).
        """
        sidebar = self.page.get_by_test_id("stSidebar")
        for edge, day in (("start", first), ("end", last)):
            year, month, dom = day.split("-")
            for part, text in (("year", year), ("month", month), ("day", dom)):
                label = f"{part}, Time range (UTC) {edge} date"
                sidebar.get_by_role("spinbutton", name=label, exact=True).click()
                self.page.keyboard.type(text)

    def leave_field(self) -> None:
        """Click the sidebar's "Filters" heading: the focused field sends its value."""
        self.page.get_by_test_id("stSidebar").get_by_text("Filters", exact=True).click()

    def time_range(self) -> tuple[str, str]:
        """Return the sidebar's time range (ISO dates)."""
        boxes = self.page.get_by_test_id("stSidebar").locator('input[type="date"]').all()
        values = [str(b.input_value()) for b in boxes]
        return values[0], values[-1]

    def open_apps(self) -> None:
        """Open the sidebar's app filter's list of options."""
        sidebar = self.page.get_by_test_id("stSidebar")
        sidebar.get_by_role("combobox", name="App (service principal)").click()
        self.page.get_by_role("option").first.wait_for()

    def pick_app(self) -> None:
        """Click the first app of the open list (the multiselect sends it on the click)."""
        self.page.get_by_role("option").first.click()
        self.page.keyboard.press("Escape")

    def clear_apps(self) -> None:
        """Remove every app picked in the app filter."""
        sidebar = self.page.get_by_test_id("stSidebar")
        box = sidebar.get_by_test_id("stMultiSelect").first
        box.get_by_role("button", name="Clear all").click()


def default_user(store: Path) -> str:
    """Return the UPN of the latest failed event (a user someone would ask about)."""
    import duckdb

    from ingest.store import Store
    from reports import query

    snap = query.Snapshot.of(Store(store))
    source = snap.source("events")
    if source is None:
        raise SystemExit(f"{store}: no events")
    row = (
        duckdb.connect()
        .execute(
            f"SELECT source_upn FROM {source} WHERE status = 'failure' AND source_upn IS NOT NULL "
            "ORDER BY activity_at DESC LIMIT 1"
        )
        .fetchone()
    )
    if row is None:
        raise SystemExit(f"{store}: no failed event with a UPN; pass --user")
    return str(row[0])


def other_users(store: Path, user: str, count: int) -> list[str]:
    """Return up to ``count`` UPNs other than ``user``: those of the latest failed events after
    the first one (:func:`default_user`'s order), else of any latest events."""
    import duckdb

    from ingest.store import Store
    from reports import query

    source = query.Snapshot.of(Store(store)).source("events")
    if source is None or count <= 0:
        return []
    rows = (
        duckdb.connect()
        .execute(
            f"SELECT source_upn FROM {source} WHERE source_upn IS NOT NULL "
            "AND lower(source_upn) <> lower(?) GROUP BY source_upn "
            "ORDER BY max(status = 'failure') DESC, "
            "max(CASE WHEN status = 'failure' THEN activity_at END) DESC NULLS LAST, "
            "max(activity_at) DESC, source_upn LIMIT ?",
            [user, count],
        )
        .fetchall()
    )
    return [str(r[0]) for r in rows]


def _range_of_last_days(probe: Probe, days: int) -> tuple[str, str, str, str]:
    """Return (first, last) of the data as shown, and (from, to) covering its last ``days``."""
    import datetime as dt

    first, last = probe.time_range()
    end = dt.date.fromisoformat(last)
    start = max(end - dt.timedelta(days=days - 1), dt.date.fromisoformat(first))
    return first, last, start.isoformat(), last


def _timed(results: dict[str, Any], key: str, work: Any) -> None:
    """Store ``work()``'s seconds under ``key`` (a list), or the error that stopped it."""
    try:
        seconds = round(float(work()), 2)
        results.setdefault(key, []).append(seconds)
    except Exception as exc:  # a timeout or a missing element: reported, never a figure
        results.setdefault("errors", []).append(f"{key}: {type(exc).__name__}: {str(exc)[:300]}")


def measure(
    store: Path,
    user: str | None = None,
    now: str | None = None,
    runs: int = 3,
    timeout_s: float = 900,
    filters: bool = True,
    max_rss_mb: float | None = None,
    users: bool = True,
    floor: bool = True,
) -> dict[str, Any]:
    """Measure the dashboard on ``store``; return every timing, figure and error."""
    from playwright.sync_api import sync_playwright

    user = user or default_user(store)
    out: dict[str, Any] = {"store": str(store), "user": user, "now": now, "runs": runs}
    with (
        tempfile.TemporaryDirectory(prefix="provlens-dash-") as tmp,
        dashboard(store, now, Path(tmp), max_rss_mb=max_rss_mb) as server,
        sync_playwright() as pw,
    ):
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        times: dict[str, Any] = {}
        figures: dict[str, Any] = {}
        phases: dict[str, list[dict[str, float | None]]] = {}
        js_errors: list[str] = []
        exceptions = 0
        # One browser profile throughout: its first page load fetches Streamlit's scripts (the
        # Plotly bundle alone is 4.7 MB), later tabs have them cached, as a returning user does.
        profile = Probe.profile(browser)
        # 1. Overview: cold (first open after the server started), then warm in new tabs.
        for i in range(runs):
            probe = Probe.open(profile, timeout_s, server)
            key = "overview_cold" if i == 0 else "overview_warm"
            _timed(times, key, lambda p=probe: p.goto(server.url, "Overview", OVERVIEW_MARKER))
            if server.proc.poll() is not None:
                break  # stopped (memory cap) or crashed: the error says which; nothing to read
            phases.setdefault(key, []).append(probe.phases())
            figures.setdefault("overview_events", probe.kpi("Events"))
            exceptions += probe.exceptions()
            js_errors += probe.js_errors
            if i < runs - 1:
                probe.close()
        # 2. Filter changes on the open Overview: each first (cold), then repeated (warm).
        if filters and server.proc.poll() is None and "overview_cold" in times:
            first, last, start, end = _range_of_last_days(probe, 2)
            figures["time_range_all"] = f"{first} – {last}"
            figures["time_range_picked"] = f"{start} – {end}"
            for i in range(runs):
                suffix = "cold" if i == 0 else "warm"
                _timed(
                    times,
                    f"filter_time_{suffix}",
                    lambda p=probe: p.act(
                        p.leave_field,
                        "Overview",
                        OVERVIEW_MARKER,
                        prepare=lambda: p.type_time_range(start, end),
                    ),
                )
                figures.setdefault("overview_events_time_filtered", probe.kpi("Events"))
                _timed(
                    times,
                    f"filter_time_reset_{suffix}",
                    lambda p=probe: p.act(
                        p.leave_field,
                        "Overview",
                        OVERVIEW_MARKER,
                        prepare=lambda: p.type_time_range(first, last),
                    ),
                )
            # A range the server's warm-up does not compute (dashboard.asks.RECENT_DAYS): its
            # answers are computed when picked.
            other = next(d for d in range(3, 30) if d not in RECENT_DAYS)
            _, _, start3, end3 = _range_of_last_days(probe, other)
            # Data of fewer days: that range is all of it, no change to time.
            steps = [] if start3 == first else [(start3, end3), (first, last)]
            if steps:
                figures["time_range_not_warmed"] = f"{start3} – {end3}"
            for key, (since_day, until_day) in zip(
                ("filter_time_other_cold", "filter_time_other_reset"), steps, strict=False
            ):
                _timed(
                    times,
                    key,
                    lambda p=probe, a=since_day, b=until_day: p.act(
                        p.leave_field,
                        "Overview",
                        OVERVIEW_MARKER,
                        prepare=lambda: p.type_time_range(a, b),
                    ),
                )
                figures.setdefault("overview_events_other_range", probe.kpi("Events"))
            for i in range(runs):
                suffix = "cold" if i == 0 else "warm"
                _timed(
                    times,
                    f"filter_app_{suffix}",
                    lambda p=probe: p.act(
                        p.pick_app, "Overview", OVERVIEW_MARKER, prepare=p.open_apps
                    ),
                )
                figures.setdefault("overview_events_app_filtered", probe.kpi("Events"))
                _timed(
                    times,
                    f"filter_app_reset_{suffix}",
                    lambda p=probe: p.act(p.clear_apps, "Overview", OVERVIEW_MARKER),
                )
            exceptions += probe.exceptions()
            js_errors += probe.js_errors
        probe.close()
        # 3. Users page opened on one user by its deep link: cold, then warm in new tabs.
        link = f"{server.url}/users?user={quote(user)}"
        shown: Probe | None = None
        for i in range(runs if users else 0):
            if server.proc.poll() is not None:
                break
            probe = Probe.open(profile, timeout_s, server)
            key = "users_cold" if i == 0 else "users_warm"
            _timed(times, key, lambda p=probe: p.goto(link, "Users", USERS_MARKER))
            if server.proc.poll() is not None:
                break
            phases.setdefault(key, []).append(probe.phases())
            if i == 0:
                figures["users_events"] = probe.kpi("Events")
            exceptions += probe.exceptions()
            js_errors += probe.js_errors
            if shown is not None:
                shown.close()
            shown = probe
        # 4. On the open Users page, another user typed into the search and sent with Enter:
        # users never shown before (cold), then back to one shown before (warm).
        if shown is not None and "users_cold" in times and server.proc.poll() is None:
            others = other_users(store, user, runs)
            figures["users_switched_to"] = others
            # Warm: the deep link's user, then the first one picked, in turn (never the one shown).
            back = [user if i % 2 == 0 or not others else others[0] for i in range(runs)]
            for key, target in [("users_switch_cold", u) for u in others] + [
                ("users_switch_warm", u) for u in back
            ]:
                if server.proc.poll() is not None:
                    break
                _timed(
                    times,
                    key,
                    lambda p=shown, u=target: p.act(
                        p.enter,
                        "Users",
                        USERS_MARKER,
                        prepare=lambda: p.type_user(u),
                        text=f"UPN: {u}",
                    ),
                )
                if key == "users_switch_cold" and target == others[0]:
                    figures["users_switch_events"] = shown.kpi("Events")
            exceptions += shown.exceptions()
            js_errors += shown.js_errors
            shown.close()
        # 5. The engine's floor: a bare Streamlit page in a new tab of the same profile, after
        # the dashboard's (its server stopped meanwhile? then the floor is not measured).
        if floor and server.proc.poll() is None:
            with floor_page(Path(tmp)) as bare:
                for _ in range(runs):
                    probe = Probe.open(profile, timeout_s, bare)
                    _timed(times, "floor", lambda p=probe: p.goto(bare.url, "Floor", FLOOR_MARKER))
                    phases.setdefault("floor", []).append(probe.phases())
                    js_errors += probe.js_errors
                    probe.close()
        browser.close()
        out |= {"times_s": times, "phases": phases, "figures": figures}
        out["server"] = server.memory_mb()
        out["warm_up"] = warm_up_of(server.log)
        # The recent ranges' seconds count from when the landing answers were ready.
        out["warm_up_ranges"] = warm_up_of(server.log, RANGES_LINE)
        out["server_ready_s"] = server.ready_s
        if server.stopped:
            out["server"]["stopped"] = server.stopped
        out["python_exceptions"] = exceptions
        out["js_errors"] = js_errors
    return out


WARM_UP_LINE = "provlens warm-up of the landing page (answers ready after, s): "
RANGES_LINE = "provlens warm-up of recent time ranges (answers ready after, s): "


def warm_up_of(log: Path, marker: str = WARM_UP_LINE) -> dict[str, float] | None:
    """Return when each warm-up answer was ready (seconds since it began; ``total`` too), from
    its log line (dashboard.serve), or None when it logged none (not finished, or failed)."""
    import ast

    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in reversed(text.splitlines()):
        if marker in line:
            got: dict[str, float] = ast.literal_eval(line.split(marker, 1)[1].strip())
            return got
    return None


# What each measured page asks, in its order: (report, parameters). The sidebar (run before every
# page) and the Overview ask what dashboard.asks lists (the server's warm-up asks the same); the
# Users page (screens/users.py) asks USERS_ASKS, where "<key>" is the user key the page's search
# row gives and "<user>" the deep link's value.
USERS_ASKS: tuple[tuple[str, dict[str, str]], ...] = (
    ("user-search", {"query": "<user>"}),
    ("diagnosis", {"user": "<user>"}),
    ("timeline", {"user": "<key>"}),
    ("user-steps", {"user": "<key>"}),
    ("user-changes", {"user": "<key>"}),
    ("correlation", {"user": "<key>"}),
    ("user-wiki-requests", {"user": "<key>"}),
)


def time_page_reports(store: Path, user: str, now: str | None) -> list[dict[str, Any]]:
    """Time, in this process, every report the measured pages ask, as the server asks them.

    Through ``reports.service.run`` with the page's parameters and the sidebar's filters: none
    (all data), the last two days of data, and the one app, like the browser's filter changes.
    The first ask reads the derived model into memory (timed on its own first), as the server's
    first page does. Seconds and this process's peak RSS after each.
    """
    import resource

    import pandas as pd

    from dashboard.data import TIME_DEPENDENT_REPORTS
    from ingest.store import Store
    from reports import Filters, query, service

    at = pd.Timestamp(now) if now else None
    rows: list[dict[str, Any]] = []

    def ask(page: str, name: str, params: dict[str, Any], filters: Filters, label: str) -> Any:
        t0 = time.perf_counter()
        result = service.run(
            store,
            name,
            filters,
            now=at if name in TIME_DEPENDENT_REPORTS else None,
            **params,
        )
        rows.append(
            {
                "page": page,
                "report": name,
                "params": params,
                "filters": label,
                "seconds": round(time.perf_counter() - t0, 2),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                "rows": None if result.frame is None else len(result.frame),
            }
        )
        return result

    t0 = time.perf_counter()
    con = query.connect()
    query.model_for(con, query.Snapshot.of(Store(store)))
    con.close()
    rows.append(
        {
            "page": "(server)",
            "report": "derived model into memory",
            "params": {},
            "filters": "",
            "seconds": round(time.perf_counter() - t0, 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "rows": None,
        }
    )
    options = ask("sidebar", "filter-options", {}, Filters(), "none").data or {}
    last = pd.Timestamp(options["last_at"]).floor("D")
    apps = tuple(options.get("apps") or {})[:1]
    for label, filters in (
        ("none", Filters()),
        ("last 2 days", Filters(since=last - pd.Timedelta(days=1))),
        ("one app", Filters(service_principal_ids=apps)),
    ):
        for name, params in OVERVIEW_ASKS:
            ask("Overview", name, params, filters, label)
    key = user
    for name, params in USERS_ASKS:
        given = {
            k: (user if v == "<user>" else key if v == "<key>" else v) for k, v in params.items()
        }
        result = ask("Users", name, given, Filters(), "none")
        if name == "user-search" and result.frame is not None and len(result.frame):
            key = str(result.frame["user_key"].iloc[0])
    return rows


def reports_table(rows: list[dict[str, Any]]) -> str:
    """Return the per-report timings as a Markdown table, with each page's total."""
    lines = [
        "| page | report | parameters | filters | seconds | peak RSS MB |",
        "|---|---|---|---|---:|---:|",
    ]
    totals: dict[tuple[str, str], float] = {}
    for r in rows:
        params = ", ".join(f"{k}={v}" for k, v in r["params"].items()) or "—"
        lines.append(
            f"| {r['page']} | {r['report']} | {params} | {r['filters'] or '—'} | "
            f"{r['seconds']:.2f} | {r['peak_rss_mb']} |"
        )
        group = (r["page"], r["filters"])
        totals[group] = totals.get(group, 0.0) + float(r["seconds"])
    lines.append("")
    lines.append(
        "Totals: "
        + "; ".join(f"{page} ({f or '—'}) {t:.1f} s" for (page, f), t in totals.items())
        + "."
    )
    return "\n".join(lines)


def compare_cli(store: Path, user: str, now: str | None) -> dict[str, float]:
    """Return the wall seconds of the CLI answering the same questions, each a fresh process."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    at = ["--now", now] if now else []
    out: dict[str, float] = {}
    for key, args in (
        ("cli_overview", ["overview"]),
        ("cli_diagnosis", ["diagnosis", "--user", user]),
    ):
        cmd = [sys.executable, "-m", "provlens", "--store", str(store), *at, "report", *args]
        t0 = time.perf_counter()
        proc = subprocess.run(
            [*cmd, "--format", "json"], cwd=ROOT, env=env, capture_output=True, check=False
        )
        out[key] = round(time.perf_counter() - t0, 2) if proc.returncode == 0 else float("nan")
    return out


def model_kept(store: Path) -> bool:
    """Return True when the store's current version has its derived model kept on disk."""
    from ingest.store import Store
    from reports.query import derived_dir

    kept = Store(store)
    return (derived_dir(kept, kept.version) / "complete").exists()


def _fmt(values: list[float] | None) -> str:
    if not values:
        return "—"
    return " / ".join(f"{v:.2f}" for v in values)


def table(result: dict[str, Any], tier: str) -> str:
    """Return the results as a Markdown table with targets met or missed."""
    targets = TARGETS_10M if tier == "10m" else TARGETS_1M
    times = result.get("times_s", {})
    rows = [
        ("Overview, first open after server start (cold)", "overview_cold"),
        ("Overview, reopened in a new tab (warm)", "overview_warm"),
        ("Users on one user by deep link in a new tab, first time (cold)", "users_cold"),
        ("Users on one user by deep link in a new tab, reopened (warm)", "users_warm"),
        (
            "Floor: a bare Streamlit page (a title, a line of text, a button) in a new tab",
            "floor",
        ),
        (
            "Users: another user picked on the open page (in-app: search + Enter), "
            "first time for that user (cold)",
            "users_switch_cold",
        ),
        (
            "Users: back to a user shown before on the open page (in-app: search + Enter, warm)",
            "users_switch_warm",
        ),
        ("Filter: time range to the last 2 days, first time (cold)", "filter_time_cold"),
        ("Filter: time range back to all data, first time", "filter_time_reset_cold"),
        ("Filter: time range, repeated (warm)", "filter_time_warm"),
        ("Filter: a range the warm-up did not compute, first time", "filter_time_other_cold"),
        ("Filter: back to all data after it", "filter_time_other_reset"),
        ("Filter: one app, first time (cold)", "filter_app_cold"),
        ("Filter: app cleared, first time", "filter_app_reset_cold"),
        ("Filter: one app, repeated (warm)", "filter_app_warm"),
    ]
    lines = ["| measure | seconds | target | met |", "|---|---:|---:|:-:|"]
    for label, key in rows:
        if key not in times:
            continue
        target = targets.get(key)
        if key.startswith("filter_") and key.endswith("_cold") and "reset" not in key:
            target = targets.get("filter_cold")
        met = "—" if target is None else ("yes" if max(times[key]) < target else "**no**")
        goal = "—" if target is None else f"< {target:g} s"
        lines.append(f"| {label} | {_fmt(times[key])} | {goal} | {met} |")
    server = result.get("server", {})
    lines.append("")
    if "model_kept_before" in result:
        lines.append(
            "Derived model kept beside the parts before the run: "
            + ("yes (the server reads it)" if result["model_kept_before"] else "no (computed)")
            + "."
        )
    lines.append(
        f"Server peak RSS {server.get('peak_rss_mb', '?')} MB (polled peak "
        f"{server.get('polled_peak_rss_mb', '?')} MB, at the end {server.get('rss_mb', '?')} MB)"
        + (f"; STOPPED: {server['stopped']}" if server.get("stopped") else "")
        + "; Python exceptions on pages: "
        f"{result.get('python_exceptions')}; JavaScript errors: {len(result.get('js_errors', []))}."
    )
    warm = result.get("warm_up")
    lines.append(
        "Server warm-up of the landing page (started with the server process; the cold open did "
        f"not wait for it; the server answered its health check {result.get('server_ready_s')} s "
        "after it was started): "
        + (
            f"all ready after {warm.get('total')} s ("
            + ", ".join(f"{k} {v} s" for k, v in warm.items() if k != "total")
            + ")."
            if warm
            else "not logged."
        )
    )
    ranges = result.get("warm_up_ranges")
    if ranges:
        lines.append(
            "Then the warm-up of recent time ranges (the landing answers for the data's last days, "
            "one at a time at a lower priority; seconds after the landing answers were ready): "
            + ", ".join(f"{k} {v} s" for k, v in ranges.items())
            + "."
        )
    figures = result.get("figures", {})
    if figures:
        lines.append(
            "Figures read from the pages: "
            + "; ".join(f"{k} = {v}" for k, v in figures.items())
            + "."
        )
    floor = sorted(times.get("floor") or [])
    if floor:
        median = floor[len(floor) // 2]
        beside = [
            f"{label} {times[key][0]:.2f} s ({times[key][0] - median:+.2f} s)"
            for label, key in (
                ("Users by deep link, cold", "users_cold"),
                ("reopened", "users_warm"),
                ("Overview reopened", "overview_warm"),
            )
            if times.get(key)
        ]
        lines.append(
            f"The floor (median of {len(floor)}): {median:.2f} s, what any Streamlit page in a new "
            "tab costs on this machine; beside it: " + ", ".join(beside) + "."
        )
    ready, cold = result.get("server_ready_s"), times.get("overview_cold")
    if ready is not None and cold:
        # What a user who starts the server and opens the page at once waits, in all.
        lines.append(
            f"Overview, from starting the server to the complete page: {ready + cold[0]:.2f} s "
            f"({ready:.2f} s to the health check's answer + {cold[0]:.2f} s cold open)."
        )
    for key, runs in result.get("phases", {}).items():
        text = ", ".join(
            f"script started {r['first_run_started_s']} s, last run ended {r['last_run_ended_s']} s"
            for r in runs
        )
        lines.append(f"{key} in the page: {text}")
    for key in ("cli_overview", "cli_diagnosis"):
        if key in result:
            lines.append(f"{key}: {result[key]:.2f} s (fresh process)")
    for err in result.get("errors", []) + times.get("errors", []):
        lines.append(f"ERROR {err}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the measurements, print the table, write ``--out``."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--user", help="UPN or object id (default: the latest failed event's UPN)")
    ap.add_argument("--now", help="reference time for the app (PROVLENS_NOW), e.g. the tier's")
    ap.add_argument("--runs", type=int, default=3, help="opens per measure (first one cold)")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per wait")
    ap.add_argument("--tier", choices=("1m", "10m"), default="1m", help="which targets apply")
    ap.add_argument("--no-filters", action="store_true", help="skip the filter changes")
    ap.add_argument("--no-users", action="store_true", help="skip the Users page")
    ap.add_argument(
        "--no-floor", action="store_true", help="skip the bare Streamlit page (the floor)"
    )
    ap.add_argument(
        "--max-rss-mb",
        type=float,
        help="stop the server above this RSS (protects a shared machine); an error, no figure",
    )
    ap.add_argument("--compare", action="store_true", help="also time the CLI's answers")
    ap.add_argument(
        "--reports-only",
        action="store_true",
        help="no browser: time each report the pages ask, in this process (attribution)",
    )
    ap.add_argument(
        "--drop-model",
        action="store_true",
        help="delete the derived model kept in STORE/derived first: the first page computes it "
        "(the first open after an ingest; also needed after the model's code changed)",
    )
    ap.add_argument("--out", type=Path, help="write the results as JSON")
    args = ap.parse_args(argv)
    # A plain SIGTERM would skip the cleanup that stops the dashboard server and the browser.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.drop_model:
        import shutil

        from reports.query import DERIVED

        shutil.rmtree(args.store / DERIVED, ignore_errors=True)
    if args.reports_only:
        user = args.user or default_user(args.store)
        load = os.getloadavg()[0]
        rows = time_page_reports(args.store, user, args.now)
        print(reports_table(rows))
        print(f"User {user}. Load average before/after: {load:.1f} / {os.getloadavg()[0]:.1f}.")
        if args.out:
            args.out.write_text(json.dumps({"user": user, "reports": rows}, indent=2))
        return 0
    load_before = os.getloadavg()
    kept = model_kept(args.store)
    t0 = time.perf_counter()
    result = measure(
        args.store,
        args.user,
        args.now,
        args.runs,
        args.timeout,
        filters=not args.no_filters,
        max_rss_mb=args.max_rss_mb,
        users=not args.no_users,
        floor=not args.no_floor,
    )
    errors = result["times_s"].pop("errors", [])
    result["errors"] = errors
    if args.compare:
        result |= compare_cli(args.store, result["user"], args.now)
    result["model_kept_before"] = kept
    result["machine"] = {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "load_avg_before": [round(x, 1) for x in load_before],
        "load_avg_after": [round(x, 1) for x in os.getloadavg()],
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    print(table(result, args.tier))
    print(
        f"Load average before/after: {result['machine']['load_avg_before'][0]} / "
        f"{result['machine']['load_avg_after'][0]} on {os.cpu_count()} CPUs."
    )
    if args.out:
        args.out.write_text(json.dumps(result, indent=2, default=str))
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
