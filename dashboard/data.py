"""Cached report answers: the only place the dashboard reads the store and runs reports.

Every cache is keyed by the store path and ``store.version`` (which grows with every committed
ingest), so new data shows on the next rerun without clearing anything; report results are also
keyed by the filters and parameters. Report answers do not expire with time: only a new version,
other filters or (for the few reports that read the clock) the next minute ask again, and the
least recently used answers go first once ``MAX_ANSWERS`` are held. While an answer is computed
the page shows which report runs and for how long (a spinner, from half a second on). Answers
are held with ``st.cache_resource`` rather than ``st.cache_data``: cache_data pickles a copy on
every hit, which for large results (correlation has a row per event) costs seconds per rerun,
so one shared result is used and pages treat it as read-only (the Users page asks for one
user's rows, ``user=``, cached per user). Store info goes through ``st.cache_data``. Every
figure a page shows is a registered report asked by name (:func:`report`, through
``reports.service`` like the CLI), so ``provlens report NAME --format json`` reproduces it;
nothing here or in the pages counts or groups on its own. From ``reports`` the dashboard imports
only ``Filters``/``REPORTS``/``ReportResult``, ``reports.service`` and, to write downloads,
``reports.export`` (tests/test_dashboard_imports.py enforces it).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from dashboard.launch import NOW_ENV
from ingest import settings
from ingest.store import Store
from reports import REPORTS, Filters, service

TTL = 600  # seconds, for store info (cheap to read again)
# Report answers held per server (all sessions share them). No time to live: an answer of a
# store version never changes, and recomputing one at 1M events costs seconds to minutes.
MAX_ANSWERS = 128
OVERRIDE_KEY = "provlens_store_override"

# Columns of `events` the dashboard read when it loaded whole tables itself (before every page
# asked reports.service); benchmarks/run.py still times its in-memory baseline with them. Pages
# never load a table: each report reads its declared columns only.
EVENT_COLUMNS: tuple[str, ...] = (
    "id",
    "activity_at",
    "job_id",
    "cycle_id",
    "change_id",
    "service_principal_id",
    "service_principal_name",
    "action",
    "status",
    "error_code",
    "error_category",
    "error_reason",
    "error_additional_details",
    "recommended_action",
    "skip_reason",
    "failed_step",
    "duration_ms",
    "source_id",
    "source_name",
    "source_upn",
    "source_type",
    "target_id",
    "target_name",
    "target_type",
    "origin",
)


@dataclass(frozen=True)
class FilterState:
    """The sidebar's global filters, as plain hashable values."""

    since: pd.Timestamp | None = None
    until: pd.Timestamp | None = None  # exclusive, like reports.Filters
    service_principal_ids: tuple[str, ...] = ()
    job_ids: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    include_noise: bool = False

    def to_filters(self) -> Filters:
        """Return the equivalent ``reports.Filters``."""
        return Filters(
            since=self.since,
            until=self.until,
            service_principal_ids=self.service_principal_ids,
            job_ids=self.job_ids,
            actions=self.actions,
            statuses=self.statuses,
        )

    def key(self) -> tuple[Any, ...]:
        """Return a tuple of primitives identifying these filters (a cache key)."""
        return (
            None if self.since is None else self.since.isoformat(),
            None if self.until is None else self.until.isoformat(),
            self.service_principal_ids,
            self.job_ids,
            self.actions,
            self.statuses,
            self.include_noise,
        )


def default_store_path() -> Path:
    """Return the store this server shows: PROVLENS_STORE, else the platform default."""
    value = settings.get(settings.STORE)
    return Path(value).expanduser() if value else Store.default_path()


def store_path() -> Path:
    """Return the store for this session (the demo store once 'Load the demo' ran)."""
    override = st.session_state.get(OVERRIDE_KEY)
    return Path(override) if override else default_store_path()


def now() -> pd.Timestamp:
    """Return the reference time: PROVLENS_NOW when set, else the current minute (UTC)."""
    fixed = os.environ.get(NOW_ENV)
    if fixed:
        ts = pd.Timestamp(fixed)
        return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    # Floored so report caches hold for a minute instead of missing on every rerun.
    return pd.Timestamp.now(tz="UTC").floor("min")


def store_version(path: Path) -> int:
    """Return the store's data version (0 when nothing was committed yet)."""
    return int(Store(path).version) if path.exists() else 0


@st.cache_data(ttl=TTL, show_spinner=False)
def store_info(path: str, version: int) -> dict[str, Any]:
    """Return ``Store.info()`` for the store at ``path`` (empty dict when absent)."""
    return dict(Store(Path(path)).info()) if Path(path).exists() else {}


# Reports whose answer depends on the current time (running cycle, next retry). Only these get
# `now` and so a cache key that changes every minute; the rest are keyed by data and filters.
TIME_DEPENDENT_REPORTS = frozenset(
    {"estimate", "estimate-for", "quarantine-risk", "diagnosis", "job-header", "overview"}
)


@dataclass(frozen=True)
class Report:
    """A report's output as the dashboard uses it."""

    frame: pd.DataFrame | None
    data: dict[str, Any] | None
    hidden_noise: int


@st.cache_resource(show_spinner=False, max_entries=MAX_ANSWERS)
def _report(
    path: str,
    version: int,
    name: str,
    filter_key: tuple[Any, ...],
    now_iso: str,
    params: tuple[tuple[str, Any], ...],
    _filters: FilterState,
) -> Report:
    # Asked by name through the service, like the CLI: only the tables the report declares are
    # read (a report reading more fails with UndeclaredRead, and its test with it), from one
    # store version, with the filters pushed down and that version's derived model.
    result = service.run(
        Path(path),
        name,
        _filters.to_filters(),
        include_noise=_filters.include_noise,
        now=pd.Timestamp(now_iso) if now_iso else None,
        **dict(params),
    )
    return Report(result.frame, result.data, int(result.hidden_noise))


