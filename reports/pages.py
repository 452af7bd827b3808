"""Small reports behind the dashboard's figures, so the CLI reproduces every one of them.

Each is a registered report (reports.REPORTS) like any other: ``provlens report NAME --format
json`` gives what a page shows. They compose the pure functions of the bigger reports (cycles,
failures, users, coverage, scim-traffic, estimate) and never re-derive the model.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from reports import Filters, Inputs, ReportResult, overview
from reports import coverage as coverage_report
from reports import cycles as cycles_report
from reports import estimate as estimate_report
from reports import failures as failures_report
from reports import scim_traffic as scim_report
from reports import users as users_report


def bucket_for(span: pd.Timedelta) -> str:
    """Return a pandas frequency giving a readable number of bars for a time ``span``."""
    if span <= pd.Timedelta(hours=6):
        return "5min"
    if span <= pd.Timedelta(days=2):
        return "h"
    if span <= pd.Timedelta(days=60):
        return "D"
    return "W"


EVENTS_BY = ("status", "action", "error_code")


def build_events_over_time(
    inputs: Inputs,
    filters: Filters,
    *,
    include_noise: bool = True,
    now: pd.Timestamp | None = None,
    by: str = "status",
    status: str | None = None,
    bucket: str | None = None,
    **params: Any,
) -> ReportResult:
    """Return selected events (of ``status`` when given) per time bucket and ``by`` value.

    Noise is counted (real work the job did, as ``summary``). ``bucket`` is a pandas frequency;
    without it one is chosen from the selected events' span (5 min, hour, day or week).
    """
    if by not in EVENTS_BY:
        raise ValueError(f"by must be one of {', '.join(EVENTS_BY)}, not {by!r}")
    frame = overview.events_over_time_of(inputs, filters, by, bucket or bucket_for, status or None)
    if bucket is None:
        bucket = bucket_for(overview.selected_span(inputs, filters))
    return ReportResult(frame=frame, data={"by": by, "status": status, "bucket": bucket})


def build_filter_options(
    inputs: Inputs,
    filters: Filters,
    *,
    include_noise: bool = True,
    now: pd.Timestamp | None = None,
    **params: Any,
) -> ReportResult:
    """Return the filters' choices: apps (id -> name), jobs, time span, whether all is demo."""
    opts = overview.filter_options_of(inputs, filters)
    return ReportResult(
        data={
            "apps": opts.apps,
            "jobs": list(opts.jobs),
            "first_at": opts.first_at,
            "last_at": opts.last_at,
            "is_demo": opts.is_demo,
        }
    )


def build_cycle_kpis(
    inputs: Inputs,
    filters: Filters,
    *,
    include_noise: bool = True,
    now: pd.Timestamp | None = None,
    **params: Any,
) -> ReportResult:
    """Return the Cycles page's tiles: cycles, initial cycles, median duration, longest gap."""
    cycles = cycles_report.build(inputs, filters).frame
    return ReportResult(data=overview.cycle_kpis(cycles))


def build_failure_kpis(
    inputs: Inputs,
    filters: Filters,
    *,
    include_noise: bool = False,
    now: pd.Timestamp | None = None,
    **params: Any,
) -> ReportResult:
    """Return the Failures page's tiles: failed events, error codes, users with a failure."""
    failures = failures_report.build(inputs, filters, include_noise=include_noise)
    users = users_report.build(inputs, filters, include_noise=include_noise)
    return ReportResult(
        data=overview.failure_kpis(failures.frame, users.frame),
        hidden_noise=failures.hidden_noise,
    )


def build_affected_users(
    inputs: Inputs,
    filters: Filters,
    *,
    include_noise: bool = False,
    now: pd.Timestamp | None = None,
    **params: Any,
) -> ReportResult:
    """Return the users with at least one failure, most failures (then latest) first."""
    users = users_report.build(inputs, filters, include_noise=include_noise)
    return ReportResult(
        frame=users_report.affected_users(users.frame), hidden_noise=users.hidden_noise
    )


def build_user_search(
    inputs: Inputs,
    filters: Filters,
    *,
    include_noise: bool = False,
    now: pd.Timestamp | None = None,
    query: str = "",
    limit: int | str = 200,
    **params: Any,
) -> ReportResult:
    """Return up to ``limit`` users rows matching ``query``, each with the ``user_key`` to ask.

    ``user_key`` is what the timeline, diagnosis and support pack take for that object (its id,
    else UPN, else name).
    """
    from reports.model import model_of

    users = users_report.build(inputs, filters, include_noise=include_noise)
    frame = users.frame if users.frame is not None else pd.DataFrame(columns=users_report.COLUMNS)
    hits = users_report.search_users(frame, str(query or ""), int(limit))
    hits = hits.assign(user_key=users_report.user_key(hits).to_numpy()).reset_index(drop=True)
    total, hidden = len(frame), users.hidden_noise
    if filters == Filters():
        # The model's counts of the whole table: the service may hand over only the rows of
        # the objects the query can find (reports.query.search_slice).
        facts = model_of(inputs).facts.iloc[0]
        total = int(facts["users_rows" if include_noise else "users_rows_quiet"])
        hidden = 0 if include_noise else int(facts["noise_events"])
    return ReportResult(frame=hits, data={"users": total}, hidden_noise=hidden)


def build_coverage_funnel(
    inputs: Inputs,
    filters: Filters,
    *,
    include_noise: bool = True,
    now: pd.Timestamp | None = None,
    **params: Any,
) -> ReportResult:
    """Return the funnel from in scope to active in the wiki (``stage``, ``users``)."""
    rows = coverage_report.coverage_rows(inputs, filters)
    return ReportResult(frame=coverage_report.coverage_funnel(rows))


