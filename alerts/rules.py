"""The alert rules: each reads registered reports and returns what is wrong now (findings).

A rule never reads a canonical table itself: it asks :func:`reports.run_report` for a report by
name (cycles, quarantine-risk, job-status, coverage, users, scim-traffic, access-time), so the
numbers an alert quotes are the ones the dashboard and ``provlens report`` show. Thresholds come
from the config's ``[rules.<name>]`` (defaults in :data:`alerts.config.DEFAULTS`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urljoin

import pandas as pd

from alerts.config import Config
from reports import REPORTS, Filters, Inputs, ReportResult, run_report
from reports.export import jsonable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Finding:
    """A rule's verdict that ``subject`` is in a bad state now."""

    rule: str
    subject: str
    severity: str
    summary: str
    detail: dict[str, Any]
    link: str

    @property
    def alert_id(self) -> str:
        """Return ``<rule>:<subject>``, the id every firing of this rule about it shares."""
        return alert_id(self.rule, self.subject)

    def detail_json(self) -> str:
        """Return the detail as JSON text (timestamps ISO Z)."""
        return json.dumps(jsonable(self.detail), sort_keys=True)


def alert_id(rule: str, subject: str) -> str:
    """Return the id of alerts of ``rule`` about ``subject``."""
    return f"{rule}:{subject}"


def dashboard_link(base: str, page: str, **params: str) -> str:
    """Return a deep link into the dashboard: ``<base>/<page>?<params>`` (DESIGN's links)."""
    url = urljoin(base if base.endswith("/") else base + "/", page)
    query = urlencode({k: v for k, v in params.items() if v})
    return f"{url}?{query}" if query else url


@dataclass
class RuleContext:
    """What a rule reads: the inputs, the reference time, the config; report results cached."""

    inputs: Inputs
    now: pd.Timestamp
    config: Config
    _cache: dict[Any, ReportResult] = field(default_factory=dict)

    def report(self, name: str, filters: Filters | None = None, **params: Any) -> ReportResult:
        """Return registered report ``name`` on the inputs (noise included: alerts see all)."""
        key = (name, filters, tuple(sorted(params.items())))
        if key not in self._cache:
            self._cache[key] = run_report(
                name, self.inputs, filters, include_noise=True, now=self.now, **params
            )
        return self._cache[key]

    def link(self, page: str, **params: str) -> str:
        """Return a dashboard deep link."""
        return dashboard_link(self.config.dashboard_url, page, **params)

    def severity(self, rule: str) -> str:
        """Return the configured severity of ``rule``."""
        return str(self.config.rule(rule)["severity"])


def _text(value: Any, default: str = "") -> str:
    return (
        default if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)
    )


def _when(value: Any) -> str:
    if value is None or pd.isna(value):
        return "unknown"
    return pd.Timestamp(value).strftime("%Y-%m-%d %H:%M UTC")


def _duration(seconds: float) -> str:
    """Return a duration for people: ``45 s``, ``12 min``, ``3.5 h``."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _job_title(ctx: RuleContext, job_id: Any, service_principal_id: Any) -> str:
    """Return how a summary names a job: its app's display name first, then the job id."""
    apps = (ctx.report("filter-options").data or {}).get("apps") or {}
    sp = _text(service_principal_id)
    name = apps.get(sp)
    # filter-options names an app by its id when the logs never gave its display name.
    return f"{name} (job {job_id})" if name and name != sp else f"Job {job_id}"


def _job_link(ctx: RuleContext, job_id: str, cycle_id: Any = None) -> str:
    if cycle_id is not None and not pd.isna(cycle_id) and str(cycle_id):
        return ctx.link("events", cycle=str(cycle_id))
    return ctx.link("cycles", job=job_id)


# --- the rules -------------------------------------------------------------------------------


