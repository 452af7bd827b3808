"""Overview: a status header per job (like Entra's provisioning page), KPIs, events over time,
and the latest failures grouped by user."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import data, ui, views
from dashboard.sidebar import context

ctx = context()
ui.header("Overview", ctx, "Everything in the selected time range; noise is counted here.")

now = data.now()
tz = st.context.timezone
# Slots in reading order, filled in another: the chart first (its answer is quick, and the
# browser fetches the charting library only once a chart arrives, so it loads while the slower
# answers are computed), then the job status, the KPIs and the latest failures.
status_slot, kpi_slot, chart_slot, failures_slot = (st.container() for _ in range(4))

STATE_BADGE = {
    "Active": ("green", ":material/check_circle:"),
    "Quarantine": ("red", ":material/report:"),
    "Paused": ("orange", ":material/pause_circle:"),
    "NotRun": ("gray", ":material/schedule:"),
}


def _when(value: object) -> str:
    return views.local_and_utc(value, now, tz)


def status_header(job: pd.Series) -> None:
    """Draw one job's status panel: state, cycle + progress, scope, last/next run, links."""
    with st.container(border=True, key=f"job_status_{job.name}"):
        top = st.columns([3, 2])
        with top[0]:
            st.caption("Provisioning job")
            st.text(f"{job['app']}  ·  {job['job_id']}")  # names from the data: plain text
        with top[1]:
            state = str(job["state"]) if pd.notna(job["state"]) else None
            if state in STATE_BADGE:
                # st.badge is Markdown: only the known states (fixed words) go into one.
                color, icon = STATE_BADGE[state]
                st.badge(f"State: {state}", color=color, icon=icon)  # type: ignore[arg-type]
            else:
                st.text(f"State: {state or 'no job status ingested'}")
            if pd.notna(job["schedule"]) and job["schedule"] != "Active":
                st.text(f"Schedule: {job['schedule']}")
        cols = st.columns(4)
        with cols[0]:
            label = "Current cycle" if job["cycle_running"] else "Last cycle"
            st.caption(label)
            if pd.isna(job["cycle_id"]):
                st.text("—")
            else:
                st.text(f"{job['cycle_kind']} · {job['cycle_id']}")
                fraction = float(job["progress"]) if pd.notna(job["progress"]) else None
                done = f"{int(job['processed']):,}" if pd.notna(job["processed"]) else "?"
                total = f"{int(job['total']):,}" if pd.notna(job["total"]) else "?"
                text = (
                    f"{100 * fraction:.0f} % complete · {done} of {total} objects"
                    if fraction is not None
                    else f"running · {done} objects so far"
                )
                st.progress(min(max(fraction or 0.0, 0.0), 1.0), text=text)
        with cols[1]:
            st.caption("In scope to date")
            scope = job["objects_in_scope"]
            entitled = job["count_entitled"]
            st.text(
                (f"{int(scope):,} users and groups" if pd.notna(scope) else "—")
                + (f"\nEntra reports {int(entitled):,} entitled" if pd.notna(entitled) else "")
            )
        with cols[2]:
            st.caption("Last run")
            st.text(_when(job["last_run_at"]))
        with cols[3]:
            st.caption("Next run")
            if pd.notna(job["overdue_min"]):
                late = views.minutes_words(int(job["overdue_min"]))
                st.error(f"Overdue by {late}", icon=":material/alarm:")
                st.text(f"was due {_when(job['next_run_at'])}")
            else:
                st.text(_when(job["next_run_at"]))
        if pd.notna(job["quarantine_began"]):
            st.error(
                "In quarantine since "
                + _when(job["quarantine_began"])
                + ". Reason: "
                + views.md_escape(job["quarantine_reason"] or "not given")
                + ". Next attempt: "
                + _when(job["quarantine_next_attempt"]),
                icon=":material/report:",
            )
        if pd.notna(job["provisioning_url"]):
            st.caption("In the Microsoft Entra admin center (opens a new tab):")
        links = st.columns(4)
        if pd.notna(job["provisioning_url"]):
            with links[0]:
                st.link_button(
                    "Provisioning", job["provisioning_url"], icon=":material/open_in_new:"
                )
            with links[1]:
                st.link_button("Provisioning logs", job["logs_url"], icon=":material/open_in_new:")
            with links[2]:
                st.link_button(
                    "Provision on demand",
                    job["on_demand_url"],
                    icon=":material/open_in_new:",
                )
        if pd.notna(job["cycle_id"]):
            with links[3]:
                st.link_button(
                    "This cycle's events",
                    views.link("events", cycle=job["cycle_id"]),
                    icon=":material/list_alt:",
                )


