"""overview: the headline figures of the dashboard's pages, as pure functions the CLI can call.

The Overview page's answer is :func:`build` (KPIs in ``data``, the latest failures as rows):
it composes the summary, cycles and quarantine-risk reports with the latest job snapshots
through :func:`kpis`, which the dashboard calls on its cached report results. The rest are the
small figures other pages show: events per time bucket, the sidebar's choices, the Cycles and
Failures pages' KPI tiles. Noise is counted here, as in ``summary``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
from pandas.tseries.frequencies import to_offset

from reports import Filters, Inputs, ReportResult
from reports import quarantine as quarantine_report
from reports import summary as summary_report
from reports.inputs import latest_jobs

if TYPE_CHECKING:
    from reports.model import Model

UTC_DTYPE = "datetime64[us, UTC]"


@dataclass(frozen=True)
class FilterOptions:
    """Choices offered by the dashboard's filters, taken from the stored events."""

    apps: dict[str, str]  # service principal id -> display name
    jobs: tuple[str, ...]
    first_at: pd.Timestamp | None
    last_at: pd.Timestamp | None
    is_demo: bool


# The filters' choices, by DuckDB where the selected events lie: each app's name in its first
# event naming the app (read order), the jobs, the origins, and the time span.
_OPTIONS_SQL = """
SELECT 'app' AS part, service_principal_id AS k,
    arg_min({{'n': service_principal_name}}, _row).n AS name, min(_row) AS pos,
    NULL::TIMESTAMPTZ AS first_at, NULL::TIMESTAMPTZ AS last_at
FROM events WHERE {where} AND service_principal_id IS NOT NULL GROUP BY service_principal_id
UNION ALL
SELECT DISTINCT 'job', job_id, NULL, NULL, NULL, NULL FROM events
WHERE {where} AND job_id IS NOT NULL
UNION ALL
SELECT DISTINCT 'origin', origin, NULL, NULL, NULL, NULL FROM events
WHERE {where} AND origin IS NOT NULL
UNION ALL
SELECT 'span', NULL, NULL, count(*), min(activity_at), max(activity_at) FROM events WHERE {where}
"""


_OPTIONS_SCHEMA = pa.schema(
    [
        ("part", pa.string()),
        ("k", pa.string()),
        ("name", pa.string()),
        ("pos", pa.int64()),
        ("first_at", pa.timestamp("us", tz="UTC")),
        ("last_at", pa.timestamp("us", tz="UTC")),
    ]
)


def _kept_options(inputs: Inputs, filters: Filters) -> pd.DataFrame | None:
    """Return _OPTIONS_SQL's rows from the model's groups (per job and app: its first event's
    place and app name, its origins, its time span), or None when they do not answer for
    ``filters`` (reports.model.selected_groups)."""
    from reports.model import selected_groups
    from reports.sql import frame_of

    got = selected_groups(inputs, filters)
    if got is None:
        return None
    rows: list[dict[str, Any]] = []
    named = got.loc[got["service_principal_id"].notna()].sort_values("first_pos", kind="stable")
    for app, mine in named.groupby("service_principal_id", sort=False):
        first = mine.iloc[0]
        name = first["first_name"]
        rows.append(
            {
                "part": "app",
                "k": str(app),
                "name": None if pd.isna(name) else str(name),
                "pos": int(first["first_pos"]),
            }
        )
    rows += [{"part": "job", "k": str(j)} for j in got["job_id"].dropna().unique()]
    origins = {str(o) for listed in got["origins"] if listed is not None for o in listed}
    rows += [{"part": "origin", "k": o} for o in sorted(origins)]
    first_at = pd.to_datetime(got["first_at"], utc=True).min()
    last_at = pd.to_datetime(got["last_at"], utc=True).max()
    rows.append(
        {
            "part": "span",
            "pos": int(got["events"].sum()),
            "first_at": None if pd.isna(first_at) else first_at.to_pydatetime(),
            "last_at": None if pd.isna(last_at) else last_at.to_pydatetime(),
        }
    )
    return frame_of(pa.Table.from_pylist(rows, schema=_OPTIONS_SCHEMA))