def build_scim_summary(
    inputs: Inputs,
    filters: Filters,
    *,
    include_noise: bool = True,
    now: pd.Timestamp | None = None,
    **params: Any,
) -> ReportResult:
    """Return the wiki's request KPIs: requests, errors, 429s, latency p50/p95 (ms)."""
    requests = filters.apply_table("scim_requests", inputs.scim_requests)
    return ReportResult(data=scim_report.traffic_summary(requests))


def build_scim_status_codes(
    inputs: Inputs,
    filters: Filters,
    *,
    include_noise: bool = True,
    now: pd.Timestamp | None = None,
    **params: Any,
) -> ReportResult:
    """Return the wiki's requests per status code in the selected time range."""
    requests = filters.apply_table("scim_requests", inputs.scim_requests)
    return ReportResult(frame=scim_report.status_code_counts(requests))


def build_scim_rate(
    inputs: Inputs,
    filters: Filters,
    *,
    include_noise: bool = True,
    now: pd.Timestamp | None = None,
    **params: Any,
) -> ReportResult:
    """Return requests per minute by status class (``period_start``, ``status``, ``requests``).

    Classes (SCIM_CLASSES): 2xx, 3xx, 4xx but 429, 429 throttled, 5xx, unknown; zero counts
    are left out.
    """
    minutes = scim_report.build(inputs, filters, granularity="minute").frame
    if minutes is None or minutes.empty:
        return ReportResult(
            frame=pd.DataFrame(
                {
                    "period_start": pd.Series(dtype="datetime64[us, UTC]"),
                    "status": pd.Series(dtype="str"),
                    "requests": pd.Series(dtype="int64"),
                }
            )
        )
    return ReportResult(frame=scim_report.status_classes_long(minutes, SCIM_CLASSES))


# Label -> count column of the scim-traffic report's minute rows (4xx without the 429s).
SCIM_CLASSES: dict[str, str] = {
    "2xx": "status_2xx",
    "3xx": "status_3xx",
    "4xx (not 429)": "status_4xx_other",
    "429 throttled": "throttled_429",
    "5xx": "status_5xx",
    "unknown": "status_unknown",
}


def build_scim_requests(
    inputs: Inputs,
    filters: Filters,
    *,
    include_noise: bool = True,
    now: pd.Timestamp | None = None,
    status_code: int | str | None = None,
    **params: Any,
) -> ReportResult:
    """Return the wiki's requests in the selected time range (of ``status_code``), oldest first."""
    requests = filters.apply_table("scim_requests", inputs.scim_requests)
    if status_code is not None:
        requests = requests.loc[(requests["status_code"] == int(status_code)).fillna(False)]
    return ReportResult(
        frame=requests.sort_values("received_at", kind="stable").reset_index(drop=True)
    )


def build_estimate_for(
    inputs: Inputs,
    filters: Filters,
    *,
    include_noise: bool = True,
    now: pd.Timestamp | None = None,
    objects: int | str | None = None,
    **params: Any,
) -> ReportResult:
    """Return the estimate scaled to ``objects`` (default: those in scope) and cycle progress."""
    base = estimate_report.build(inputs, filters, now=now).data or {}
    count = int(base.get("objects_in_scope") or 0) if objects is None else int(objects)
    data = estimate_report.scale_estimate(base, count)
    data["progress"] = estimate_report.cycle_progress(base.get("current_cycle"))
    return ReportResult(data=data)


def _shown_timeline(
    inputs: Inputs, filters: Filters, user: str | None, include_noise: bool
) -> tuple[users_report.Timeline, int]:
    if not user:
        from ingest.errors import UsageError

        raise UsageError("this report needs a user: add --user <UPN, object id or name>")
    timeline = users_report.user_timeline(inputs, user, filters)
    return users_report.shown_timeline(timeline, include_noise)


def build_user_steps(
    inputs: Inputs,
    filters: Filters,
    *,
    include_noise: bool = False,
    now: pd.Timestamp | None = None,
    user: str | None = None,
    **params: Any,
) -> ReportResult:
    """Return the steps of ``user``'s events (timeline order; noise hidden unless asked)."""
    timeline, hidden = _shown_timeline(inputs, filters, user, include_noise)
    columns = ["event_id", "position", "name", "step_type", "status", "description"]
    return ReportResult(frame=timeline.steps[columns], hidden_noise=hidden)


def build_user_changes(
    inputs: Inputs,
    filters: Filters,
    *,
    include_noise: bool = False,
    now: pd.Timestamp | None = None,
    user: str | None = None,
    **params: Any,
) -> ReportResult:
    """Return the modified properties (old -> new) of ``user``'s events, timeline order."""
    timeline, hidden = _shown_timeline(inputs, filters, user, include_noise)
    columns = ["event_id", "name", "old_value", "new_value"]
    return ReportResult(frame=timeline.modified_properties[columns], hidden_noise=hidden)


def build_user_wiki_requests(
    inputs: Inputs,
    filters: Filters,
    *,
    include_noise: bool = True,
    now: pd.Timestamp | None = None,
    user: str | None = None,
    **params: Any,
) -> ReportResult:
    """Return the wiki's SCIM requests about ``user``'s objects (any time), oldest first."""
    from reports.export import wiki_requests_for

    timeline, _ = _shown_timeline(inputs, filters, user, True)
    return ReportResult(frame=wiki_requests_for(inputs, timeline.events, filters))