def _key(
    name: str, path: Path, version: int, filters: FilterState, params: Mapping[str, Any]
) -> tuple[tuple[Any, ...], FilterState]:
    """Return the cache's key of an answer (``_report``'s arguments but the last) and the
    filters it is computed with."""
    at = now().isoformat() if name in TIME_DEPENDENT_REPORTS else ""
    spec = REPORTS.get(name)
    if spec is not None and not spec.time_filtered:
        # The time range does not select this report: one answer for every range.
        filters = replace(filters, since=None, until=None)
    return (str(path), version, name, filters.key(), at, tuple(sorted(params.items()))), filters


def answer(name: str, path: Path, version: int, filters: FilterState, **params: Any) -> Report:
    """Return report ``name``'s answer from the cache (computed once per key, by one thread:
    another asking the same meanwhile waits for it, e.g. a page for the server's warm-up)."""
    (store, at_version, asked, filter_key, at, params_key), filters = _key(
        name, path, version, filters, params
    )
    return _report(store, at_version, asked, filter_key, at, params_key, filters)


# Answers a page will need are asked on these threads while the page draws the ones it has:
# DuckDB releases the GIL, so two reports computed side by side finish sooner than one after the
# other (two, for the 2 cores of the reference machine; more only queue for the same cores).
ASK_THREADS = 2
_asking = ThreadPoolExecutor(ASK_THREADS, thread_name_prefix="provlens-ask")
# Answers asked on the ask threads and not done yet, by cache key: asked again meanwhile (a page
# rerun, or a page asking again what it asked before it knew the rest), the same future is
# returned, instead of a second ask thread waiting for the answer the first computes.
_pending: dict[tuple[Any, ...], Future[Report]] = {}
_pending_lock = threading.Lock()


def prefetch(
    path: Path,
    version: int,
    filters: FilterState,
    asks: Iterable[tuple[str, Mapping[str, Any]]],
) -> list[Future[Report]]:
    """Start computing the answers ``asks`` lists ((report, parameters), in the order the page
    reads them) on the ask threads, through the cache: the page's own :func:`report` of the same
    question then waits for that answer instead of computing it again, and a cached answer
    returns at once. An answer already being asked is not asked again. An error is the page's
    to show: its own ask computes again and raises."""
    out = []
    for name, params in asks:
        key, _ = _key(name, path, version, filters, params)
        with _pending_lock:
            pending = _pending.get(key)
            if pending is None or pending.done():  # done: the cache holds it (or it failed)
                future = _asking.submit(answer, name, path, version, filters, **dict(params))
                _pending[key] = future
            else:
                future = pending
        if future is not pending:
            # Outside the lock: a future already done runs the callback at once, in this thread,
            # and the callback takes the lock.
            future.add_done_callback(partial(_done, key))
        out.append(future)
    return out


def _done(key: tuple[Any, ...], future: Future[Report]) -> None:
    with _pending_lock:
        if _pending.get(key) is future:
            del _pending[key]


# Pages' script runs going on, and when the last one ended: the server's background work (the
# warm-up of recent time ranges) waits for the pages to be quiet, so a visitor's page never
# shares the 2 cores with it (DuckDB's own threads do not take the warm-up thread's nice value).
_runs = threading.Condition()
_running = 0
_ended = 0  # runs ended since the server started
_quiet_since = time.monotonic()


@contextlib.contextmanager
def page_run() -> Iterator[None]:
    """Mark one script run of a page (dashboard/app.py wraps every rerun in it)."""
    global _running, _ended, _quiet_since
    with _runs:
        _running += 1
    try:
        yield
    finally:
        with _runs:
            _running -= 1
            _ended += 1
            _quiet_since = time.monotonic()
            _runs.notify_all()


def wait_quiet(seconds: float, limit: float) -> bool:
    """Wait until a page has been served and none has run for ``seconds`` since; give up after
    ``limit`` seconds (a server nobody visits yet, or pages that never rest). Return whether the
    pages were quiet. Before the first visit it waits: the first visitor is the one most likely
    to arrive while the server is busy."""
    deadline = time.monotonic() + limit
    with _runs:
        while True:
            at = time.monotonic()
            resting = _running == 0 and _ended > 0
            quiet_at = _quiet_since + seconds
            if resting and at >= quiet_at:
                return True
            if at >= deadline:
                return False
            _runs.wait(min(deadline, quiet_at if resting else deadline) - at)


def report(name: str, path: Path, version: int, filters: FilterState, **params: Any) -> Report:
    """Run report ``name`` through the cache and return its frame/data and hidden-noise count."""
    # Shown only when the answer takes over half a second (a cache hit never does).
    with st.spinner(progress_text(name), show_time=True):
        return answer(name, path, version, filters, **params)


def progress_text(name: str) -> str:
    """Return the spinner text naming the report being computed (fixed words only: parameters
    can hold what someone typed, and the spinner renders Markdown)."""
    spec = REPORTS.get(name)
    what = spec.description.rstrip(".") if spec is not None else "a report"
    return f"Computing `{name}`: {what}…"


def clear_caches() -> None:
    """Drop every cached table, report and series (the sidebar's refresh button)."""
    st.cache_data.clear()
    for cached in (_report, events_flat):
        cached.clear()


@st.cache_resource(show_spinner="Flattening events…", max_entries=4)
def events_flat(
    path: str, version: int, filter_key: tuple[Any, ...], _filters: FilterState
) -> pd.DataFrame:
    """Return the filtered events with steps and modified properties as text (`events_flat`)."""
    return service.table(Path(path), "events_flat", _filters.to_filters())