def failure_spike(ctx: RuleContext) -> list[Finding]:
    """Jobs whose failures in the last window are well above their usual rate (and many)."""
    cfg = ctx.config.rule("failure_spike")
    window = pd.Timedelta(minutes=cfg["window_minutes"])
    start = ctx.now - window
    recent = ctx.report("cycles", Filters(since=start, until=ctx.now)).frame
    if recent is None or recent.empty:
        return []
    baseline_start = start - pd.Timedelta(days=cfg["baseline_days"])
    before = ctx.report("cycles", Filters(since=baseline_start, until=start)).frame
    out: list[Finding] = []
    recent = recent.dropna(subset=["job_id"])
    for job_id, rows in recent.groupby("job_id", sort=True):
        failures = int(rows["failure"].fillna(0).sum())
        history = (
            before.loc[before["job_id"] == job_id]
            if before is not None and not before.empty
            else None
        )
        usual: float | None = None
        if history is not None and not history.empty:
            span = start - pd.Timestamp(history["started_at"].min())
            windows = span / window
            if windows >= 1:
                usual = float(history["failure"].fillna(0).sum()) / windows
        needed = max(float(cfg["min_failures"]), cfg["factor"] * (usual or 0.0))
        if failures < needed:
            continue
        last = rows.sort_values("started_at", kind="stable").iloc[-1]
        usual_text = "no earlier history" if usual is None else f"usually {usual:.1f}"
        out.append(
            Finding(
                "failure_spike",
                str(job_id),
                ctx.severity("failure_spike"),
                f"{_job_title(ctx, job_id, last['service_principal_id'])}: "
                f"{failures} failures in the last {cfg['window_minutes']} min "
                f"({usual_text} per {cfg['window_minutes']} min)",
                {
                    "job_id": job_id,
                    "service_principal_id": last["service_principal_id"],
                    "failures": failures,
                    "usual_per_window": usual,
                    "window_minutes": cfg["window_minutes"],
                    "factor": cfg["factor"],
                    "min_failures": cfg["min_failures"],
                    "last_cycle_id": last["cycle_id"],
                },
                _job_link(ctx, str(job_id), last["cycle_id"]),
            )
        )
    return out


def _risk_rows(ctx: RuleContext) -> pd.DataFrame:
    frame = ctx.report("quarantine-risk").frame
    if frame is None:
        return pd.DataFrame(columns=["job_id", "risk"])
    return frame.dropna(subset=["job_id"])


def quarantine(ctx: RuleContext) -> list[Finding]:
    """Jobs whose latest snapshot says they are in quarantine."""
    rows = _risk_rows(ctx)
    out = []
    for _, r in rows.loc[(rows["risk"] == "quarantined").fillna(False).astype(bool)].iterrows():
        reason = _text(r["quarantine_reason"], "no reason given")
        out.append(
            Finding(
                "quarantine",
                str(r["job_id"]),
                ctx.severity("quarantine"),
                f"{_job_title(ctx, r['job_id'], r['service_principal_id'])} "
                f"is in quarantine ({reason}) since "
                f"{_when(r['quarantine_began'])}; next attempt "
                f"{_when(r['quarantine_next_attempt'])}",
                {
                    "job_id": r["job_id"],
                    "service_principal_id": r["service_principal_id"],
                    "quarantine_reason": r["quarantine_reason"],
                    "quarantine_began": r["quarantine_began"],
                    "quarantine_next_attempt": r["quarantine_next_attempt"],
                    "quarantine_series_count": r["quarantine_series_count"],
                    "failures": r["failures"],
                },
                _job_link(ctx, str(r["job_id"])),
            )
        )
    return out


def quarantine_risk(ctx: RuleContext) -> list[Finding]:
    """Jobs whose outstanding failures approach or pass Entra's escrow thresholds."""
    cfg = ctx.config.rule("quarantine_risk")
    rows = _risk_rows(ctx)
    hit = rows.loc[rows["risk"].isin(cfg["levels"]).fillna(False).astype(bool)]
    out = []
    for _, r in hit.iterrows():
        over = r["risk"] == "over_threshold"
        rate = r["failure_rate"]
        rate_text = "unknown" if pd.isna(rate) else f"{float(rate):.0%}"
        out.append(
            Finding(
                "quarantine_risk",
                str(r["job_id"]),
                "critical" if over else ctx.severity("quarantine_risk"),
                f"{_job_title(ctx, r['job_id'], r['service_principal_id'])}: "
                f"{int(r['failures'])} outstanding failures, {rate_text} "
                f"failing: {'over' if over else 'approaching'} the quarantine thresholds",
                {
                    "job_id": r["job_id"],
                    "service_principal_id": r["service_principal_id"],
                    "risk": r["risk"],
                    "failures": r["failures"],
                    "non_reference_failures": r["non_reference_failures"],
                    "failure_rate": rate,
                },
                _job_link(ctx, str(r["job_id"])),
            )
        )
    return out


