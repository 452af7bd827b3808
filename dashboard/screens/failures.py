"""Failures: top error codes with who owns the fix, trend, affected users; skip reasons apart."""

from __future__ import annotations

import plotly.express as px
import streamlit as st

from dashboard import ui, views
from dashboard.sidebar import context

OWNER_LABELS = {
    "identity_admin": "Identity admin (Entra)",
    "app_admin": "App admin (wiki)",
    "data_owner": "Data owner (user attributes)",
    "unknown": "Unknown",
}

ctx = context()
ui.header(
    "Failures",
    ctx,
    "Events with status failure, grouped by error code, with who owns the fix and what to do. "
    "Skipped events are listed apart below.",
)

failures = ctx.report("failures")
frame = failures.frame
ui.noise_note(failures.hidden_noise)

kpi = ctx.report("failure-kpis").data or {}
affected = ctx.report("affected-users").frame
cols = st.columns(3)
with cols[0]:
    ui.kpi("Failed events", f"{kpi['failed_events']:,}")
with cols[1]:
    ui.kpi("Error codes", f"{kpi['error_codes']:,}")
with cols[2]:
    ui.kpi(
        "Users with a failure",
        f"{kpi['users_with_failure']:,}",
        "Users with at least one failed event.",
    )

st.subheader("Top error codes")
if frame is None or frame.empty:
    st.success("No failures in the selected range.")
else:
    top = frame.head(15).assign(
        code=lambda f: f["error_code"].fillna("(none)").map(views.plot_escape),
        owner_label=lambda f: f["owner"].map(OWNER_LABELS).fillna(f["owner"]),
    )
    fig = px.bar(
        top.iloc[::-1],
        x="events",
        y="code",
        color="owner_label",
        orientation="h",
        text="events",  # value labels: a short bar still says its number
        labels={"events": "Failed events", "code": "Error code", "owner_label": "Who fixes it"},
    )
    fig.update_traces(textposition="outside", cliponaxis=False)
    fig.update_layout(height=max(260, 40 * len(top)))
    ui.chart(fig, "failures_top")
    ui.table(
        frame.assign(owner=frame["owner"].map(OWNER_LABELS).fillna(frame["owner"])),
        "failures",
        column_config={
            "recommended_action": st.column_config.TextColumn("Recommended action", width="large"),
            "sample_reason": st.column_config.TextColumn("Sample reason", width="large"),
        },
    )

    st.subheader("Failures over time")
    trend = ctx.report("events-over-time", by="error_code", status="failure").frame
    assert trend is not None  # a rows report always has a frame
    trend = trend.assign(error_code=trend["error_code"].map(views.plot_escape))
    fig = px.bar(
        trend,
        x="bucket",
        y="count",
        color="error_code",
        color_discrete_sequence=ui.CATEGORY_COLORS,
        labels={"bucket": "Time (UTC)", "count": "Failed events", "error_code": "Error code"},
    )
    ui.chart(fig, "failures_trend")

    st.subheader("Affected users")
    linked, link_config = ui.with_link(
        affected, "user →", "users", "user", "source_upn", "source_id"
    )
    ui.table(
        linked,
        "affected-users",
        column_config=link_config,
        empty="No user has a failure in the selected range.",
    )

st.subheader("Skip reasons")
skips = ctx.report("skips")
ui.noise_note(skips.hidden_noise)
ui.table(
    skips.frame,
    "skips",
    empty="No skipped events in the selected range"
    + (" (out-of-scope skips are hidden as noise)." if not ctx.filters.include_noise else "."),
)