with chart_slot:
    st.subheader("Events over time")
    opts = st.columns([2, 1])
    with opts[0]:
        by = st.segmented_control(
            "Colour by",
            ["status", "action"],
            default="status",
            key="overview_by",
            label_visibility="collapsed",
        )
    by = by or "status"
    # The slower answers below are computed side by side while this one is drawn.
    ctx.prefetch(
        ("job-header", {}), ("quarantine-risk", {}), ("overview", {}), ("recent-failures", {})
    )
    answer = ctx.report("events-over-time", by=by)
    series = answer.frame
    if series is None or series.empty:
        st.info("No events in the selected range.")
    else:
        peak = float(series["count"].max())
        typical = float(series["count"].median())
        with opts[1]:
            # The initial cycle dwarfs the incremental ones: a log axis keeps both readable.
            log_y = st.toggle(
                "Log scale",
                value=peak > 10 * max(typical, 1),
                key="overview_log",
                help="On by default when one period (usually the initial cycle) is more than ten "
                "times the typical one.",
            )
        chart, spec = views.time_bars(
            series,
            by,
            (answer.data or {}).get("bucket"),
            ui.STATUS_COLORS if by == "status" else ui.ACTION_COLORS,
            log_y,
        )
        ui.vega(chart, spec, "overview_events")

with status_slot:
    status = ctx.report("job-header").frame
    if status is None or status.empty:
        st.info("No provisioning job seen yet (no events with a job id, no job status ingested).")
    else:
        st.caption(
            f"Times in UTC and in your browser's time zone ({tz or 'unknown'}); "
            f"“ago” and “in” are relative to {ui.fmt_time(now)}."
        )
        for _, job in status.iterrows():
            status_header(job)

with kpi_slot:
    risk = ctx.report("quarantine-risk").frame
    # The overview report: success rate without hidden noise, last cycle unchanged by filters.
    kpi = ctx.report("overview").data or {}

    # Two rows of three: a tile is wide enough for its value ("over_threshold" is cut off at six
    # tiles a row on a 1440 px screen).
    cols = [*st.columns(3), *st.columns(3)]
    with cols[0]:
        ui.kpi("Events", f"{kpi['events']:,}", "Provisioning log records.")
    with cols[1]:
        ui.kpi(
            "Success rate",
            ui.fmt_pct(kpi["success_rate"]),
            "Events with status success; hidden noise is left out.",
        )
    with cols[2]:
        ui.kpi("Failures", f"{kpi['failures']:,}", "Events with status failure.")
    with cols[3]:
        ui.kpi("Objects", f"{kpi['source_objects']:,}", "Distinct source users and groups.")
    with cols[4]:
        ui.kpi("Cycles", f"{kpi['cycles']:,}", "Distinct provisioning cycles.")
    with cols[5]:
        ui.kpi(
            "Quarantine risk",
            kpi["quarantine_risk"],
            "Outstanding failures against Entra's documented escrow thresholds (from 5,000 "
            "failures: more than 40 % failing, or 40,000 / 60,000 failures); see the table below.",
            note=f"{kpi['jobs_quarantined']} quarantined",
        )

    if kpi.get("counts_explained"):
        st.caption(str(kpi["counts_explained"]))

    if risk is not None and not risk.empty:
        with st.expander("Jobs: failures against the quarantine thresholds"):
            ui.table(risk, "quarantine-risk")

with failures_slot:
    st.subheader("Latest failures, by user")
    st.caption(
        "One row per user and error code (Entra retries a failed user every cycle). "
        "“user →” opens the user's diagnosis."
    )
    latest = ctx.report("recent-failures").frame
    linked, link_config = ui.with_link(latest, "user →", "users", "user", "source_upn", "source_id")
    ui.table(
        linked,
        "latest-failures",
        empty="No failures in the selected range.",
        column_config={
            "service_principal_name": st.column_config.TextColumn("App"),
            "failures": st.column_config.NumberColumn("Failures", format="%d"),
        }
        | link_config,
    )