def filter_options_of(inputs: Inputs, filters: Filters) -> FilterOptions:
    """Return the apps (by name), jobs and time span of the events ``filters`` select, and
    whether all of them are demo data."""
    from reports import sql

    rows = _kept_options(inputs, filters)
    if rows is None:
        rows = sql.over(inputs, _OPTIONS_SQL.format(where=sql.filter_sql(filters)), ["events"])
    span = rows.loc[rows["part"] == "span"].iloc[0]
    if not int(span["pos"]):
        return FilterOptions({}, (), None, None, False)
    found = rows.loc[rows["part"] == "app"].sort_values("pos", kind="stable")
    apps = {
        str(i): str(n) if pd.notna(n) else str(i)
        for i, n in zip(found["k"], found["name"], strict=True)
    }
    jobs = tuple(sorted(str(j) for j in rows.loc[rows["part"] == "job", "k"]))
    origins = set(rows.loc[rows["part"] == "origin", "k"])
    return FilterOptions(
        apps=dict(sorted(apps.items(), key=lambda kv: kv[1].lower())),
        jobs=jobs,
        first_at=span["first_at"],
        last_at=span["last_at"],
        is_demo=bool(origins) and origins == {"demo"},
    )


def filter_options(events: pd.DataFrame) -> FilterOptions:
    """Return :func:`filter_options_of` all of ``events``."""
    return filter_options_of(Inputs(events=events), Filters())


def bucket_sql(column: str, freq: str) -> str:
    """Return SQL flooring ``column`` to ``freq`` (a fixed pandas frequency, from the epoch as
    pandas' ``floor``), or to weeks starting on Monday 00:00 UTC (``W``, ISO weeks)."""
    if freq == "W":
        return f"date_trunc('week', {column})"
    step = to_offset(freq)
    micros = int(getattr(step, "nanos", 0)) // 1000
    if micros <= 0:
        raise ValueError(f"bucket must be a fixed frequency (5min, h, D) or W, not {freq!r}")
    return f"time_bucket(INTERVAL '{micros} microseconds', {column}, TIMESTAMPTZ '1970-01-01')"


# Over ``{events}``: the selected events (reports.model.timeline_of when it holds the columns).
_SPAN_SQL = (
    "SELECT min(activity_at) AS first_at, max(activity_at) AS last_at FROM ({events}) WHERE {where}"
)
# Events per time bucket and ``by`` value (null last in both; a null value is "(none)").
_COUNTS_SQL = """
SELECT {bucket} AS bucket, {by} AS value, count(*) AS count FROM ({events}) WHERE {where}
GROUP BY ALL ORDER BY bucket NULLS LAST, value NULLS LAST
"""


def _events_with(inputs: Inputs, column: str) -> tuple[str, list[str], dict[str, pd.DataFrame]]:
    """Return the selected events for reports.sql.over: the model's timeline when it has
    ``column`` (a time range then reads only its row groups), else the events."""
    from reports.model import timeline_of
    from reports.model_sql import TIMELINE_COLUMNS

    if column in TIMELINE_COLUMNS:
        return timeline_of(inputs)
    return "SELECT * FROM events", ["events"], {}


def selected_span(inputs: Inputs, filters: Filters, status: str | None = None) -> pd.Timedelta:
    """Return the time between the first and the last selected event (of ``status``)."""
    from reports import sql
    from reports.model import selected_groups

    groups = selected_groups(inputs, filters) if status is None else None
    if groups is not None:  # the model's groups keep each one's first and last event time
        first = pd.to_datetime(groups["first_at"], utc=True).min()
        last = pd.to_datetime(groups["last_at"], utc=True).max()
        return pd.Timedelta(0) if pd.isna(first) else pd.Timestamp(last) - pd.Timestamp(first)
    where = sql.filter_sql(filters)
    if status is not None:
        where += f" AND status = {sql.literal(status)}"
    events, tables, frames = _events_with(inputs, "activity_at")
    got = sql.over(inputs, _SPAN_SQL.format(events=events, where=where), tables, **frames)
    got = got.iloc[0]
    if pd.isna(got["first_at"]):
        return pd.Timedelta(0)
    return pd.Timestamp(got["last_at"]) - pd.Timestamp(got["first_at"])


