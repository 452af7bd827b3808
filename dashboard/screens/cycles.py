"""Cycles: a timeline of provisioning cycles, duration and throughput trends, gaps."""

from __future__ import annotations

import plotly.express as px
import streamlit as st

from dashboard import ui, views
from dashboard.sidebar import context

ctx = context()
ui.header(
    "Cycles",
    ctx,
    "A cycle is one run of the provisioning job: its events share a cycle id; it runs from its "
    "first to its last event. The first cycle of a job is the initial one; later ones are "
    "incremental.",
)

cycles = ctx.report("cycles").frame
if cycles is None or cycles.empty:
    st.info("No cycles in the selected range (events without a cycle id are not counted).")
    st.stop()

plot = cycles.assign(
    duration_min=cycles["duration_s"].astype("float64") / 60,
    gap_min=cycles["gap_before_s"].astype("float64") / 60,
    objects_per_min_f=cycles["objects_per_min"].astype("float64"),
    # The app's name, as people know it; the job id only when an app has several jobs.
    job=views.app_labels(
        cycles, ctx.options.apps, with_job=len(ctx.options.jobs) > len(ctx.options.apps)
    ).map(views.plot_escape),
    cycle_id=cycles["cycle_id"].map(views.plot_escape, na_action="ignore"),
)

kpi = ctx.report("cycle-kpis").data or {}
cols = st.columns(4)
with cols[0]:
    ui.kpi("Cycles", f"{kpi['cycles']:,}")
with cols[1]:
    ui.kpi("Initial cycles", f"{kpi['initial']:,}")
with cols[2]:
    ui.kpi("Median duration", ui.fmt_duration(kpi["median_duration_s"]))
with cols[3]:
    ui.kpi(
        "Longest gap",
        ui.fmt_duration(kpi["longest_gap_s"]),
        "Between one cycle's end and the next one's start (same job).",
    )

st.subheader("Timeline")
# A cycle of a single event has no length; give it a sliver so the bar is visible.
min_bar = views.min_bar(plot["started_at"].min(), plot["ended_at"].max())
ended = plot["ended_at"].where(
    plot["ended_at"] - plot["started_at"] >= min_bar, plot["started_at"] + min_bar
)
fig = px.timeline(
    plot.assign(ended_bar=ended),
    x_start="started_at",
    x_end="ended_bar",
    y="job",
    color="kind",
    color_discrete_map=ui.KIND_COLORS,
    hover_data={
        "cycle_id": True,
        "events": True,
        "objects": True,
        "duration_min": ":.1f",
        "ended_bar": False,
        "ended_at": True,
    },
    labels={
        "job": "App",
        "kind": "Kind",
        "duration_min": "Duration (minutes)",
        "started_at": "Start (UTC)",
    },
)
fig.update_yaxes(title="App")
fig.update_xaxes(title="Time (UTC)")
ui.chart(fig, "cycles_timeline")

left, right = st.columns(2)
with left:
    st.subheader("Duration per cycle")
    fig = px.scatter(
        plot,
        x="started_at",
        y="duration_min",
        color="kind",
        color_discrete_map=ui.KIND_COLORS,
        labels={
            "started_at": "Cycle start (UTC)",
            "duration_min": "Duration (minutes)",
            "kind": "Kind",
        },
    )
    fig.update_traces(mode="lines+markers")
    durations = plot["duration_min"].dropna()
    if len(durations) > 1 and durations.max() > 20 * max(durations.median(), 1 / 60):
        # The initial cycle is many times an incremental one: a log axis shows both.
        fig.update_yaxes(type="log", title="Duration (minutes, log scale)", dtick=1)
    ui.chart(fig, "cycles_duration")
with right:
    st.subheader("Throughput per cycle")
    # A rate measured over a few seconds says nothing: cycles under a minute are left out.
    measured = plot.dropna(subset=["objects_per_min_f"]).loc[lambda f: f["duration_min"] >= 1]
    st.caption(f"{len(measured)} of {len(plot)} cycles last a minute or more and are shown.")
    fig = px.scatter(
        measured,
        x="started_at",
        y="objects_per_min_f",
        color="kind",
        color_discrete_map=ui.KIND_COLORS,
        labels={
            "started_at": "Cycle start (UTC)",
            "objects_per_min_f": "Objects per minute",
            "kind": "Kind",
        },
    )
    fig.update_traces(mode="markers", marker={"size": 10})
    lo, hi = views.time_window(plot["started_at"].min(), plot["started_at"].max())
    fig.update_xaxes(range=[lo, hi])
    ui.chart(fig, "cycles_throughput")

st.subheader("Gaps between cycles")
gaps = plot.dropna(subset=["gap_min"])
if gaps.empty:
    st.info("Only one cycle per job in the selected range: no gaps to show.")
else:
    fig = px.bar(
        gaps,
        x="started_at",
        y="gap_min",
        color="job",
        labels={
            "started_at": "Cycle start (UTC)",
            "gap_min": "Gap before cycle (minutes)",
            "job": "App",
        },
    )
    ui.chart(fig, "cycles_gaps")

st.subheader("All cycles")
linked, link_config = ui.with_link(cycles, "events →", "events", "cycle", "cycle_id")
ui.table(linked, "cycles", column_config=link_config)
