"""estimate: how long provisioning takes, from the documented bounds and this tenant's throughput.

Documented bounds (reference/graph/how-long.md, "Sync assigned users and groups only"): 0.01 to
0.08 minutes per assigned user, group and group member. Observed throughput per cycle = distinct
source objects / (last - first event), over cycles with at least ``min_events`` events. Cycles
repeat about every 40 minutes unless the job's schedule says otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ingest.schema import empty_frame
from reports import Filters, Inputs, ReportResult
from reports.coverage import coverage_rows, in_scope_groups, scope_table
from reports.inputs import casefold, latest_jobs, lookup, object_key, reference_now, slim
from reports.model import event_scim_errors, model_of, selected_cycles
from reports.owners import code_suffix, documented_action, owners

DOCS_MIN_MINUTES_PER_OBJECT = 0.01
DOCS_MAX_MINUTES_PER_OBJECT = 0.08
DEFAULT_INTERVAL_S = 40 * 60
MIN_EVENTS = 20  # fewer events than this do not measure a rate
RUNNING_IDLE_S = 10 * 60  # a cycle whose last event is this recent may still be running


# Failures Entra retries on its own (the target was busy or slow): they heal without a fix.
TRANSIENT_SUFFIXES = frozenset(
    {
        "TooManyRequests",
        "InternalServerError",
        "Timeout",
        "WebExceptionProtocolError",
        "InternalError",
    }
)


def _slim(inputs: Inputs) -> Inputs:
    # The event columns the spec declares (reports.REPORTS): one list for the read and the slim.
    from reports import REPORTS

    declared = (REPORTS["estimate"].columns or {}).get("events", ())
    return inputs.replace(events=slim(inputs.events, *declared))


def not_before(at: pd.Timestamp | None, now: pd.Timestamp | None, interval_s: float) -> Any:
    """Return ``at`` moved on by whole schedule intervals until it is not before ``now``.

    A schedule repeats: an expected run that is already past means the next one.
    """
    if at is None or now is None or at >= now:
        return at
    steps = math.ceil((now - at).total_seconds() / interval_s) if interval_s > 0 else 0
    moved = at + pd.Timedelta(seconds=interval_s * steps)
    return moved if moved >= now else now


@dataclass(frozen=True)
class EventFacts:
    """What the estimate reads of the selected events: their (job, cycle) pairs, the latest
    event time and how many source objects they name."""

    pairs: pd.DataFrame  # job_id, cycle_id: each pair with a cycle id, once
    latest_at: pd.Timestamp | None
    objects: int | None  # None: not counted (asked without ``objects``)


def event_facts(events: pd.DataFrame) -> EventFacts:
    """Return the facts of (already selected) ``events``."""
    pairs = events.loc[events["cycle_id"].notna(), ["job_id", "cycle_id"]].drop_duplicates()
    return EventFacts(pairs, reference_now(None, events), int(object_key(events).nunique()))


# event_facts() by DuckDB where the selected events lie.
_FACTS_SQL = """
WITH ev AS (SELECT job_id, cycle_id, activity_at, {key} AS _key FROM events WHERE {where})
SELECT DISTINCT 'pair' AS part, job_id, cycle_id, NULL AS latest_at, NULL AS objects
FROM ev WHERE cycle_id IS NOT NULL
UNION ALL
SELECT 'all', NULL, NULL, max(activity_at), count(DISTINCT _key) FROM ev
"""


def event_facts_of(inputs: Inputs, filters: Filters, objects: bool = True) -> EventFacts:
    """Return :func:`event_facts` of the events ``filters`` select, counted where they lie.

    ``objects=False``: the distinct source objects are not counted (``objects`` is None), the
    costly part over a million events, needed only without scope data.
    """
    from reports import sql
    from reports.query import OBJECT_KEY

    key = OBJECT_KEY if objects else "NULL"
    rows = sql.over(inputs, _FACTS_SQL.format(key=key, where=sql.filter_sql(filters)), ["events"])
    total = rows.loc[rows["part"] == "all"].iloc[0]
    latest = total["latest_at"]
    pairs = rows.loc[rows["part"] == "pair", ["job_id", "cycle_id"]].reset_index(drop=True)
    return EventFacts(
        pairs,
        None if pd.isna(latest) else pd.Timestamp(latest),
        int(total["objects"]) if objects else None,
    )


def store_facts(inputs: Inputs, filters: Filters) -> tuple[EventFacts, tuple[int, str]] | None:
    """Return what an unfiltered estimate reads of the whole store, from the model's facts:
    (:class:`EventFacts`, :func:`objects_in_scope`'s answer); None when ``filters`` select.

    Every (job, cycle) pair is one of the model's cycles, so all of them are the pairs.
    """
    if filters != Filters():
        return None
    model = model_of(inputs)
    row = model.facts.iloc[0]
    latest = row["latest_at"]
    pairs = model.columns("cycles", ["job_id", "cycle_id"])
    objects = int(row["objects"])
    facts = EventFacts(pairs, None if pd.isna(latest) else pd.Timestamp(latest), objects)
    if int(row["assignments"]) == 0:
        return facts, (objects, "events")
    return facts, (int(row["users_in_scope"]) + int(row["groups_in_scope"]), "scope")


def objects_in_scope(inputs: Inputs, facts: EventFacts | None = None) -> tuple[int, str]:
    """Return the objects in scope and where the count came from (``scope`` or ``events``).

    In-scope users plus groups assigned with a role other than Default Access; with no scope
    data at all, the distinct source objects seen in events stand in.
    """
    if inputs.assignments.empty:
        seen = (
            facts.objects
            if facts is not None and facts.objects is not None
            else int(object_key(inputs.events).nunique())
        )
        return seen, "events"
    scope = scope_table(inputs.assignments, inputs.group_members)
    return int(scope["in_scope"].sum()) + len(in_scope_groups(inputs.assignments)), "scope"


def _kept_in_scope(inputs: Inputs, filters: Filters) -> tuple[int, str] | None:
    """Return :func:`objects_in_scope` from the model's objects (their ``in_scope``: the same
    scope rule, coded once) and the assignments counted where they lie, without reading scope
    data as frames; None when the model's objects are not the selection's (an app filter cuts
    scope), there is no scope data, or a user row has no id (which the model leaves out)."""
    from reports import sql
    from reports.model import SCOPE_REASONS
    from reports.model_sql import objects_sql

    if filters.service_principal_ids:
        return None
    groups_ok = dict(objects_sql(SCOPE_REASONS)[0])["grp_ok"]
    user = "(principal_type IS NULL OR principal_type = 'user')"
    member = "(member_type IS NULL OR member_type = 'user')"
    counts = sql.over_arrow(
        inputs,
        f"SELECT (SELECT count(*) FROM assignments) AS n, "  # noqa: S608 (constants)
        f"(SELECT count(*) FROM ({groups_ok})) AS groups, "
        f"(SELECT count(*) FROM assignments WHERE principal_id IS NULL AND {user}) "
        f"+ (SELECT count(*) FROM group_members WHERE member_id IS NULL AND {member}) AS no_id",
        ["assignments", "group_members"],
    ).to_pylist()[0]
    if counts["n"] == 0 or counts["no_id"]:
        return None
    objects = model_of(inputs).columns("objects", ["coverage", "in_scope"])
    users = int((objects["coverage"].astype(bool) & objects["in_scope"].astype(bool)).sum())
    return users + int(counts["groups"]), "scope"


# objects_in_scope() by DuckDB where the scope data lies, with the model's scope rule
# (reports.model_sql.in_scope_counts_sql). With an app filter, only the members of that app's
# assigned groups count (Filters.apply_inputs).


def _kept_app_scope(inputs: Inputs, apps: tuple[str, ...]) -> pd.Series | None:
    """Return in_scope_counts_sql's row for one app from the model's app_scope part, or None
    (not one app; the model does not keep it; scope data read as frames, which may be narrowed).
    """
    if len(apps) != 1:
        return None
    model = model_of(inputs)
    if not model.describes(inputs, ("assignments", "group_members")):
        return None
    kept = model.part("app_scope")
    mine = kept.loc[(kept["service_principal_id"] == apps[0]).fillna(False).to_numpy(bool)]
    return None if mine.empty else mine.iloc[0]


def objects_in_scope_of(
    inputs: Inputs, filters: Filters, facts: EventFacts | None = None
) -> tuple[int, str]:
    """Return :func:`objects_in_scope` of the scope data ``filters`` select, counted where it
    lies (a million memberships never become a frame); without scope data, ``facts.objects``
    (the distinct source objects of the selected events, counted then only)."""
    from reports import sql
    from reports.model_sql import APP_MEMBERS, in_scope_counts_sql

    kept = _kept_in_scope(inputs, filters)  # unfiltered, the model holds each user's answer
    if kept is not None:
        return kept
    apps = filters.service_principal_ids
    got = _kept_app_scope(inputs, apps)
    if got is None:
        assigned = sql.filter_sql(Filters(service_principal_ids=apps), None)
        query = in_scope_counts_sql(assigned, APP_MEMBERS if apps else "TRUE", "_row")
        got = sql.over(inputs, query, ["assignments", "group_members"]).iloc[0]
    if int(got["assignments"]) == 0:
        if facts is None or facts.objects is None:
            facts = event_facts_of(inputs, filters)
        return int(facts.objects or 0), "events"
    return int(got["users"]) + int(got["groups"]), "scope"


def cycle_rates(cycles: pd.DataFrame, min_events: int = MIN_EVENTS) -> pd.Series:
    """Return objects per minute of the cycles long and busy enough to measure, by cycle id."""
    ok = (cycles["events"] >= min_events) & (cycles["duration_s"] > 0)
    measured = cycles.loc[ok.fillna(False).astype(bool)]
    return measured.set_index("cycle_id")["objects_per_min"].astype(float)


def _ts_or_none(value: Any) -> pd.Timestamp | None:
    return None if value is None or pd.isna(value) else pd.Timestamp(value)


def _running_cycles(
    cycles: pd.DataFrame, jobs: pd.DataFrame, now: pd.Timestamp, idle_s: float
) -> pd.DataFrame:
    """Return each job's latest cycle when it still looks running at ``now``."""
    latest = cycles.sort_values("started_at", kind="stable").drop_duplicates("job_id", keep="last")
    latest = latest.loc[latest["ended_at"] <= now]
    recent = (now - latest["ended_at"]).dt.total_seconds() <= idle_s
    if jobs.empty:
        return latest.loc[recent]
    snap = jobs.set_index("job_id")
    began = lookup(snap["last_execution_began"], latest["job_id"])
    ended = lookup(snap["last_execution_ended"], latest["job_id"])
    captured = lookup(snap["captured_at"], latest["job_id"])
    done = (ended.notna() & (ended >= latest["ended_at"]) & (ended >= began.fillna(ended))).astype(
        bool
    )
    says_running = (
        ((captured >= latest["ended_at"]) & began.notna() & (ended.isna() | (ended < began)))
        .fillna(False)
        .astype(bool)
    )
    return latest.loc[(recent & ~done) | says_running]