def events_over_time_of(
    inputs: Inputs,
    filters: Filters,
    by: str,
    freq: str | Callable[[pd.Timedelta], str],
    status: str | None = None,
) -> pd.DataFrame:
    """Return selected events (of ``status`` when given) per time bucket and ``by`` value:
    ``bucket``, ``by``, ``count``, counted where the events lie.

    ``freq`` is a pandas frequency, or a function choosing one from the selected events' span.
    """
    from reports import sql

    if callable(freq):
        freq = freq(selected_span(inputs, filters, status))
    where = sql.filter_sql(filters)
    if status is not None:
        where += f" AND status = {sql.literal(status)}"
    column = '"' + by.replace('"', '""') + '"'
    events, tables, frames = _events_with(inputs, by)
    query = _COUNTS_SQL.format(
        events=events, bucket=bucket_sql("activity_at", freq), by=column, where=where
    )
    got = sql.over(inputs, query, tables, **frames)
    out = pd.DataFrame(
        {
            "bucket": got["bucket"].astype(UTC_DTYPE),
            by: got["value"].fillna("(none)").astype(str),
            "count": got["count"].astype("int64"),
        }
    )
    return out


def counts_over_time(frame: pd.DataFrame, time_col: str, by: str, freq: str) -> pd.DataFrame:
    """Return events of ``frame`` per ``freq`` time bucket and ``by`` value."""
    events = frame if time_col == "activity_at" else frame.rename(columns={time_col: "activity_at"})
    return events_over_time_of(Inputs(events=events), Filters(), by, freq)


def events_over_time(
    events: pd.DataFrame,
    by: str,
    freq: str | Callable[[pd.Timedelta], str],
    status: str | None = None,
) -> pd.DataFrame:
    """Return :func:`events_over_time_of` all of ``events``."""
    return events_over_time_of(Inputs(events=events), Filters(), by, freq, status)


LATEST_FAILURE_COLUMNS = (
    "activity_at",
    "source_name",
    "source_upn",
    "action",
    "error_code",
    "error_reason",
    "service_principal_name",
    "cycle_id",
)


def latest_failures(events: pd.DataFrame, limit: int = 20) -> pd.DataFrame:
    """Return the ``limit`` newest failed events, newest first, with the columns people read."""
    failed = events.loc[(events["status"] == "failure").fillna(False).astype(bool)]
    cols = [c for c in LATEST_FAILURE_COLUMNS if c in failed.columns]
    return failed.nlargest(limit, "activity_at")[cols].reset_index(drop=True)


RISK_ORDER = ("quarantined", "over_threshold", "approaching", "low")


def worst_risk(risk: pd.DataFrame | None) -> str:
    """Return the most serious ``risk`` of the quarantine-risk rows, or `—` without jobs."""
    if risk is None or risk.empty:
        return "—"
    present = set(risk["risk"].dropna())
    return next((r for r in RISK_ORDER if r in present), "unknown")


def latest_job_states(sync_jobs: pd.DataFrame) -> pd.DataFrame:
    """Return each job's latest snapshot, most recently captured first."""
    jobs = latest_jobs(sync_jobs)
    if jobs.empty:
        return jobs
    return jobs.sort_values("captured_at", ascending=False, kind="stable").reset_index(drop=True)


QUARANTINE_COLUMNS = (
    "job_id",
    "status_code",
    "quarantine_reason",
    "quarantine_began",
    "quarantine_next_attempt",
    "quarantine_series_count",
)


