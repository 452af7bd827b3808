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
from typing import Any, Literal

import pandas as pd

from ingest.schema import TABLES, empty_frame
from reports.inputs import isin

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
        for column, values in (
            ("service_principal_id", self.service_principal_ids),
            ("job_id", self.job_ids),
            ("action", self.actions),
            ("status", self.statuses),
        ):
            if values and column in frame.columns:
                keep &= isin(frame[column], values)
        return keep

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
        """Return inputs cut to the selection: events and their children, jobs, scope, requests."""
        events = self.apply_events(inputs.events)
        if events is inputs.events:
            steps, mods = inputs.steps, inputs.modified_properties
        else:
            ids = events["id"]
            steps = inputs.steps.loc[isin(inputs.steps["event_id"], ids)]
            mods = inputs.modified_properties.loc[isin(inputs.modified_properties["event_id"], ids)]
        assignments = self.apply_table("assignments", inputs.assignments)
        members = inputs.group_members
        if self.service_principal_ids:
            groups = assignments.loc[assignments["principal_type"] == "group", "principal_id"]
            members = members.loc[isin(members["group_id"], groups)]
        return Inputs(
            events=events,
            steps=steps,
            modified_properties=mods,
            sync_jobs=self.apply_table("sync_jobs", inputs.sync_jobs),
            assignments=assignments,
            group_members=members,
            scim_resources=inputs.scim_resources,
            scim_requests=self.apply_table("scim_requests", inputs.scim_requests),
            alerts=inputs.alerts,
            membership_changes=inputs.membership_changes,
        )


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
            if getattr(self, f.name) is None:
                setattr(self, f.name, empty_frame(f.name))

    @classmethod
    def from_tables(cls, tables: dict[str, pd.DataFrame | None]) -> Inputs:
        """Return inputs from a ``{table name: frame}`` mapping (unknown names are an error)."""
        unknown = set(tables) - set(TABLES)
        if unknown:
            raise KeyError(f"not canonical tables: {sorted(unknown)}")
        return cls(**{name: frame for name, frame in tables.items() if frame is not None})


@dataclass(frozen=True)
class ReportResult:
    """A report's answer: a frame of rows, an object (dict), or both; and the noise rows hidden."""

    frame: pd.DataFrame | None = None
    data: dict[str, Any] | None = None
    hidden_noise: int = 0


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

    def load(self) -> ReportFunction:
        """Import and return the report function."""
        module, _, function = self.target.partition(":")
        fn: ReportFunction = getattr(importlib.import_module(module), function)
        return fn


_EVENT_TABLES = ("events",)
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
) -> ReportSpec:
    return ReportSpec(name, target, description, shape, tuple(tables), noise)


REPORTS: dict[str, ReportSpec] = {
    s.name: s
    for s in (
        _spec(
            "summary",
            "reports.summary:build",
            "Counts of everything stored: events, cycles, objects, outcomes, error codes.",
            "object",
            _EVENT_TABLES,
        ),
        _spec(
            "cycles",
            "reports.cycles:build",
            "One row per provisioning cycle: start, end, kind, outcomes, throughput, gap.",
            "rows",
            ("events", "sync_jobs"),
        ),
        _spec(
            "users",
            "reports.users:build",
            "One row per source object: latest outcome, last error, failures, successes.",
            "rows",
            ("events", "modified_properties"),
            noise=True,
        ),
        _spec(
            "timeline",
            "reports.users:build_timeline",
            "One user's events (by id, UPN or name) with their steps and modified properties.",
            "rows",
            ("events", "steps", "modified_properties"),
        ),
        _spec(
            "failures",
            "reports.failures:build",
            "Failures grouped by error code, with who owns the fix and what to do.",
            "rows",
            ("events", "modified_properties", "scim_requests"),
            noise=True,
        ),
        _spec(
            "skips",
            "reports.failures:build_skips",
            "Skipped events grouped by skip reason, marking out-of-scope noise.",
            "rows",
            ("events", "modified_properties"),
            noise=True,
        ),
        _spec(
            "coverage",
            "reports.coverage:build",
            "Who should be in the wiki against who is there, with a verdict per user.",
            "rows",
            ("events", "assignments", "group_members", "scim_resources"),
        ),
        _spec(
            "estimate",
            "reports.estimate:build",
            "How long provisioning takes: documented bounds, observed throughput, ETA.",
            "object",
            ("events", "sync_jobs", "assignments", "group_members", "scim_resources"),
        ),
        _spec(
            "quarantine-risk",
            "reports.quarantine:build",
            "Per job: failures against the documented escrow thresholds; quarantine state.",
            "rows",
            ("events", "steps", "sync_jobs"),
        ),
        _spec(
            "overview",
            "reports.overview:build",
            "The dashboard's Overview: KPIs, job state and the latest failures.",
            "object",
            ("events", "steps", "sync_jobs"),
        ),
        _spec(
            "correlation",
            "reports.correlation:build",
            "Each Entra event beside the wiki's SCIM requests for the same object.",
            "rows",
            ("events", "modified_properties", "scim_requests"),
            noise=True,
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
        ),
        _spec(
            "access-time-summary",
            "reports.access_time:build_summary",
            "p50/p90 time to access per week or per app (--param by=week|app), and overall.",
            "rows",
            _ACCESS_TABLES,
        ),
        _spec(
            "scim-traffic",
            "reports.scim_traffic:build",
            "The wiki's SCIM traffic: requests by operation, status and latency.",
            "rows",
            ("events", "scim_requests"),
        ),
        _spec(
            "job-status",
            "reports.jobs:build",
            "Per job: latest state and schedule, last cycle, and when the next run is due.",
            "rows",
            ("events", "sync_jobs"),
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