def estimate(
    inputs: Inputs,
    now: pd.Timestamp | None,
    min_events: int = MIN_EVENTS,
    running_idle_s: float = RUNNING_IDLE_S,
    facts: EventFacts | None = None,
    in_scope: tuple[int, str] | None = None,
) -> dict[str, Any]:
    """Return the DESIGN estimate object for (already filtered) ``inputs``.

    ``facts``: what it reads of the selected events, when the caller counted them where they
    lie (else they come from ``inputs.events``); ``in_scope``: :func:`objects_in_scope`, when
    the caller counted it where the scope data lies (:func:`objects_in_scope_of`).
    """
    n, basis = in_scope if in_scope is not None else objects_in_scope(inputs, facts)
    # The model's cycles (from all of their events) that the selection touches.
    pairs = facts.pairs if facts is not None else inputs.events
    cycles = selected_cycles(model_of(inputs).cycles, pairs)
    rates = cycle_rates(cycles, min_events)
    rates = rates[rates > 0]
    minutes = n / rates if n else rates * 0
    p50_rate = float(rates.median()) if len(rates) else None
    result: dict[str, Any] = {
        "objects_in_scope": n,
        "objects_in_scope_basis": basis,
        "docs_min_minutes": round(DOCS_MIN_MINUTES_PER_OBJECT * n, 6),
        "docs_max_minutes": round(DOCS_MAX_MINUTES_PER_OBJECT * n, 6),
        "observed_objects_per_min": p50_rate,
        "cycles_observed": len(rates),
        "estimate_minutes_p50": float(minutes.quantile(0.5)) if len(rates) else None,
        "estimate_minutes_p90": float(minutes.quantile(0.9)) if len(rates) else None,
        "current_cycle": None,
        "next_incremental_at": None,
    }
    if now is None:
        now = facts.latest_at if facts is not None else reference_now(None, inputs.events)
    if cycles.empty or now is None:
        return result
    jobs = latest_jobs(inputs.sync_jobs)
    cycles = cycles.assign(job_id=cycles["job_id"].fillna(""))
    running = _running_cycles(cycles, jobs, now, running_idle_s)
    eta: pd.Timestamp | None = None
    if not running.empty:
        cur = running.sort_values("started_at", kind="stable").iloc[-1]
        processed = int(cur["objects"])
        full = cur["kind"] in ("initial", "unknown")
        remaining = max(n - processed, 0) if full else None
        own = cur["objects_per_min"] if cur["events"] >= min_events else None
        rate = float(own) if own is not None and pd.notna(own) and own > 0 else p50_rate
        if remaining is not None and rate:
            eta = now + pd.Timedelta(minutes=remaining / rate)
        result["current_cycle"] = {
            "cycle_id": cur["cycle_id"],
            "job_id": cur["job_id"] or None,
            "kind": cur["kind"],
            "started_at": cur["started_at"],
            "processed": processed,
            "remaining": remaining,
            "objects_per_min": rate,
            "eta": eta,
        }
    last = cycles.sort_values("ended_at", kind="stable").iloc[-1]
    interval_s = DEFAULT_INTERVAL_S
    if not jobs.empty and last["job_id"] in set(jobs["job_id"]):
        configured = jobs.set_index("job_id").loc[last["job_id"], "schedule_interval_s"]
        if pd.notna(configured) and configured > 0:
            interval_s = int(configured)
    base = eta if eta is not None else last["ended_at"]
    result["next_incremental_at"] = not_before(
        pd.Timestamp(base) + pd.Timedelta(seconds=interval_s), now, interval_s
    )
    result["interval_s"] = interval_s
    inc = cycles.loc[cycles["kind"] == "incremental", "duration_s"]
    result["incremental_minutes_p50"] = float(inc.median() / 60) if len(inc) else None
    return result