def quarantined_jobs(jobs: pd.DataFrame) -> pd.DataFrame:
    """Return the jobs (latest snapshots) in quarantine now, with their quarantine columns."""
    hit = jobs.loc[jobs["quarantine_began"].notna()] if not jobs.empty else jobs
    return hit[[c for c in QUARANTINE_COLUMNS if c in jobs.columns]].reset_index(drop=True)


def _value(value: Any) -> Any:
    return None if value is None or pd.isna(value) else value


def kpis(
    summary: dict[str, Any],
    cycles: pd.DataFrame | None,
    jobs: pd.DataFrame,
    risk: pd.DataFrame | None,
) -> dict[str, Any]:
    """Return the Overview's KPIs from the summary, cycles and quarantine-risk reports and jobs.

    ``jobs`` are the latest job snapshots (:func:`latest_job_states`); ``job_state`` is the
    status of the most recently captured one, None without job snapshots.
    """
    last = cycles.iloc[-1] if cycles is not None and not cycles.empty else None
    state = None
    if not jobs.empty:
        code = jobs.iloc[0]["status_code"]
        state = "unknown" if pd.isna(code) or not str(code) else str(code)
    return {
        "events": int(summary.get("events") or 0),
        "success_rate": summary.get("success_rate"),
        "failures": sum(int(v) for v in (summary.get("failures_by_error_code") or {}).values()),
        "source_objects": int(summary.get("source_objects") or 0),
        "cycles": int(summary.get("cycles") or 0),
        "jobs": len(jobs),
        "job_state": state,
        "jobs_quarantined": len(quarantined_jobs(jobs)),
        "quarantine_risk": worst_risk(risk),
        "last_cycle_started_at": None if last is None else _value(last["started_at"]),
        "last_cycle_duration_s": None if last is None else _value(last["duration_s"]),
    }


def cycle_kpis(cycles: pd.DataFrame | None) -> dict[str, Any]:
    """Return the Cycles page's KPIs: cycles, initial cycles, median duration, longest gap (s)."""
    if cycles is None or cycles.empty:
        return {"cycles": 0, "initial": 0, "median_duration_s": None, "longest_gap_s": None}
    duration = cycles["duration_s"].astype("Float64").dropna()
    gaps = cycles["gap_before_s"].astype("Float64").dropna()
    return {
        "cycles": len(cycles),
        "initial": int((cycles["kind"] == "initial").fillna(False).sum()),
        "median_duration_s": float(duration.median()) if len(duration) else None,
        "longest_gap_s": float(gaps.max()) if len(gaps) else None,
    }


def failure_kpis(failures: pd.DataFrame | None, users: pd.DataFrame | None) -> dict[str, int]:
    """Return the Failures page's KPIs: failed events, error codes, users with a failure."""
    if failures is None or failures.empty:
        failed_events = codes = 0
    else:
        failed_events, codes = int(failures["events"].sum()), len(failures)
    return {
        "failed_events": failed_events,
        "error_codes": codes,
        "users_with_failure": 0
        if users is None or users.empty
        else int((users["failures"].fillna(0) > 0).sum()),
    }


# How the "how many" figures relate: one name each, used on every page and report.
COUNTS_EXPLAINED = (
    "Objects seen = distinct users and groups in the provisioning logs (any status, noise "
    "included); users assigned = user principals assigned to the app directly or through a "
    "group, with any role; users in scope = those of them Entra provisions (an app role other "
    "than Default Access, directly or as a direct group member); users active in the wiki = "
    "wiki accounts with active = true. Seen counts what Entra logged, the scope counts what it "
    "should provision, the wiki what exists: they differ by out-of-scope objects Entra still "
    "logs, assigned users not processed yet, and wiki accounts Entra never created."
)