def cycle_slow(ctx: RuleContext) -> list[Finding]:
    """Jobs whose latest incremental cycle took far longer than their usual (p90) one."""
    cfg = ctx.config.rule("cycle_slow")
    since = ctx.now - pd.Timedelta(days=cfg["history_days"])
    cycles = ctx.report("cycles", Filters(since=since, until=ctx.now)).frame
    if cycles is None or cycles.empty:
        return []
    inc = cycles.loc[(cycles["kind"] == "incremental").fillna(False).astype(bool)]
    inc = inc.dropna(subset=["job_id", "duration_s"]).sort_values("started_at", kind="stable")
    out = []
    for job_id, rows in inc.groupby("job_id", sort=True):
        latest, history = rows.iloc[-1], rows.iloc[:-1]
        if len(history) < cfg["min_history"]:
            continue
        p90 = float(history["duration_s"].astype("float64").quantile(0.9))
        took = float(latest["duration_s"])
        if took <= max(cfg["factor"] * p90, cfg["min_duration_s"]):
            continue
        out.append(
            Finding(
                "cycle_slow",
                str(job_id),
                ctx.severity("cycle_slow"),
                f"{_job_title(ctx, job_id, latest['service_principal_id'])}: "
                f"cycle {latest['cycle_id']} took {_duration(took)}, "
                f"over {cfg['factor']:g}x its usual p90 of {_duration(p90)}",
                {
                    "job_id": job_id,
                    "service_principal_id": latest["service_principal_id"],
                    "cycle_id": latest["cycle_id"],
                    "started_at": latest["started_at"],
                    "duration_s": took,
                    "p90_duration_s": p90,
                    "cycles_compared": len(history),
                    "factor": cfg["factor"],
                },
                _job_link(ctx, str(job_id), latest["cycle_id"]),
            )
        )
    return out


def stalled(ctx: RuleContext) -> list[Finding]:
    """Active, scheduled jobs with no run for several schedule intervals."""
    cfg = ctx.config.rule("stalled")
    jobs = ctx.report("job-status").frame
    if jobs is None or jobs.empty:
        return []
    active = (jobs["status_code"].str.casefold() == "active").fillna(False).astype(bool)
    scheduled = jobs["schedule_state"].isna() | (jobs["schedule_state"].str.casefold() == "active")
    rows = jobs.loc[
        active
        & scheduled.fillna(False).astype(bool)
        & jobs["schedule_interval_s"].notna()
        & jobs["last_run_at"].notna()
    ]
    out = []
    for _, r in rows.iterrows():
        interval = pd.Timedelta(seconds=int(r["schedule_interval_s"]))
        if interval <= pd.Timedelta(0):
            continue
        quiet = ctx.now - pd.Timestamp(r["last_run_at"])
        if quiet < cfg["intervals"] * interval:
            continue
        out.append(
            Finding(
                "stalled",
                str(r["job_id"]),
                ctx.severity("stalled"),
                f"{_job_title(ctx, r['job_id'], r['service_principal_id'])} "
                f"is active but has not run since {_when(r['last_run_at'])} "
                f"({quiet / interval:.1f} schedule intervals of "
                f"{_duration(interval.total_seconds())})",
                {
                    "job_id": r["job_id"],
                    "service_principal_id": r["service_principal_id"],
                    "last_run_at": r["last_run_at"],
                    "schedule_interval_s": r["schedule_interval_s"],
                    "intervals_missed": quiet / interval,
                    "last_cycle_id": r["last_cycle_id"],
                },
                _job_link(ctx, str(r["job_id"]), r["last_cycle_id"]),
            )
        )
    return out