def _fix_of(inputs: Inputs, principal_id: Any) -> dict[str, Any]:
    """Return the last failure's code, the documented or recommended fix and its owner."""
    ev = inputs.events
    failed = ev.loc[((ev["source_id"] == principal_id) & (ev["status"] == "failure")).fillna(False)]
    if failed.empty:
        return {}
    last = failed.sort_values("activity_at", kind="stable").iloc[[-1]]
    code = last["error_code"].astype("str")
    scim = event_scim_errors(last, inputs.scim_requests, model_of(inputs))
    action = last["recommended_action"] if "recommended_action" in last.columns else None
    fix = documented_action(code) if action is None else action.fillna(documented_action(code))
    return {
        "last_error_code": _none(code.iloc[0]),
        "transient": bool(code_suffix(code).isin(TRANSIENT_SUFFIXES).fillna(False).iloc[0]),
        "fix": _none(fix.iloc[0]),
        "fix_owner": owners(code, last["error_category"].astype("str"), scim["scim_type"]).iloc[0],
        "wiki_scim_type": _none(scim["scim_type"].iloc[0]),
    }


def when_user(
    inputs: Inputs,
    user: str,
    now: pd.Timestamp | None = None,
    filters: Filters | None = None,
) -> dict[str, Any]:
    """Return when ``user`` (id, UPN or name) will be provisioned, and why that answer.

    DESIGN "one-user answers": ``expected_by`` is never before ``now``, and is null for a user
    who will not succeed without a fix (out of scope, excluded by a scoping filter, or a last
    failure Entra does not heal by retrying); ``fix`` and ``fix_owner`` then name the fix. An
    already provisioned user has ``provisioned_at`` (its first success) instead.
    """
    filters = filters or Filters()
    # No filter selects nothing away: the tables are not cut (nor read: scope comes from the
    # model's facts below).
    sel = _slim(inputs) if filters == Filters() else filters.apply_inputs(_slim(inputs))
    cov = coverage_rows(inputs, filters)
    wanted = user.strip().lower()
    hit = (
        (
            (cov["principal_id"] == user.strip())
            | (casefold(cov["upn"]) == wanted)
            | (casefold(cov["name"]) == wanted)
        )
        .fillna(False)
        .astype(bool)
    )
    answer: dict[str, Any] = {"user": user, "found": bool(hit.any())}
    if not hit.any():
        answer["expected_by"] = None
        answer["reason"] = "not found in assignments, group members, events or the wiki"
        return answer
    row = cov.loc[hit].iloc[0]
    verdict = row["verdict"]
    answer.update(
        {
            "principal_id": _none(row["principal_id"]),
            "upn": _none(row["upn"]),
            "in_scope": bool(row["in_scope"]),
            "scope_via": row["scope_via"],
            "verdict": verdict,
            "last_status": _none(row["last_status"]),
        }
    )
    # Unfiltered, the model's facts stand for every event and the scope data (one user's
    # question then reads only that user's rows).
    known = store_facts(inputs, filters)
    if known is None:
        est = estimate(sel, now)
        ref = reference_now(now, sel.events)
    else:
        est = estimate(sel, now, facts=known[0], in_scope=known[1])
        ref = now if now is not None else known[0].latest_at
    interval_s = float(est.get("interval_s") or DEFAULT_INTERVAL_S)
    nxt = est["next_incremental_at"]
    cur = est["current_cycle"]
    typical = est.get("incremental_minutes_p50")
    after_next = (
        nxt + pd.Timedelta(minutes=typical) if nxt is not None and typical is not None else nxt
    )
    excluded_by = _none(row.get("excluded_by"))
    if verdict == "provisioned":
        ev = sel.events
        done = ev.loc[(ev["source_id"] == row["principal_id"]) & (ev["status"] == "success")]
        answer["expected_by"] = None
        answer["provisioned_at"] = _ts_or_none(done["activity_at"].min()) if len(done) else None
        answer["reason"] = "already provisioned and active in the wiki"
    elif not row["in_scope"]:
        answer["expected_by"] = None
        answer["reason"] = {
            "nested_group": "never: reached only through a nested group, which Entra does not "
            "provision; assign the user or the inner group directly",
            "default_access": "never: assigned with Default Access, which Entra does not "
            "provision; assign a real app role",
        }.get(row["scope_via"], "never: not assigned to the app, directly or by a group")
    elif excluded_by is not None and row["last_status"] == "skipped":
        answer["expected_by"] = None
        answer["excluded_by"] = excluded_by
        answer["fix"] = (
            f"change the user's attributes so they pass the scoping filter {excluded_by!r}, "
            "or change the filter"
        )
        answer["fix_owner"] = "identity_admin"
        answer["reason"] = f"not until fixed: excluded by scoping filter {excluded_by}"
    elif verdict == "failed":
        fix = _fix_of(sel, row["principal_id"])
        code = fix.get("last_error_code") or "no error code"
        answer.update({k: v for k, v in fix.items() if k != "transient"})
        if fix.get("transient"):
            answer["expected_by"] = not_before(after_next, ref, interval_s)
            answer["reason"] = (
                f"last attempt failed ({code}), which Entra retries on its own; expected by the "
                "end of the next cycle"
            )
        else:
            answer["expected_by"] = None
            answer["reason"] = (
                f"not until fixed: last attempt failed ({code}); "
                f"fix ({fix.get('fix_owner', 'unknown')}): {fix.get('fix') or 'see the failure'}"
            )
    elif cur is not None and cur.get("eta") is not None and cur["kind"] != "incremental":
        answer["expected_by"] = not_before(cur["eta"], ref, interval_s)
        answer["reason"] = "in scope; the running initial cycle should reach it by its ETA"
    else:
        answer["expected_by"] = not_before(after_next, ref, interval_s)
        answer["reason"] = "in scope; expected by the end of the next incremental cycle"
    return answer