# The counts of the model's coverage users (the objects part's ``coverage`` rows), over
# ``{objects}``: the kept part's file read column-wise where it lies, else the part's frame.
_USER_COUNTS_SQL = """
SELECT count(*) FILTER (WHERE coalesce(scope_via, 'none') <> 'none') AS users_assigned,
    count(*) FILTER (WHERE in_scope) AS users_in_scope,
    count(*) FILTER (WHERE wiki_state = 'active') AS users_active_in_wiki
FROM {objects} WHERE coverage
"""


def _user_counts(model: Model) -> dict[str, int]:
    """Return the counts of the model's coverage users (every object, whatever the filters),
    counted by DuckDB: over the kept objects part in place (four columns of a million rows are
    never read into pandas), else over the part's frame."""
    from reports import sql

    path = model.file("objects")
    if path is not None:
        got = sql.run(_USER_COUNTS_SQL.format(objects=f"read_parquet({sql.literal(path)})"))
    else:
        columns = ["coverage", "scope_via", "in_scope", "wiki_state"]
        frame = model.columns("objects", columns)
        got = sql.run(_USER_COUNTS_SQL.format(objects="objects"), objects=frame)
    row = got.iloc[0]
    return {name: int(row[name]) for name in got.columns}


def object_counts(model: Model, source_objects: int) -> dict[str, Any]:
    """Return the object counts every page names the same way, and the line relating them
    (the users' counted once per model: they read every object)."""
    return {
        "source_objects": int(source_objects),
        **model.remember("user_counts", _user_counts),
        "counts_explained": COUNTS_EXPLAINED,
    }


# The selected events of ``{events}`` (reports.model.timeline_of, ``_noise`` beside each), the
# noise among them and the successes, all and shown (noise out).
_COUNTED_SQL = """
SELECT count(*) AS n, count(*) FILTER (WHERE _noise) AS noise,
    count(*) FILTER (WHERE status = 'success') AS successes,
    count(*) FILTER (WHERE NOT _noise AND status = 'success') AS shown_successes
FROM ({events}) WHERE {where}
"""


def _kept_summary(model: Model, groups: pd.DataFrame) -> dict[str, Any] | None:
    """Return what the Overview reads of summary_of(full=False) from the model's ``groups``
    (those the filters select), or None when they do not say it: distinct objects of some but
    not all groups, or cycles of two groups of one job (they may share a cycle id)."""
    every = model.groups
    if len(groups) == len(every):
        objects = int(model.facts.iloc[0]["objects"])
    elif len(groups) == 1:
        objects = int(groups["objects"].iloc[0])
    else:
        return None
    job = groups["job_id"]
    if job.isna().sum() > 1 or job.dropna().duplicated().any():
        return None
    n = int(groups["events"].sum())
    codes: dict[str, int] = {}
    for listed in groups["failure_codes"]:
        for item in listed if listed is not None else ():
            codes[str(item["code"])] = codes.get(str(item["code"]), 0) + int(item["n"])
    first, last = groups["first_at"].min(), groups["last_at"].max()
    return {
        "events": n,
        "distinct_ids": None,
        "cycles": int(groups["cycles"].sum()),
        "changes": None,
        "source_objects": objects if n else 0,
        "first_at": None if not n or pd.isna(first) else pd.Timestamp(first),
        "last_at": None if not n or pd.isna(last) else pd.Timestamp(last),
        "success_rate": float(np.int64(groups["successes"].sum()) / n) if n else None,
        "by_action_status": {},
        "failures_by_error_code": dict(sorted(codes.items())),
        "by_envelope_result_type": {},
    }


