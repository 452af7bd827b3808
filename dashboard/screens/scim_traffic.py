"""Wiki SCIM traffic: request rate, status codes, latency percentiles, 429s beside Entra cycles."""

from __future__ import annotations

import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from dashboard import ui, views
from dashboard.sidebar import context

# One colour per status class of the scim-rate report (429 apart from other 4xx).
CLASS_COLORS = {
    "2xx": "#16a34a",
    "3xx": "#0ea5e9",
    "4xx (not 429)": "#f59e0b",
    "429 throttled": "#7c3aed",
    "5xx": "#dc2626",
    "unknown": "#9ca3af",
}

ctx = context()
ui.header(
    "Wiki SCIM traffic",
    ctx,
    "What the wiki received on its SCIM endpoint (its audit log or access log), beside the "
    "Entra provisioning cycles that sent it. The time filter applies to requests; app and job "
    "select the Entra cycles; action and status describe Entra events, not requests.",
)

summary = ctx.report("scim-summary").data or {}
if not summary.get("requests"):
    st.info(
        "No wiki SCIM requests in the selected range. Ingest the wiki's SCIM audit log (JSON "
        "Lines) or its web-server access log: `provlens ingest file scim-audit.jsonl`."
    )
    st.stop()

traffic = ctx.report("scim-traffic").frame
if traffic is None:
    st.stop()
minutes = traffic[traffic["granularity"] == "minute"]
cycles = traffic[traffic["granularity"] == "cycle"]

cols = st.columns(5)
with cols[0]:
    ui.kpi("Requests", f"{summary['requests']:,}")
with cols[1]:
    ui.kpi("Errors (≥ 400)", f"{summary['errors']:,}")
with cols[2]:
    ui.kpi("Throttled (429)", f"{summary['throttled']:,}")
with cols[3]:
    p50 = summary["p50_ms"]
    ui.kpi("Latency p50", "—" if p50 is None else f"{p50:,.0f} ms")
with cols[4]:
    p95 = summary["p95_ms"]
    ui.kpi("Latency p95", "—" if p95 is None else f"{p95:,.0f} ms")

st.subheader("Requests per minute by status, Entra cycles shaded")
rate = ctx.report("scim-rate").frame
# Markers, not bars: minute-wide bars vanish on a multi-day axis.
fig = px.scatter(
    rate,
    x="period_start",
    y="requests",
    color="status",
    color_discrete_map=CLASS_COLORS,
    labels={"period_start": "Time (UTC)", "requests": "Requests per minute", "status": "Status"},
)
fig.update_traces(marker={"size": 9})
fig.update_yaxes(rangemode="tozero")
# One layout update, not add_vrect per cycle: that revalidates the figure each call (minutes
# for a few hundred cycles).
# Short incremental cycles are widened to a visible sliver (hover keeps the real times).
if len(cycles):
    sliver = views.min_bar(cycles["period_start"].min(), cycles["period_end"].max())
    ends = cycles["period_end"].where(
        cycles["period_end"] - cycles["period_start"] >= sliver, cycles["period_start"] + sliver
    )
    fig.update_layout(shapes=views.cycle_bands(cycles["period_start"], ends))
ui.chart(fig, "scim_rate")

left, right = st.columns(2)
with left:
    st.subheader("Latency per hour (p50 and p95)")
    hours = ctx.report("scim-traffic", granularity="hour").frame
    hours = hours if hours is not None else minutes.iloc[0:0]
    fig = go.Figure()
    for col, name, color in (
        ("latency_p50_ms", "p50 (median)", "#2563eb"),
        ("latency_p95_ms", "p95", "#f59e0b"),
    ):
        fig.add_trace(
            go.Scatter(
                x=hours["period_start"],
                y=hours[col].astype("float64"),
                name=name,
                mode="lines+markers" if len(hours) <= 48 else "lines",
                line={"color": color, "width": 2},
                connectgaps=False,
            )
        )
    fig.update_layout(xaxis_title="Hour (UTC)", yaxis_title="Latency (ms)")
    fig.update_yaxes(rangemode="tozero")
    ui.chart(fig, "scim_latency")
with right:
    st.subheader("Requests and 429s per Entra cycle")
    fig = go.Figure()
    fig.add_trace(
        go.Bar(
            x=cycles["period_start"],
            y=cycles["requests"],
            name="Requests",
            marker={"color": "#60a5fa"},
        )
    )
    # Only cycles that were throttled get a 429 marker: zeros would draw a band along the axis.
    hit = cycles.loc[cycles["throttled_429"].fillna(0) > 0]
    fig.add_trace(
        go.Scatter(
            x=hit["period_start"],
            y=hit["throttled_429"],
            name="429 throttled",
            mode="markers+text",
            text=hit["throttled_429"],
            textposition="top center",
            marker={"color": "#7c3aed", "size": 11, "symbol": "diamond"},
        )
    )
    fig.update_layout(xaxis_title="Cycle start (UTC)", yaxis_title="Requests per cycle")
    if len(cycles) > 1 and cycles["requests"].max() > 20 * max(cycles["requests"].median(), 1):
        fig.update_yaxes(type="log", title="Requests per cycle (log scale)", dtick=1)
    else:
        fig.update_yaxes(rangemode="tozero")
    ui.chart(fig, "scim_cycles")

st.subheader("Per Entra cycle")
ui.table(
    cycles.drop(columns=["granularity"]).reset_index(drop=True),
    "scim-traffic-per-cycle",
    empty="No Entra cycles in the selected range.",
)

st.subheader("Status codes")
ui.table(ctx.report("scim-status-codes").frame, "scim-status-codes")

throttled = ctx.report("scim-requests", status_code=429).frame
if throttled is not None and not throttled.empty:
    st.subheader("Throttled requests (429)")
    ui.table(throttled, "scim-429")

with st.expander("Per-minute rows"):
    ui.table(
        minutes.drop(columns=["granularity", "job_id", "cycle_id", "events"]).reset_index(
            drop=True
        ),
        "scim-traffic-per-minute",
    )