def scale_estimate(estimate: dict[str, Any], objects: int) -> dict[str, Any]:
    """Return the estimate's durations for ``objects`` objects instead of its own scope size.

    Every duration in the estimate is linear in the object count (documented bounds are minutes
    per object; the observed ones are objects ÷ per-cycle rates), so scaling is exact when the
    estimate had objects; from zero objects the median observed rate stands in.
    """
    base = int(estimate.get("objects_in_scope") or 0)
    out = dict(estimate)
    out["objects_in_scope"] = objects
    if base == objects:
        return out
    for key in (
        "docs_min_minutes",
        "docs_max_minutes",
        "estimate_minutes_p50",
        "estimate_minutes_p90",
    ):
        value = estimate.get(key)
        if value is None:
            continue
        if base:
            out[key] = float(value) * objects / base
        elif key.startswith("docs_"):
            per_object = (
                DOCS_MIN_MINUTES_PER_OBJECT
                if key == "docs_min_minutes"
                else DOCS_MAX_MINUTES_PER_OBJECT
            )
            out[key] = per_object * objects
    rate = estimate.get("observed_objects_per_min")
    if not base and rate:
        out["estimate_minutes_p50"] = objects / float(rate)
        out["estimate_minutes_p90"] = None
    return out


def cycle_progress(current_cycle: dict[str, Any] | None) -> dict[str, Any] | None:
    """Return a running cycle's ``processed``, ``remaining``, ``total`` and ``fraction`` done.

    ``total`` and ``fraction`` are None when the cycle has no known remainder (incremental).
    """
    if not current_cycle:
        return None
    processed = int(current_cycle.get("processed") or 0)
    remaining = current_cycle.get("remaining")
    if remaining is None:
        return {"processed": processed, "remaining": None, "total": None, "fraction": None}
    total = processed + int(remaining)
    return {
        "processed": processed,
        "remaining": int(remaining),
        "total": total,
        "fraction": processed / total if total else 0.0,
    }


def _none(value: Any) -> Any:
    return (
        None if value is None or (not isinstance(value, (list, dict)) and pd.isna(value)) else value
    )


def build(
    inputs: Inputs,
    filters: Filters,
    *,
    include_noise: bool = True,
    now: pd.Timestamp | None = None,
    user: str | None = None,
    min_events: int = MIN_EVENTS,
    **params: Any,
) -> ReportResult:
    """Return the estimate object; with ``user``, also ``when_user`` for that user."""
    # The wiki's state and requests answer when_user only: the estimate reads neither.
    # The events are counted where they lie (event_facts_of), never read as a frame.
    # Objects in scope are counted where the scope data lies (never read as frames either).
    facts = event_facts_of(inputs, filters)
    in_scope = objects_in_scope_of(inputs, filters, facts)
    unread = {
        t: empty_frame(t)
        for t in ("events", "scim_resources", "scim_requests", "assignments", "group_members")
    }
    sel = filters.apply_inputs(inputs.replace(**unread))
    data = estimate(sel, now, min_events=min_events, facts=facts, in_scope=in_scope)
    if user:
        data["when_user"] = when_user(inputs, user, now, filters)
    return ReportResult(data=data)
