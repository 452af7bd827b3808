"""Time to access: how long users wait from assignment to their wiki account, against the SLO."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from dashboard import ui, views
from dashboard.sidebar import context

ctx = context()
ui.header(
    "Time to access",
    ctx,
    "From assignment (a direct assignment's creation, or for a group member the later of the "
    "group's assignment and the member's join, from Entra's directory audit or else the first "
    "stored membership snapshot) to the wiki account being active (the wiki's SCIM audit), or "
    "else to Entra's first successful create. The time range selects users by assignment time.",
)

# The SLO's default is the report's own (asked once; the same cached answer is used below).
default_slo = float((ctx.report("access-time-summary", by="week").data or {})["slo_minutes"])
slo = st.number_input(
    "SLO (minutes)",
    min_value=1.0,
    value=default_slo,
    step=15.0,
    key="access_slo_minutes",
    help="A user waiting longer than this breached the SLO (`provlens alert` rule access_slo).",
)
slo_param = {} if slo == default_slo else {"slo_minutes": slo}
rows = ctx.report("access-time", **slo_param).frame
overall = ctx.report("access-time-summary", by="week", **slo_param)
if rows is None or rows.empty:
    st.info(
        "No user's time to access can be measured yet. It needs the app's assignments and "
        "group members with Entra's provisioning events: run `provlens ingest graph` (it also "
        "reads when members joined the assigned groups from the directory audit, which needs "
        "AuditLog.Read.All). Ingesting the wiki's SCIM audit log (`provlens ingest file "
        "scim-audit.jsonl`) times access to the wiki account itself."
    )
    st.stop()

data = overall.data or {}
if not data.get("users"):
    st.warning(
        f"{len(rows):,} users gained access, but none can be timed: their assignment or group "
        "join time is unknown (or later than their access). Group join times come from Entra's "
        "directory audit, read by `provlens ingest graph`; from then on, each members snapshot "
        "also records when a member first appeared."
    )
cols = st.columns(4)
with cols[0]:
    ui.kpi("Users measured", f"{int(data.get('users') or 0):,}")
with cols[1]:
    p50 = data.get("p50_minutes")
    ui.kpi("p50", ui.fmt_duration(None if p50 is None else 60 * p50))
with cols[2]:
    p90 = data.get("p90_minutes")
    ui.kpi("p90", ui.fmt_duration(None if p90 is None else 60 * p90))
with cols[3]:
    ui.kpi("Breached", f"{int(data.get('breached') or 0):,}", f"Waited over {slo:g} minutes.")

weekly = overall.frame
st.subheader("p50 / p90 per week")
if weekly is not None and not weekly.empty:
    fig = go.Figure(
        [
            go.Bar(name="p50", x=weekly["key"], y=weekly["p50_minutes"], marker_color="#2563eb"),
            go.Bar(name="p90", x=weekly["key"], y=weekly["p90_minutes"], marker_color="#1e40af"),
        ]
    )
    fig.add_hline(y=slo, line_dash="dash", line_color="#dc2626", annotation_text="SLO")
    fig.update_layout(
        height=300,
        barmode="group",
        xaxis={"type": "category"},
        xaxis_title="Week of assignment (from Monday)",
        yaxis_title="Minutes",
    )
    ui.chart(fig, "access_weekly")
ui.table(weekly, "access-time-weekly", empty="No week has a measured user.")

st.subheader("p50 / p90 per app")
ui.table(
    ctx.report("access-time-summary", slo_minutes=slo, by="app").frame,
    "access-time-per-app",
    empty="No app has a measured user.",
)

st.subheader("Breaches")
breaches = rows.loc[rows["breached"]].sort_values("minutes_to_access", ascending=False)
breaches = breaches.assign(open=breaches["principal_id"].map(views.user_link))
breaches = breaches[["open", *rows.columns]]
ui.table(
    breaches.reset_index(drop=True),
    "access-time-breaches",
    column_config={"open": st.column_config.LinkColumn("User", display_text="open")},
    empty=f"Nobody waited longer than {slo:g} minutes.",
)

with st.expander("Every measured user"):
    ui.table(rows, "access-time")
