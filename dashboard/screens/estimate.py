"""Estimate: how long provisioning takes — documented range beside observed throughput, ETA."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from dashboard import data, ui, views
from dashboard.sidebar import context

ctx = context()
ui.header(
    "Estimate",
    ctx,
    "Microsoft documents 0.01 to 0.08 minutes per assigned user, group and group member for a "
    "cycle that processes everything (10 to 80 minutes per 1,000 objects); incremental cycles "
    "repeat about every 40 minutes and only process changes. The observed estimate uses your "
    "own cycles' throughput.",
)

base = ctx.report("estimate").data or {}
observed_scope = int(base.get("objects_in_scope") or 0)

left, right = st.columns(2)
with left:
    scope = st.number_input(
        "Objects in scope (users + assigned groups)",
        min_value=0,
        value=observed_scope,
        step=100,
        key="estimate_scope",
        help="Defaults to what the stored assignments and group members put in scope.",
    )
with right:
    mode = st.radio(
        "Cycle",
        ["initial", "incremental"],
        horizontal=True,
        key="estimate_mode",
        help="Initial: every object in scope is processed. Incremental: only changed objects.",
    )
changed = None
if mode == "incremental":
    changed = st.number_input(
        "Objects changed since the last cycle",
        min_value=0,
        value=min(int(scope), 100),
        step=10,
        key="estimate_changed",
    )

objects = int(changed) if changed is not None else int(scope)
est = ctx.report("estimate-for", objects=objects).data or {}

st.caption(f"Estimating for {int(est.get('objects_in_scope') or 0):,} objects.")
cols = st.columns(4)
with cols[0]:
    ui.kpi(
        "Documented fastest",
        ui.fmt_duration(60 * (est.get("docs_min_minutes") or 0)),
        "0.01 minutes per object.",
    )
with cols[1]:
    p50 = est.get("estimate_minutes_p50")
    ui.kpi(
        "Observed estimate (p50)",
        ui.fmt_duration(None if p50 is None else 60 * p50),
        f"From {est.get('cycles_observed') or 0} measured cycle(s) of this tenant.",
    )
with cols[2]:
    p90 = est.get("estimate_minutes_p90")
    ui.kpi("Observed estimate (p90)", ui.fmt_duration(None if p90 is None else 60 * p90))
with cols[3]:
    ui.kpi(
        "Documented slowest",
        ui.fmt_duration(60 * (est.get("docs_max_minutes") or 0)),
        "0.08 minutes per object.",
    )

rate = est.get("observed_objects_per_min")
if not est.get("cycles_observed") and (
    ctx.filters.since is not None or ctx.filters.until is not None
):
    st.warning(
        "No measured cycle in the selected dates, so there is no observed estimate: widen the "
        "time range in the sidebar (the estimate needs cycles with at least 20 events).",
        icon=":material/date_range:",
    )
st.caption(
    "Observed throughput: "
    + (f"{rate:,.1f} objects per minute." if rate else "not enough cycles with events to measure.")
)

# Time to access (the SLO) beside the forecast: access-time-summary, as on its own page.
access = ctx.report("access-time-summary").data or {}
slo_cols = st.columns(3)
for col, (label, key) in zip(slo_cols, (("p50", "p50_minutes"), ("p90", "p90_minutes"))):
    with col:
        minutes = access.get(key)
        ui.kpi(
            f"Time to access ({label})", ui.fmt_duration(None if minutes is None else 60 * minutes)
        )
with slo_cols[2]:
    ui.kpi(
        "Over the SLO",
        f"{int(access.get('breached') or 0):,} of {int(access.get('users') or 0):,}",
        f"Users who waited over {access.get('slo_minutes', 60):g} minutes from assignment to "
        "access; see Time to access.",
    )

st.subheader("Documented range against your observed throughput")
bars = [
    ("Documented fastest", est.get("docs_min_minutes"), "#9ca3af"),
    ("Observed p50", est.get("estimate_minutes_p50"), "#2563eb"),
    ("Observed p90", est.get("estimate_minutes_p90"), "#1e40af"),
    ("Documented slowest", est.get("docs_max_minutes"), "#6b7280"),
]
shown = [(label, float(v) / 60, color) for label, v, color in bars if v is not None]
if shown:
    fig = go.Figure(
        go.Bar(
            x=[v for _, v, _ in shown],
            y=[label for label, _, _ in shown],
            orientation="h",
            marker={"color": [c for _, _, c in shown]},
            text=[ui.fmt_duration(v * 3600) for _, v, _ in shown],
            textposition="auto",
        )
    )
    fig.update_layout(height=260, xaxis_title="Duration (hours)", yaxis={"autorange": "reversed"})
    ui.chart(fig, "estimate_range")

st.subheader("Running cycle")
current = base.get("current_cycle")
progress = est.get("progress")
if current and progress:
    processed, remaining = progress["processed"], progress["remaining"]
    if progress["total"] is not None:
        st.progress(
            progress["fraction"],
            text=f"{processed:,} of {progress['total']:,} objects processed",
        )
    else:
        st.caption(
            f"{processed:,} objects processed so far; an incremental cycle only processes "
            "changes, so there is no total to count down."
        )
    run_cols = st.columns(4)
    with run_cols[0]:
        ui.kpi_time("Started", current.get("started_at"))
    with run_cols[1]:
        ui.kpi("Kind", str(current.get("kind") or "unknown"))
    with run_cols[2]:
        ui.kpi("Remaining objects", "—" if remaining is None else f"{int(remaining):,}")
    with run_cols[3]:
        ui.kpi_time("ETA", current.get("eta"))
    st.caption("Cycle id")
    st.code(str(current.get("cycle_id")), language=None)
else:
    st.info("No cycle is running (per the latest job status and events).")

st.subheader("Next incremental cycle")
nxt = base.get("next_incremental_at")
now = data.now()
late_jobs = ctx.report("job-header").frame
late_jobs = late_jobs.loc[late_jobs["overdue_min"].notna()] if late_jobs is not None else None
if late_jobs is not None and not late_jobs.empty:
    for _, job in late_jobs.iterrows():
        st.error(
            f"Overdue by {views.minutes_words(int(job['overdue_min']))}: {job['app']} "
            f"({job['job_id']}) was due "
            f"{views.local_and_utc(job['next_run_at'], now, st.context.timezone)} "
            "and no cycle has been seen since. Check the job's state on the Overview.",
            icon=":material/alarm:",
        )
inc_p50 = base.get("incremental_minutes_p50")
next_cols = st.columns(3)
with next_cols[0]:
    ui.kpi_time(
        "Expected start",
        nxt,
        "The last cycle's end (or the running cycle's ETA) plus the job's schedule interval.",
    )
    st.caption(views.relative(nxt, now) if nxt is not None else "")
with next_cols[1]:
    interval = base.get("interval_s")
    ui.kpi("Schedule interval", ui.fmt_duration(interval))
with next_cols[2]:
    ui.kpi(
        "Typical incremental cycle (p50)",
        ui.fmt_duration(None if inc_p50 is None else 60 * inc_p50),
    )
if base.get("objects_in_scope_basis") == "events":
    st.caption(
        "No assignments are stored, so the scope size is the number of distinct objects seen in "
        "events. Ingest the app's assignments (provlens ingest graph) for the real scope."
    )
