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
if frame is not None and not frame.empty:
    # The answer first, in words: how much failed, and the biggest fix and who owns it.
    top_row = frame.iloc[0]
    share = int(top_row["events"]) / max(int(kpi["failed_events"]), 1)
    st.text(
        f"{kpi['failed_events']:,} failed events across {kpi['error_codes']:,} error codes "
        f"touched {kpi['users_with_failure']:,} users. The most frequent, "
        f"{top_row['error_code'] if isinstance(top_row['error_code'], str) else '(none)'}, "
        f"is {share:.0%} of them; who fixes it: "
        f"{OWNER_LABELS.get(str(top_row['owner']), str(top_row['owner']))}."
    )
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
    # What to do and who does it first, so they are on screen without scrolling sideways.
    first = ["error_code", "events", "objects", "owner", "recommended_action"]
    ui.table(
        frame.assign(owner=frame["owner"].map(OWNER_LABELS).fillna(frame["owner"])),
        "failures",
        column_order=first + [c for c in frame.columns if c not in first],
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

microsoft = (ctx.report("summary").data or {}).get("by_envelope_result_type") or {}
if microsoft:
    st.subheader("Microsoft's view")
    st.caption(
        "Log Analytics workbooks count records by the envelope's result type, which can say "
        "Success around a record whose own status is skipped or failed. Rows: the envelope's "
        "result type; columns: the record's own status (what provlens counts). Noise included. "
        "Logs read from Graph carry no envelope and are not counted here."
    )
    ui.table(
        views.result_type_matrix(microsoft),
        "microsoft-view",
        empty="No record in the selected range came with an envelope result type.",
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
