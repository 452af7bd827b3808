"""Reports: pure functions from canonical frames to answers.

Every report is ``build(inputs, filters, *, include_noise, now, **params) -> ReportResult`` in a
module named for it. :data:`REPORTS` names them (lazily, by ``"module:function"``, so a missing
module only breaks its own report); :func:`run_report` is what the CLI and the dashboard call.
Nothing here reads files, the network or the clock, and no input frame is modified.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields, replace
from functools import partial
from typing import Any, Literal

import pandas as pd

from ingest.schema import TABLES, empty_frame
from reports.inputs import event_columns, isin

# The time column each canonical table is filtered on by Filters.since/until.
TIME_COLUMNS: dict[str, str | None] = {
    "events": "activity_at",
    "steps": None,
    "modified_properties": None,
    "sync_jobs": None,  # job snapshots describe state, not activity: never cut by time
    "assignments": None,
    "group_members": None,
    "scim_resources": None,
    "scim_requests": "received_at",
    "alerts": None,  # history: a firing raised before the range may still be firing in it
    # Join times are looked up for users whatever the selected range: never cut by time.
    "membership_changes": None,
}


def _utc(value: Any) -> pd.Timestamp | None:
    """Return ``value`` as a tz-aware UTC timestamp (naive means UTC), or None."""
    if value is None:
        return None
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


@dataclass(frozen=True)
class Filters:
    """What the user selected: a time range [since, until) and lists of ids or values to keep."""

    since: pd.Timestamp | None = None
    until: pd.Timestamp | None = None
    service_principal_ids: tuple[str, ...] = ()
    job_ids: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "since", _utc(self.since))
        object.__setattr__(self, "until", _utc(self.until))
        for name in ("service_principal_ids", "job_ids", "actions", "statuses"):
            object.__setattr__(self, name, tuple(getattr(self, name) or ()))

    def mask(self, frame: pd.DataFrame, time_column: str | None = None) -> pd.Series:
        """Return True for rows of ``frame`` passing the filters it has columns for."""
        keep = pd.Series(True, index=frame.index)
        if time_column and time_column in frame.columns:
            t = frame[time_column]
            if self.since is not None:
                keep &= (t >= self.since).fillna(False).astype(bool)
            if self.until is not None:
                keep &= (t < self.until).fillna(False).astype(bool)
        for column, values in self.value_filters():
            if values and column in frame.columns:
                keep &= isin(frame[column], values)
        return keep

    def value_filters(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """Return (column, values to keep) for each list filter (empty: not filtered)."""
        return (
            ("service_principal_id", self.service_principal_ids),
            ("job_id", self.job_ids),
            ("action", self.actions),
            ("status", self.statuses),
        )

    def apply(self, frame: pd.DataFrame, time_column: str | None = None) -> pd.DataFrame:
        """Return the rows of a frame (canonical or derived) that pass the filters."""
        keep = self.mask(frame, time_column)
        return frame if bool(keep.all()) else frame.loc[keep]

    def apply_events(self, events: pd.DataFrame) -> pd.DataFrame:
        """Return the events that pass every filter."""
        return self.apply(events, "activity_at")

    def apply_table(self, table: str, frame: pd.DataFrame) -> pd.DataFrame:
        """Return the rows of canonical ``table`` that pass the filters that apply to it."""
        if table in ("events",):
            return self.apply_events(frame)
        # actions/statuses describe provisioning events only (scim_requests has no such columns,
        # steps' `status` is a step outcome, not the event's).
        narrow = replace(self, actions=(), statuses=())
        return narrow.apply(frame, TIME_COLUMNS.get(table))

    def apply_inputs(self, inputs: Inputs) -> Inputs:
        """Return inputs cut to the selection: events and their children, jobs, scope, requests.

        Only the tables ``inputs`` may be read are touched; the derived model stays the one of
        the whole ``inputs`` (a filter selects, it never redefines a cycle, noise or a match).
        """
        frames = {name: inputs.table(name) for name in inputs.readable()}
        out: dict[str, pd.DataFrame] = {}
        events = frames.get("events")
        if events is not None:
            out["events"] = self.apply_events(events)
            for child in ("steps", "modified_properties"):
                if child in frames:
                    frame = frames[child]
                    out[child] = (
                        frame
                        if out["events"] is events
                        else frame.loc[isin(frame["event_id"], out["events"]["id"])]
                    )
        for name in ("sync_jobs", "assignments", "scim_requests"):
            if name in frames:
                out[name] = self.apply_table(name, frames[name])
        if "group_members" in frames:
            members = frames["group_members"]
            if self.service_principal_ids and "assignments" in out:
                assignments = out["assignments"]
                groups = assignments.loc[assignments["principal_type"] == "group", "principal_id"]
                members = members.loc[isin(members["group_id"], groups)]
            out["group_members"] = members
        for name in ("scim_resources", "alerts", "membership_changes"):
            if name in frames:
                out[name] = frames[name]
        return inputs.replace(**out)


@dataclass
class Inputs:
    """The canonical frames a report may read; a frame not given is an empty one."""

    events: pd.DataFrame = field(default_factory=lambda: empty_frame("events"))
    steps: pd.DataFrame = field(default_factory=lambda: empty_frame("steps"))
    modified_properties: pd.DataFrame = field(
        default_factory=lambda: empty_frame("modified_properties")
    )
    sync_jobs: pd.DataFrame = field(default_factory=lambda: empty_frame("sync_jobs"))
    assignments: pd.DataFrame = field(default_factory=lambda: empty_frame("assignments"))
    group_members: pd.DataFrame = field(default_factory=lambda: empty_frame("group_members"))
    scim_resources: pd.DataFrame = field(default_factory=lambda: empty_frame("scim_resources"))
    scim_requests: pd.DataFrame = field(default_factory=lambda: empty_frame("scim_requests"))
    alerts: pd.DataFrame = field(default_factory=lambda: empty_frame("alerts"))
    membership_changes: pd.DataFrame = field(
        default_factory=lambda: empty_frame("membership_changes")
    )

    def __post_init__(self) -> None:
        for f in fields(self):
            if object.__getattribute__(self, f.name) is None:
                setattr(self, f.name, empty_frame(f.name))
        # Not dataclass fields (callers iterate the fields as table names): which tables a
        # report may read (None = all) and the derived model (reports.model).
        object.__setattr__(self, "_declared", None)
        object.__setattr__(self, "_model", None)

    def __getattribute__(self, name: str) -> Any:
        if name in _TABLE_NAMES:
            declared = object.__getattribute__(self, "_declared")
            if declared is not None and name not in declared:
                raise UndeclaredRead(
                    f"this report reads table {name!r} but declares only "
                    f"{', '.join(sorted(declared)) or 'none'} (reports.REPORTS)"
                )
            return Inputs.table(self, name)
        return object.__getattribute__(self, name)

    @classmethod
    def lazy(
        cls,
        readers: dict[str, Callable[[], pd.DataFrame]],
        scans: dict[str, Callable[[], Scan | None]] | None = None,
    ) -> Inputs:
        """Return inputs whose ``readers`` tables are read on first use (once, shared by copies).

        The store-backed service gives a report every table it declares this way, so a report
        that answers from the derived model alone never reads the canonical tables at all.
        ``scans``: per table, the SQL reading it in place (reports.sql.over runs a report's
        aggregate on it without reading the rows into a frame).
        """
        unknown = set(readers) - set(_TABLE_NAMES)
        if unknown:
            raise KeyError(f"not canonical tables: {sorted(unknown)}")
        out = object.__new__(cls)
        for name in _TABLE_NAMES:
            reader = readers.get(name, partial(empty_frame, name))
            object.__setattr__(out, name, _Deferred(reader, (scans or {}).get(name)))
        object.__setattr__(out, "_declared", None)
        object.__setattr__(out, "_model", None)
        return out

    @classmethod
    def from_tables(cls, tables: dict[str, pd.DataFrame | None]) -> Inputs:
        """Return inputs from a ``{table name: frame}`` mapping (unknown names are an error)."""
        unknown = set(tables) - set(TABLES)
        if unknown:
            raise KeyError(f"not canonical tables: {sorted(unknown)}")
        return cls(**{name: frame for name, frame in tables.items() if frame is not None})

    def table(self, name: str) -> pd.DataFrame:
        """Return canonical table ``name`` whatever was declared (for the model and filters)."""
        frame = object.__getattribute__(self, name)
        if isinstance(frame, _Deferred):
            return frame.get()
        result: pd.DataFrame = frame
        return result

    def scan(self, name: str) -> Scan | None:
        """Return the SQL reading stored table ``name`` in place, None when it is a frame here.

        Declared reads apply (reading an undeclared table this way raises UndeclaredRead).
        """
        declared = object.__getattribute__(self, "_declared")
        if declared is not None and name not in declared:
            raise UndeclaredRead(
                f"this report reads table {name!r} but declares only "
                f"{', '.join(sorted(declared)) or 'none'} (reports.REPORTS)"
            )
        raw = object.__getattribute__(self, name)
        return raw.scan() if isinstance(raw, _Deferred) else None

    def readable(self) -> tuple[str, ...]:
        """Return the tables a report may read from these inputs."""
        declared = object.__getattribute__(self, "_declared")
        return tuple(t for t in _TABLE_NAMES if declared is None or t in declared)

    def declare(self, tables: Iterable[str]) -> Inputs:
        """Return these inputs allowing reads of ``tables`` only (others raise UndeclaredRead)."""
        out = self.replace()
        object.__setattr__(out, "_declared", frozenset(tables))
        return out

    def unguarded(self) -> Inputs:
        """Return these inputs with every table readable (the same frames and model)."""
        out = self.replace()
        object.__setattr__(out, "_declared", None)
        return out

    def replace(self, **frames: pd.DataFrame) -> Inputs:
        """Return a copy with ``frames`` replaced; what may be read and the model carry over."""
        unknown = set(frames) - set(_TABLE_NAMES)
        if unknown:
            raise KeyError(f"not canonical tables: {sorted(unknown)}")
        out = object.__new__(Inputs)
        for t in _TABLE_NAMES:
            # A table not read yet stays unread in the copy (and is read once for both).
            frame = frames[t] if t in frames else object.__getattribute__(self, t)
            object.__setattr__(out, t, empty_frame(t) if frame is None else frame)
        object.__setattr__(out, "_declared", object.__getattribute__(self, "_declared"))
        model = object.__getattribute__(self, "_model")
        if model is None:
            # Filtered or slimmed copies share the model of the whole: computed once, from it.
            from reports.model import Model

            model = Model(source=self)
            object.__setattr__(self, "_model", model)
        object.__setattr__(out, "_model", model)
        return out


@dataclass(frozen=True)
class Scan:
    """SQL reading a stored table in place: ``SELECT ...`` with its bound ``params``, on ``con``
    (a DuckDB connection open for the whole question)."""

    con: Any
    sql: str
    params: tuple[Any, ...] = ()
    # Which rows it reads, whatever the columns: the part files (named once, never rewritten),
    # the filters and rows pushed down. Two scans with one key answer an aggregate alike, so
    # reports.sql.over keeps such answers for the next question (None: not kept).
    key: tuple[Any, ...] | None = None


class _Deferred:
    """A table read on first use; the copies of one Inputs share it (read at most once)."""

    def __init__(
        self, reader: Callable[[], pd.DataFrame], scan: Callable[[], Scan | None] | None = None
    ) -> None:
        self._reader: Callable[[], pd.DataFrame] | None = reader
        self._frame: pd.DataFrame | None = None
        self._scan = scan

    def scan(self) -> Scan | None:
        """Return the SQL reading the table in place; None once read (or when it has none)."""
        return None if self._reader is None or self._scan is None else self._scan()

    def get(self) -> pd.DataFrame:
        if self._reader is not None:
            self._frame, self._reader = self._reader(), None
        assert self._frame is not None
        return self._frame


class UndeclaredRead(LookupError):
    """A report read a canonical table its ReportSpec does not declare."""


_TABLE_NAMES: tuple[str, ...] = tuple(f.name for f in fields(Inputs))


@dataclass(frozen=True)
class ReportResult:
    """A report's answer: a frame of rows, an object (dict), or both; and the noise rows hidden.

    A report whose rows come out of DuckDB may give them as Arrow (:meth:`of_rows`): ``frame``
    is then made from them the first time it is read, so a face that only writes the rows out
    (``provlens report --format json --out``) streams the Arrow rows and never builds a frame.
    """

    frame: pd.DataFrame | None = None
    data: dict[str, Any] | None = None
    hidden_noise: int = 0

    @classmethod
    def of_rows(
        cls,
        rows: Any,
        to_frame: Callable[[Any], pd.DataFrame],
        data: dict[str, Any] | None = None,
        hidden_noise: int = 0,
    ) -> ReportResult:
        """Return a result whose frame is ``to_frame(rows)`` (``rows``: a pyarrow Table, or
        reports.sql.StoredRows), made on first read of ``frame``; :meth:`arrow_rows` gives
        the rows before that."""
        out = cls(None, data, hidden_noise)
        object.__setattr__(out, "_rows", (rows, to_frame))
        return out

    def arrow_rows(self) -> Any:
        """Return the rows as the pyarrow Table the frame is made from, None when the result
        holds a frame (given, or already made)."""
        rows = self.rows_source()
        return rows.table() if hasattr(rows, "table") else rows

    def rows_source(self) -> Any:
        """Return the rows as given to :meth:`of_rows`: a pyarrow Table, or rows kept in a file
        (reports.sql.StoredRows, which a writer scans in place); None when the result holds a
        frame."""
        pending = self.__dict__.get("_rows")
        return None if pending is None else pending[0]

    def __getattribute__(self, name: str) -> Any:
        if name == "frame":
            pending = object.__getattribute__(self, "__dict__").get("_rows")
            if pending is not None:
                rows, to_frame = pending
                object.__setattr__(self, "frame", to_frame(rows))
                object.__getattribute__(self, "__dict__").pop("_rows", None)
        return object.__getattribute__(self, name)


ReportFunction = Callable[..., ReportResult]


@dataclass(frozen=True)
class ReportSpec:
    """A registered report: where its function lives, what it answers and what it reads."""

    name: str
    target: str  # "module:function"
    description: str
    shape: Literal["object", "rows"]
    tables: tuple[str, ...]
    noise: bool = False  # hides noise by default
    # Columns read per table (None: all); the store-backed service reads no others.
    columns: dict[str, tuple[str, ...]] | None = None
    # The events it reads (SQL over events, e.g. "status = 'failure'"), beyond the filters: the
    # service reads no others (nor their steps and modified properties); the report still
    # selects them itself. None: every event the filters select.
    events_where: str | None = None
    # Asked about one ``user``, it reads only that user's events (and their steps and modified
    # properties): the service pushes the one-user match down (reports.query.one_user_rows).
    one_user: bool = False
    # Asked about one ``user``, it reads all events but only that user's steps and modified
    # properties (its other answers, e.g. the estimate, count every event).
    one_user_children: bool = False
    # Asked with a ``query``, it reads only the rows of the objects whose ids or names contain
    # it (reports.query.search_slice), unfiltered.
    user_search: bool = False
    # False: the time range does not select (e.g. a job's state now); the service reads every
    # time, so a store answers as in-memory inputs do.
    time_filtered: bool = True
    # True: its answer may depend on the reference time ``now`` (an ETA, a next retry, a wait
    # counted to now). False: the same data gives the same answer at any ``now``, so a kept
    # answer is served whether or not --now is given (ingest.kept.answer_stem); tests run every
    # report at two times and hold a report declared False to identical bytes.
    uses_now: bool = False

    def load(self) -> ReportFunction:
        """Import and return the report function."""
        module, _, function = self.target.partition(":")
        fn: ReportFunction = getattr(importlib.import_module(module), function)
        return fn


_EVENT_TABLES = ("events",)
# What coverage reads; its funnel counts the same rows, so it reads the same.
_COVERAGE_TABLES = ("events", "assignments", "group_members", "scim_resources")
_COVERAGE_EVENTS = ("source_type", "error_code")
# What one user's answer reads (the diagnosis, and the support pack built from it).
ONE_USER_TABLES = (
    "events",
    "steps",
    "modified_properties",
    "sync_jobs",
    "assignments",
    "group_members",
    "scim_resources",
    "scim_requests",
)
_SCOPE_TABLES = ("assignments", "group_members")
_ACCESS_TABLES = (
    "events",
    "modified_properties",
    "assignments",
    "group_members",
    "membership_changes",
    "scim_resources",
    "scim_requests",
)


def _spec(
    name: str,
    target: str,
    description: str,
    shape: Literal["object", "rows"],
    tables: Iterable[str],
    noise: bool = False,
    events: tuple[str, ...] | None = None,
    columns: dict[str, tuple[str, ...]] | None = None,
    events_where: str | None = None,
    one_user: bool = False,
    one_user_children: bool = False,
    user_search: bool = False,
    time_filtered: bool = True,
    uses_now: bool = False,
) -> ReportSpec:
    read = dict(columns or {})
    if events is not None:
        read["events"] = event_columns(*events)
    return ReportSpec(
        name,
        target,
        description,
        shape,
        tuple(tables),
        noise,
        read or None,
        events_where,
        one_user,
        one_user_children,
        user_search,
        time_filtered,
        uses_now,
    )


# Columns of wiki requests a report needs to show the wiki's answer to an event; of steps, to
# tell a reference failure (quarantine-risk).
_REQUEST_ANSWER = ("request_id", "received_at", "status_code", "scim_type", "detail")
_REFERENCE_STEPS = ("event_id", "step_type", "status")
# ... and to match requests to events and show them (correlation).
_REQUEST_MATCH = (
    *_REQUEST_ANSWER,
    "operation",
    "resource_id",
    "external_id",
    "user_name",
)
# What the estimate reads (estimate, and estimate-for which scales it).
_ESTIMATE_TABLES = (
    "events",
    "sync_jobs",
    "assignments",
    "group_members",
    "scim_resources",
    "scim_requests",
)
_ESTIMATE_EVENTS = (
    "cycle_id",
    "change_id",
    "source_type",
    "error_code",
    "error_category",
    "error_reason",
    "error_additional_details",
    "recommended_action",
)


REPORTS: dict[str, ReportSpec] = {
    s.name: s
    for s in (
        _spec(
            "summary",
            "reports.summary:build",
            "Counts of everything stored: events, cycles, objects, outcomes, error codes.",
            "object",
            _EVENT_TABLES,
            events=("cycle_id", "change_id", "error_code", "envelope_result_type"),
        ),
        _spec(
            "cycles",
            "reports.cycles:build",
            "One row per provisioning cycle: start, end, kind, outcomes, throughput, gap.",
            "rows",
            ("events",),
            events=("cycle_id",),
        ),
        _spec(
            "users",
            "reports.users:build",
            "One row per source object: latest outcome, last error, failures, successes.",
            "rows",
            ("events",),
            noise=True,
            events=("source_type", "error_code", "target_name"),
            one_user=True,
        ),
        _spec(
            "timeline",
            "reports.users:build_timeline",
            "One user's events (by id, UPN or name) with their steps and modified properties.",
            "rows",
            ("events", "steps", "modified_properties", "scim_requests"),
            one_user=True,
        ),
        _spec(
            "failures",
            "reports.failures:build",
            "Failures grouped by error code, with who owns the fix and what to do.",
            "rows",
            ("events", "scim_requests"),
            noise=True,
            events=(
                "error_code",
                "error_category",
                "error_reason",
                "recommended_action",
                "error_additional_details",
            ),
            columns={"scim_requests": _REQUEST_ANSWER},
            events_where="status = 'failure'",
        ),
        _spec(
            "skips",
            "reports.failures:build_skips",
            "Skipped events grouped by skip reason, marking out-of-scope noise.",
            "rows",
            ("events",),
            noise=True,
            events=("skip_reason",),
            events_where="status = 'skipped'",
        ),
        _spec(
            "coverage",
            "reports.coverage:build",
            "Who should be in the wiki against who is there, with a verdict per user.",
            "rows",
            _COVERAGE_TABLES,
            events=_COVERAGE_EVENTS,
        ),
        _spec(
            "estimate",
            "reports.estimate:build",
            "How long provisioning takes: documented bounds, observed throughput, ETA.",
            "object",
            _ESTIMATE_TABLES,
            events=_ESTIMATE_EVENTS,
            columns={"scim_requests": _REQUEST_ANSWER},
            uses_now=True,
        ),
        _spec(
            "quarantine-risk",
            "reports.quarantine:build",
            "Per job: failures against the documented escrow thresholds; quarantine state.",
            "rows",
            ("events", "steps", "sync_jobs"),
            events=("source_type", "failed_step"),
            columns={"steps": _REFERENCE_STEPS},
            uses_now=True,
        ),
        _spec(
            "overview",
            "reports.overview:build",
            "The dashboard's Overview: KPIs, job state and the latest failures.",
            "object",
            ("events", "steps", "sync_jobs"),
            noise=True,
            events=(
                "cycle_id",
                "change_id",
                "error_code",
                "error_reason",
                "service_principal_name",
                "source_type",
                "failed_step",
                "envelope_result_type",
            ),
            columns={"steps": _REFERENCE_STEPS},
            uses_now=True,
        ),
        _spec(
            "correlation",
            "reports.correlation:build",
            "Each Entra event beside the wiki's SCIM requests for the same object.",
            "rows",
            ("events", "scim_requests"),
            noise=True,
            events=("error_code", "error_reason", "target_name"),
            columns={"scim_requests": _REQUEST_MATCH},
            one_user=True,
        ),
        _spec(
            "alerts",
            "reports.alerts:build",
            "Alerts raised by `provlens alert`: what is firing and the history.",
            "rows",
            ("alerts",),
        ),
        _spec(
            "access-time",
            "reports.access_time:build",
            "Time to access per user: assignment (or group join) to the wiki, against the SLO.",
            "rows",
            _ACCESS_TABLES,
            uses_now=True,
        ),
        _spec(
            "access-time-summary",
            "reports.access_time:build_summary",
            "p50/p90 time to access per week or per app (--param by=week|app), and overall.",
            "rows",
            _ACCESS_TABLES,
            uses_now=True,
        ),
        _spec(
            "scim-traffic",
            "reports.scim_traffic:build",
            "The wiki's SCIM traffic: requests by operation, status and latency.",
            "rows",
            ("events", "scim_requests"),
            events=("cycle_id",),
            columns={
                "scim_requests": (
                    "request_id",
                    "received_at",
                    "status_code",
                    "operation",
                    "latency_ms",
                )
            },
        ),
        _spec(
            "diagnosis",
            "reports.diagnosis:build",
            "One user in plain language: verdict, the wiki's answer, the fix, its owner, when.",
            "object",
            ONE_USER_TABLES,
            one_user_children=True,
            uses_now=True,
        ),
        _spec(
            "events",
            "reports.events_log:build",
            "Every event like the portal's log (by change, cycle, user or text), one event's pane.",
            "rows",
            ("events", "steps", "modified_properties"),
            noise=True,
            one_user=True,
        ),
        _spec(
            "recent-failures",
            "reports.recent_failures:build",
            "The latest failures grouped by user and error code, with counts and first/last time.",
            "rows",
            _EVENT_TABLES,
            events=(
                "error_code",
                "error_reason",
                "service_principal_name",
                "change_id",
                "cycle_id",
            ),
        ),
        _spec(
            "job-header",
            "reports.job_status:build",
            "Per job: state, current or last cycle, scope, last and next run, quarantine, links.",
            "rows",
            ("events", "sync_jobs", "assignments", "group_members"),
            events=("cycle_id", "service_principal_name"),
            time_filtered=False,
            uses_now=True,
        ),
        _spec(
            "job-status",
            "reports.jobs:build",
            "Per job: latest state and schedule, last cycle, and when the next run is due.",
            "rows",
            ("events", "sync_jobs"),
        ),
        # The dashboard's small figures (reports.pages): every tile, series and table a page
        # shows is a registered report, so `provlens report NAME` reproduces it.
        _spec(
            "events-over-time",
            "reports.pages:build_events_over_time",
            "Events per time bucket by status, action or error code (--param by=, status=).",
            "rows",
            _EVENT_TABLES,
            events=("error_code",),
        ),
        _spec(
            "filter-options",
            "reports.pages:build_filter_options",
            "The filters' choices: apps, jobs, the time span, whether all is demo data.",
            "object",
            _EVENT_TABLES,
            events=("service_principal_name", "origin"),
        ),
        _spec(
            "cycle-kpis",
            "reports.pages:build_cycle_kpis",
            "Cycles, initial cycles, median duration and longest gap of the selected cycles.",
            "object",
            ("events",),
            events=("cycle_id",),
        ),
        _spec(
            "failure-kpis",
            "reports.pages:build_failure_kpis",
            "Failed events, error codes and users with a failure.",
            "object",
            ("events", "scim_requests"),
            noise=True,
            events=(
                "error_code",
                "error_category",
                "error_reason",
                "recommended_action",
                "error_additional_details",
                "source_type",
                "target_name",
            ),
            columns={"scim_requests": _REQUEST_ANSWER},
        ),
        _spec(
            "affected-users",
            "reports.pages:build_affected_users",
            "Users with at least one failure, most failures first.",
            "rows",
            _EVENT_TABLES,
            noise=True,
            events=("source_type", "error_code", "target_name"),
        ),
        _spec(
            "user-search",
            "reports.pages:build_user_search",
            "Users whose name, UPN or ids contain --param query=, with the key to ask about each.",
            "rows",
            _EVENT_TABLES,
            noise=True,
            events=("source_type", "error_code", "target_name"),
            user_search=True,
        ),
        _spec(
            "user-steps",
            "reports.pages:build_user_steps",
            "One user's provisioning steps, event by event (--user ID, UPN or name).",
            "rows",
            ("events", "steps", "modified_properties", "scim_requests"),
            noise=True,
            one_user=True,
        ),
        _spec(
            "user-changes",
            "reports.pages:build_user_changes",
            "One user's modified properties, old and new value (--user ID, UPN or name).",
            "rows",
            ("events", "steps", "modified_properties", "scim_requests"),
            noise=True,
            one_user=True,
        ),
        _spec(
            "user-wiki-requests",
            "reports.pages:build_user_wiki_requests",
            "The wiki's SCIM requests about one user (--user ID, UPN or name), any time.",
            "rows",
            ("events", "steps", "modified_properties", "scim_requests"),
            one_user=True,
        ),
        _spec(
            "coverage-funnel",
            "reports.pages:build_coverage_funnel",
            "In scope, processed by Entra, last status success, active in the wiki: users each.",
            "rows",
            _COVERAGE_TABLES,
            events=_COVERAGE_EVENTS,
        ),
        _spec(
            "scim-summary",
            "reports.pages:build_scim_summary",
            "The wiki's requests, errors, 429s and latency p50/p95 in the time range.",
            "object",
            ("scim_requests",),
        ),
        _spec(
            "scim-status-codes",
            "reports.pages:build_scim_status_codes",
            "The wiki's requests per status code in the time range.",
            "rows",
            ("scim_requests",),
        ),
        _spec(
            "scim-rate",
            "reports.pages:build_scim_rate",
            "The wiki's requests per minute by status class (zero counts left out).",
            "rows",
            ("events", "scim_requests"),
            events=("cycle_id",),
        ),
        _spec(
            "scim-requests",
            "reports.pages:build_scim_requests",
            "The wiki's SCIM requests in the time range (--param status_code= keeps one code).",
            "rows",
            ("scim_requests",),
        ),
        _spec(
            "estimate-for",
            "reports.pages:build_estimate_for",
            "The estimate for --param objects=N (default: in scope), the running cycle's progress.",
            "object",
            _ESTIMATE_TABLES,
            events=_ESTIMATE_EVENTS,
            columns={"scim_requests": _REQUEST_ANSWER},
            uses_now=True,
        ),
    )
}


def run_report(
    name: str,
    inputs: Inputs,
    filters: Filters | None = None,
    include_noise: bool = False,
    now: pd.Timestamp | None = None,
    **params: Any,
) -> ReportResult:
    """Run report ``name`` on ``inputs`` and return its result.

    ``now`` is the reference time of time-dependent answers; None means the latest event time in
    the data, so a result never depends on the clock.
    """
    try:
        spec = REPORTS[name]
    except KeyError:
        raise KeyError(f"unknown report {name!r}; known: {', '.join(sorted(REPORTS))}") from None
    fn = spec.load()
    return fn(
        inputs,
        filters if filters is not None else Filters(),
        include_noise=include_noise,
        now=_utc(now),
        **params,
    )
