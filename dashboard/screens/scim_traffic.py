"""Wiki SCIM traffic: request rate, status codes, latency percentiles, 429s beside Entra cycles."""

from __future__ import annotations

import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from dashboard import data, ui, views
from dashboard.sidebar import context

CLASS_COLORS = {
    "2xx": "#16a34a",
    "3xx": "#0ea5e9",
    "4xx": "#f59e0b",
    "429": "#7c3aed",
    "5xx": "#dc2626",
    "unknown": "#9ca3af",
}

ctx = context()
ui.header(
    "Wiki SCIM traffic",
    ctx,
    "What the wiki received on its SCIM endpoint (its audit log or access log), beside the "
    "Entra provisioning cycles that sent it. Only the time filter applies here.",
)

requests = data.scim_requests(str(ctx.store_path), ctx.version, ctx.filters.key(), ctx.filters)
if requests.empty:
    st.info(
        "No wiki SCIM requests in the selected range. Ingest the wiki's SCIM audit log (JSON "
        "Lines) or its web-server access log: `provlens ingest file scim-audit.jsonl`."
    )
    st.stop()

summary = views.scim_traffic_summary(requests)
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

rate, freq = views.request_rate(requests)
per = views.FREQ_LABELS.get(freq, freq)
cycles = ctx.report("cycles").frame

st.subheader("Requests by status, with Entra cycles shaded")
fig = px.bar(
    rate,
    x="bucket",
    y="count",
    color="status_class",
    color_discrete_map=CLASS_COLORS,
    labels={"bucket": "Time (UTC)", "count": f"Requests per {per}", "status_class": "Status"},
)
if cycles is not None and not cycles.empty:
    for start, end in zip(cycles["started_at"], cycles["ended_at"], strict=True):
        fig.add_vrect(x0=start, x1=end, fillcolor="#2563eb", opacity=0.08, line_width=0)
ui.chart(fig, "scim_rate")

left, right = st.columns(2)
with left:
    st.subheader("Latency percentiles")
    lat = views.latency_percentiles(requests, freq)
    fig = go.Figure()
    for col, color in (("p50", "#2563eb"), ("p95", "#f59e0b"), ("p99", "#dc2626")):
        fig.add_trace(
            go.Scatter(
                x=lat["bucket"], y=lat[col], name=col, mode="lines+markers", line={"color": color}
            )
        )
    fig.update_layout(xaxis_title="Time (UTC)", yaxis_title="Latency (ms)")
    ui.chart(fig, "scim_latency")
with right:
    st.subheader("Status codes")
    codes = views.status_code_counts(requests)
    fig = px.bar(
        codes,
        x="status_code",
        y="requests",
        color="status_class",
        color_discrete_map=CLASS_COLORS,
        labels={"status_code": "HTTP status", "requests": "Requests", "status_class": "Status"},
    )
    fig.update_xaxes(type="category")
    ui.chart(fig, "scim_codes")

st.subheader("By operation")
traffic = ctx.report("scim-traffic").frame
ui.table(traffic, "scim-traffic")

throttled = requests[requests["status_code"] == 429]
if not throttled.empty:
    st.subheader("Throttled requests (429)")
    ui.table(throttled.sort_values("received_at"), "scim-429")