def deprovision_missed(ctx: RuleContext) -> list[Finding]:
    """Users out of scope in Entra, still active in the wiki past the grace period."""
    cfg = ctx.config.rule("deprovision_missed")
    coverage = ctx.report("coverage").frame
    if coverage is None or coverage.empty:
        return []
    rows = coverage.loc[(coverage["verdict"] == "should_be_disabled").fillna(False).astype(bool)]
    if rows.empty:
        return []
    users = ctx.report("users").frame
    last_at = (
        users.dropna(subset=["source_id"]).drop_duplicates("source_id").set_index("source_id")
        if users is not None
        else pd.DataFrame()
    )
    grace = pd.Timedelta(hours=cfg["grace_hours"])
    out = []
    for _, r in rows.iterrows():
        pid = str(r["principal_id"])
        last = last_at["last_at"].get(pid) if "last_at" in last_at else None
        if last is not None and not pd.isna(last) and ctx.now - pd.Timestamp(last) < grace:
            continue  # Entra acted on this user recently: give it the grace period
        who = _text(r["upn"]) or _text(r["name"]) or pid
        out.append(
            Finding(
                "deprovision_missed",
                pid,
                ctx.severity("deprovision_missed"),
                f"{who} is out of scope in Entra but still active in the wiki "
                f"(Entra's last event about them: {_when(last)})",
                {
                    "principal_id": pid,
                    "upn": r["upn"],
                    "scope_via": r["scope_via"],
                    "wiki_state": r["wiki_state"],
                    "last_event_at": last,
                    "grace_hours": cfg["grace_hours"],
                },
                ctx.link("users", user=pid),
            )
        )
    return out


WIKI_SUBJECT = "wiki"


def wiki_errors(ctx: RuleContext) -> list[Finding]:
    """The wiki answering too many SCIM requests with 5xx or 429 in the last window."""
    cfg = ctx.config.rule("wiki_errors")
    since = ctx.now - pd.Timedelta(minutes=cfg["window_minutes"])
    frame = ctx.report("scim-traffic", Filters(since=since, until=ctx.now)).frame
    if frame is None or frame.empty:
        return []
    minutes = frame.loc[(frame["granularity"] == "minute").fillna(False).astype(bool)]
    requests = int(minutes["requests"].fillna(0).sum())
    errors = int(minutes["status_5xx"].fillna(0).sum() + minutes["throttled_429"].fillna(0).sum())
    if requests < cfg["min_requests"] or requests == 0:
        return []
    rate = errors / requests
    if rate < cfg["max_error_rate"]:
        return []
    return [
        Finding(
            "wiki_errors",
            WIKI_SUBJECT,
            ctx.severity("wiki_errors"),
            f"The wiki answered {errors} of {requests} SCIM requests ({rate:.0%}) with 5xx or 429 "
            f"in the last {cfg['window_minutes']} min",
            {
                "requests": requests,
                "errors": errors,
                "status_5xx": int(minutes["status_5xx"].fillna(0).sum()),
                "throttled_429": int(minutes["throttled_429"].fillna(0).sum()),
                "error_rate": rate,
                "max_error_rate": cfg["max_error_rate"],
                "window_minutes": cfg["window_minutes"],
            },
            ctx.link("scim_traffic"),
        )
    ]


ACCESS_REPORT = "access-time"


