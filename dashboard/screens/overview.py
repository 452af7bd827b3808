"""Overview: KPIs, job state, events over time by action and status, latest failures."""

from __future__ import annotations

import plotly.express as px
import streamlit as st

from dashboard import data, ui, views
from dashboard.sidebar import context
from reports.inputs import latest_jobs

ctx = context()
ui.header("Overview", ctx, "Everything in the selected time range; noise is counted here.")

summary = ctx.report("summary").data or {}
cycles = ctx.report("cycles").frame
failures = sum(int(v) for v in summary.get("failures_by_error_code", {}).values())

cols = st.columns(4)
with cols[0]:
    ui.kpi("Events", f"{summary.get('events', 0):,}", "Provisioning log records.")
with cols[1]:
    ui.kpi("Success rate", ui.fmt_pct(summary.get("success_rate")), "Events with status success.")
with cols[2]:
    ui.kpi("Failures", f"{failures:,}", "Events with status failure.")
with cols[3]:
    ui.kpi("Objects", f"{summary.get('source_objects', 0):,}", "Distinct source users and groups.")

jobs = latest_jobs(ctx.table("sync_jobs")).sort_values("captured_at", ascending=False)
last_cycle = cycles.iloc[-1] if cycles is not None and not cycles.empty else None
cols = st.columns(4)
with cols[0]:
    if jobs.empty:
        ui.kpi("Job state", "—", "No job status ingested (provlens ingest graph / file).")
    else:
        state = str(jobs.iloc[0]["status_code"] or "unknown")
        ui.kpi("Job state", state, f"Latest snapshot of {len(jobs)} job(s).")
with cols[1]:
    quarantined = jobs[jobs["quarantine_began"].notna()] if not jobs.empty else jobs
    risk = ctx.report("quarantine-risk").frame
    ui.kpi(
        "Quarantine risk",
        views.worst_risk(risk),
        "Outstanding failures against Entra's documented escrow thresholds (from 5,000 "
        "failures: more than 40 % failing, or 40,000 / 60,000 failures); see the table below.",
        note=f"{len(quarantined)} job(s) quarantined now",
    )
with cols[2]:
    ui.kpi(
        "Last cycle",
        ui.fmt_duration(None if last_cycle is None else last_cycle["duration_s"]),
        "Duration from the cycle's first to its last event.",
        note=None if last_cycle is None else f"started {ui.fmt_time(last_cycle['started_at'])}",
    )
with cols[3]:
    ui.kpi("Cycles", f"{summary.get('cycles', 0):,}", "Distinct provisioning cycles.")

if not quarantined.empty:
    st.error("A job is in quarantine — Entra has slowed or stopped provisioning for it.")
    ui.table(
        quarantined[
            [
                "job_id",
                "status_code",
                "quarantine_reason",
                "quarantine_began",
                "quarantine_next_attempt",
                "quarantine_series_count",
            ]
        ],
        "quarantined-jobs",
    )

if risk is not None and not risk.empty:
    with st.expander("Jobs: failures against the quarantine thresholds"):
        ui.table(risk, "quarantine-risk")

st.subheader("Events over time")
by = st.segmented_control(
    "Colour by",
    ["status", "action"],
    default="status",
    key="overview_by",
    label_visibility="collapsed",
)
by = by or "status"
series = data.event_counts(
    str(ctx.store_path), ctx.version, ctx.filters.key(), by, None, ctx.filters
)
if series.empty:
    st.info("No events in the selected range.")
else:
    fig = px.bar(
        series,
        x="bucket",
        y="count",
        color=by,
        color_discrete_map=ui.STATUS_COLORS if by == "status" else None,
        labels={"bucket": "Time (UTC)", "count": "Events", by: by.capitalize()},
    )
    fig.update_layout(bargap=0.05)
    ui.chart(fig, "overview_events")

st.subheader("Latest failures")
latest = data.latest_failures(str(ctx.store_path), ctx.version, ctx.filters.key(), 20, ctx.filters)
ui.table(latest, "latest-failures", empty="No failures in the selected range.")
