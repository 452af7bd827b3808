"""Overview: KPIs, job state, events over time by action and status, latest failures."""

from __future__ import annotations

import plotly.express as px
import streamlit as st

from dashboard import data, ui
from dashboard.sidebar import context
from reports import overview

ctx = context()
ui.header("Overview", ctx, "Everything in the selected time range; noise is counted here.")

jobs = data.job_states(str(ctx.store_path), ctx.version, ctx.filters.key(), ctx.filters)
risk = ctx.report("quarantine-risk").frame
# The overview report: success rate without hidden noise, last cycle unchanged by filters.
kpi = ctx.report("overview").data or {}
quarantined = overview.quarantined_jobs(jobs)

cols = st.columns(4)
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

cols = st.columns(4)
with cols[0]:
    if kpi["job_state"] is None:
        ui.kpi("Job state", "—", "No job status ingested (provlens ingest graph / file).")
    else:
        ui.kpi("Job state", kpi["job_state"], f"Latest snapshot of {kpi['jobs']} job(s).")
with cols[1]:
    ui.kpi(
        "Quarantine risk",
        kpi["quarantine_risk"],
        "Outstanding failures against Entra's documented escrow thresholds (from 5,000 "
        "failures: more than 40 % failing, or 40,000 / 60,000 failures); see the table below.",
        note=f"{kpi['jobs_quarantined']} job(s) quarantined now",
    )
with cols[2]:
    started = kpi["last_cycle_started_at"]
    ui.kpi(
        "Last cycle",
        ui.fmt_duration(kpi["last_cycle_duration_s"]),
        "Duration from the cycle's first to its last event.",
        note=None if started is None else f"started {ui.fmt_time(started)}",
    )
with cols[3]:
    ui.kpi("Cycles", f"{kpi['cycles']:,}", "Distinct provisioning cycles.")

if not quarantined.empty:
    st.error("A job is in quarantine — Entra has slowed or stopped provisioning for it.")
    ui.table(quarantined, "quarantined-jobs")

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