def access_slo(ctx: RuleContext) -> list[Finding]:
    """Users past the access SLO (still waiting, or waited), one alert per app by default.

    Quiet until the access-time report is registered. ``per_user = true`` raises one alert per
    user instead (subject: the user's object id); per app (subject: the service principal id)
    keeps a group assignment of thousands from raising thousands of alerts.
    """
    cfg = ctx.config.rule("access_slo")
    # include_waiting: a user still waiting past the SLO is the most urgent breach of all
    frame = ctx.report(ACCESS_REPORT, slo_minutes=cfg["minutes"], include_waiting=True).frame
    if frame is None or frame.empty:
        return []
    since = ctx.now - pd.Timedelta(days=cfg["lookback_days"])
    recent = (frame["assigned_at"] >= since).fillna(False).astype(bool)
    breached = frame["breached"].fillna(False).astype(bool)
    rows = frame.loc[recent & breached].sort_values(
        "minutes_to_access", ascending=False, kind="stable"
    )
    if "waiting" not in rows.columns:
        rows = rows.assign(waiting=False)
    rows = rows.assign(waiting=rows["waiting"].fillna(False).astype(bool))
    severity = ctx.severity("access_slo")
    out = []
    if cfg["per_user"]:
        for _, r in rows.drop_duplicates("principal_id").iterrows():
            pid = str(r["principal_id"])
            who = _text(r["upn"]) or pid
            verb = "has been waiting" if r["waiting"] else "waited"
            out.append(
                Finding(
                    "access_slo",
                    pid,
                    severity,
                    f"{who} {verb} {float(r['minutes_to_access']):.0f} min for wiki access "
                    f"(SLO {cfg['minutes']} min; assigned {_when(r['assigned_at'])})",
                    {
                        "principal_id": pid,
                        "upn": r["upn"],
                        "service_principal_id": r["service_principal_id"],
                        "assigned_at": r["assigned_at"],
                        "minutes_to_access": r["minutes_to_access"],
                        "waiting": bool(r["waiting"]),
                        "slo_minutes": cfg["minutes"],
                    },
                    ctx.link("users", user=pid),
                )
            )
        return out
    for sp, group in rows.groupby(rows["service_principal_id"].fillna(""), sort=True):
        users = group.drop_duplicates("principal_id")
        worst = users.iloc[0]
        waiting = int(users["waiting"].sum())
        who = _text(worst["upn"]) or str(worst["principal_id"])
        out.append(
            Finding(
                "access_slo",
                str(sp) or "unknown",
                severity,
                f"{len(users)} users past the {cfg['minutes']} min access SLO in the last "
                f"{cfg['lookback_days']} days ({waiting} still waiting); longest: {who}, "
                f"{float(worst['minutes_to_access']):.0f} min",
                {
                    "service_principal_id": sp or None,
                    "users": len(users),
                    "waiting": waiting,
                    "slo_minutes": cfg["minutes"],
                    "longest": [
                        {
                            "principal_id": r["principal_id"],
                            "upn": r["upn"],
                            "minutes_to_access": r["minutes_to_access"],
                            "waiting": bool(r["waiting"]),
                        }
                        for _, r in users.head(10).iterrows()
                    ],
                },
                ctx.link("users", user=str(worst["principal_id"])),
            )
        )
    return out


RuleFunction = Callable[[RuleContext], list[Finding]]

# name -> (function, the reports it reads)
RULES: dict[str, tuple[RuleFunction, tuple[str, ...]]] = {
    "failure_spike": (failure_spike, ("cycles", "filter-options")),
    "quarantine": (quarantine, ("quarantine-risk", "filter-options")),
    "quarantine_risk": (quarantine_risk, ("quarantine-risk", "filter-options")),
    "cycle_slow": (cycle_slow, ("cycles", "filter-options")),
    "stalled": (stalled, ("job-status", "filter-options")),
    "deprovision_missed": (deprovision_missed, ("coverage", "users")),
    "wiki_errors": (wiki_errors, ("scim-traffic",)),
    "access_slo": (access_slo, (ACCESS_REPORT,)),
}


def available(rule: str) -> bool:
    """Return whether every report ``rule`` reads is registered and importable."""
    for name in RULES[rule][1]:
        spec = REPORTS.get(name)
        if spec is None:
            return False
        try:
            spec.load()
        except (ImportError, AttributeError):
            return False
    return True


def active_rules(config: Config) -> list[str]:
    """Return the rules that run: enabled, and with their reports registered."""
    out = []
    for name in RULES:
        if not config.enabled(name):
            continue
        if not available(name):
            log.info("rule %s is quiet: a report it reads is not registered", name)
            continue
        out.append(name)
    return out


def tables_for(rules: list[str]) -> tuple[str, ...]:
    """Return the canonical tables the reports of ``rules`` read (what to load from a store)."""
    tables: dict[str, None] = {}
    for rule in rules:
        for name in RULES[rule][1]:
            tables.update(dict.fromkeys(REPORTS[name].tables))
    return tuple(tables)


def evaluate(
    inputs: Inputs, config: Config, now: pd.Timestamp, rules: list[str] | None = None
) -> tuple[list[Finding], list[str]]:
    """Return the findings of every active rule and the names of the rules evaluated."""
    names = active_rules(config) if rules is None else rules
    ctx = RuleContext(inputs, now, config)
    findings: list[Finding] = []
    for name in names:
        findings.extend(RULES[name][0](ctx))
    return findings, names
