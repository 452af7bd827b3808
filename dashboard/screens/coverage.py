"""Coverage: who should be in the wiki against who is there — funnel and lists per verdict."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from dashboard import ui
from dashboard.sidebar import context

VERDICT_HELP = {
    "provisioned": "In scope and active in the wiki.",
    "failed": "In scope; Entra's last attempt failed.",
    "skipped": "In scope; Entra's last attempt skipped the user.",
    "pending": "In scope; Entra has not processed the user yet.",
    "missing_in_wiki": "In scope and Entra reports success, but the wiki has no active account.",
    "should_be_disabled": "Not in scope, known to Entra, still active in the wiki.",
    "orphaned": "In the wiki but unknown to Entra (no event, assignment or membership).",
    "excluded": "Not in scope (nested group members, Default Access) and not in the wiki.",
}

ctx = context()
ui.header(
    "Coverage",
    ctx,
    "In scope = assigned directly with a role other than Default Access, or a direct member of "
    "such an assigned group. Nested-group members and Default Access are not provisioned by "
    "Entra.",
)

result = ctx.report("coverage")
coverage = result.frame
if coverage is None or coverage.empty:
    st.info(
        "Coverage needs the app's assignments (and group members) and the wiki's users. Ingest "
        "them with `provlens ingest graph` (scope) and `provlens ingest scim` (wiki state)."
    )
    st.stop()

counts: dict[str, int] = (result.data or {})["verdict_counts"]
VERDICTS = list(counts)  # every verdict, in the report's order
funnel = ctx.report("coverage-funnel").frame
assert funnel is not None  # a rows report always has a frame

left, right = st.columns([3, 2])
with left:
    st.subheader("From in scope to provisioned")
    fig = go.Figure(
        go.Funnel(
            y=funnel["stage"],
            x=funnel["users"],
            textinfo="value+percent initial",
            marker={"color": ["#2563eb", "#3b82f6", "#16a34a", "#15803d"]},
        )
    )
    fig.update_layout(height=320, xaxis_title="Users")
    ui.chart(fig, "coverage_funnel")
with right:
    st.subheader("Users per verdict")
    fig = go.Figure(
        go.Bar(
            x=[counts[v] for v in VERDICTS],
            y=list(VERDICTS),
            orientation="h",
            marker={"color": "#2563eb"},
            # Value labels: 5 failed users beside 1,584 provisioned is otherwise invisible.
            text=[f"{counts[v]:,}" for v in VERDICTS],
            textposition="outside",
            cliponaxis=False,
        )
    )
    fig.update_layout(height=320, xaxis_title="Users", yaxis={"autorange": "reversed"})
    ui.chart(fig, "coverage_verdicts")

st.subheader("Lists per verdict")
tabs = st.tabs([f"{v} ({counts[v]:,})" for v in VERDICTS])
for tab, verdict in zip(tabs, VERDICTS, strict=True):
    with tab:
        st.caption(VERDICT_HELP[verdict])
        linked, link_config = ui.with_link(
            coverage[coverage["verdict"] == verdict].reset_index(drop=True),
            "user →",
            "users",
            "user",
            "upn",
            "principal_id",
        )
        ui.table(
            linked,
            f"coverage-{verdict}",
            column_config=link_config,
            empty=f"No user has verdict {verdict}.",
        )