def build(
    inputs: Inputs,
    filters: Filters,
    *,
    include_noise: bool = False,
    now: pd.Timestamp | None = None,
    limit: int = 20,
    **params: Any,
) -> ReportResult:
    """Return the Overview's KPIs (``data``) and its latest failures (rows).

    Counts are of everything selected, noise included (as ``summary``); ``success_rate`` is the
    user-facing one, hidden noise out of both numerator and denominator (``success_rate_all``
    counts everything). The last cycle is the latest of the app/job/time selection: an action
    or status filter never changes it (DESIGN "filters").
    """
    from ingest.store import to_pandas
    from reports import sql
    from reports.cycles import selected_pairs
    from reports.model import model_of, selected_cycles, selected_groups, timeline_of, whole_jobs

    model = model_of(inputs)
    scope = Filters(
        since=filters.since,
        until=filters.until,
        service_principal_ids=filters.service_principal_ids,
        job_ids=filters.job_ids,
    )
    # The model's groups answer the counts of an app or job selection (reports.model.
    # selected_groups); else the selection's summary, (job, cycle) pairs and noise are counted
    # by DuckDB where the events lie: pandas sees a few rows, not every selected event.
    groups = selected_groups(inputs, filters)
    summary = _kept_summary(model, groups) if groups is not None else None
    if summary is None:
        summary = summary_report.summary_of(inputs, filters, full=False)
    if groups is not None and whole_jobs(groups, model.groups):
        jobs_kept = set(groups["job_id"].fillna("").astype("str"))
        pairs = model.columns("cycles", ["job_id", "cycle_id"])
        pairs = pairs.loc[pairs["job_id"].fillna("").astype("str").isin(jobs_kept)]
    else:
        pairs = selected_pairs(inputs, scope)
    cycles = selected_cycles(model.cycles, pairs)
    risk = quarantine_report.build(inputs, filters, now=now).frame
    jobs = latest_job_states(filters.apply_table("sync_jobs", inputs.sync_jobs))
    where = sql.filter_sql(filters)
    if groups is not None:
        counted = pd.Series(
            {
                "n": int(groups["events"].sum()),
                "noise": int(groups["noise"].sum()),
                "successes": int(groups["successes"].sum()),
                "shown_successes": int(groups["successes"].sum() - groups["noise_successes"].sum()),
            }
        )
    else:
        events, tables, frames = timeline_of(inputs, noise=True)
        query = _COUNTED_SQL.format(events=events, where=where)
        counted = sql.over(inputs, query, tables, **frames).iloc[0]
    n = int(counted["n"])
    # drop_noise_events and success_rate of what is shown: hidden noise is out of both.
    hidden = 0 if include_noise or not n else int(counted["noise"])
    shown = n - hidden
    successes = counted["shown_successes"] if hidden else counted["successes"]
    # The failures at or after the ``limit``-th newest failure time, and those without a time:
    # every row latest_failures can pick from all of them (ties included), in read order.
    # The time is found first (over the model's timeline where it is kept) and given as a
    # value, so the read skips the parts' row groups that end before it (a million events' text
    # columns are never decoded).
    failed_where = f"{where} AND status = 'failure'"
    events, tables, frames = timeline_of(inputs)
    oldest = sql.over(
        inputs,
        f"SELECT min(activity_at) AS at FROM (SELECT activity_at FROM ({events}) "  # noqa: S608
        f"WHERE {failed_where} AND activity_at IS NOT NULL "
        f"ORDER BY activity_at DESC LIMIT {int(limit)})",
        tables,
        **frames,
    )["at"].iloc[0]
    timed = "FALSE" if pd.isna(oldest) else f"activity_at >= {sql.literal(pd.Timestamp(oldest))}"
    failed = sql.over_arrow(
        inputs,
        f"SELECT * EXCLUDE (_row) FROM events WHERE {failed_where} "  # noqa: S608
        f"AND (activity_at IS NULL OR {timed}) ORDER BY _row",
        ["events"],
    )
    data = kpis(summary, cycles, jobs, risk)
    data["success_rate_all"] = data["success_rate"]
    data["success_rate"] = float(np.int64(successes) / shown) if shown else None
    data["noise_hidden"] = hidden
    data.update(object_counts(model, int(summary.get("source_objects") or 0)))
    frame = latest_failures(to_pandas("events", failed), limit)
    return ReportResult(frame=frame, data=data, hidden_noise=hidden)
