"""Events: every provisioning event like the portal's log, with its details pane.

Deep links: ``events?change=<change id>`` opens that event, ``events?cycle=<cycle id>`` lists a
cycle's events, ``events?user=<UPN or object id>`` one user's. Picking a row puts its change id
in the URL, so the address can be pasted into a ticket.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import ui, views
from dashboard.sidebar import context

ctx = context()
ui.header(
    "Events",
    ctx,
    "Every provisioning event, newest first, as in Entra's provisioning logs. Find one by change "
    "id or cycle id (or open …/events?change=<id>), then read its details below.",
)

# Pasted links fill the boxes once; after that the boxes drive the URL.
for param in ("change", "cycle", "user"):
    value = st.query_params.get(param)
    if value and st.session_state.get(f"events_linked_{param}") != value:
        st.session_state[f"events_linked_{param}"] = value
        st.session_state[f"events_{param}"] = value

cols = st.columns([2, 2, 2, 3])
with cols[0]:
    change = st.text_input("Change id", key="events_change", placeholder="exact change id")
with cols[1]:
    cycle = st.text_input("Cycle id", key="events_cycle", placeholder="exact cycle id")
with cols[2]:
    user = st.text_input("User", key="events_user", placeholder="UPN, object id or name")
with cols[3]:
    search = st.text_input(
        "Search", key="events_search", placeholder="any part of a name, UPN or id"
    )
for param, value in (("change", change), ("cycle", cycle), ("user", user)):
    # Only a box the viewer edited rewrites the URL (a picked row also sets `change`).
    if st.session_state.get(f"events_box_{param}", "") == value:
        continue
    st.session_state[f"events_box_{param}"] = value
    if value:
        st.query_params[param] = value
        st.session_state[f"events_linked_{param}"] = value
    elif param in st.query_params:
        del st.query_params[param]

params = {
    k: v.strip()
    for k, v in (("change", change), ("cycle", cycle), ("user", user), ("search", search))
    if v and v.strip()
}
with st.spinner("Finding events…"):
    result = ctx.report("events", **params)
frame = result.frame if result.frame is not None else pd.DataFrame()
info = result.data or {}
ui.noise_note(result.hidden_noise)
if params.get("change") or params.get("cycle"):
    st.caption("A change or cycle id is found whatever the time range in the sidebar says.")
st.caption(
    f"{info.get('matches', 0):,} event{'' if info.get('matches') == 1 else 's'}"
    + (
        f" (newest {info.get('shown', 0):,} shown)"
        if info.get("shown") != info.get("matches")
        else ""
    )
    + " — click a row for its details."
)
event = ui.table(
    frame,
    "events",
    key="events_log",
    height=360 if len(frame) > 8 else "auto",
    column_config={
        "service_principal_name": st.column_config.TextColumn("App"),
        "source_name": st.column_config.TextColumn("Source (name)"),
        "source_upn": st.column_config.TextColumn("Source UPN"),
        "target_name": st.column_config.TextColumn("Target (name)"),
    },
    empty="No event matches. Check the ids, or widen the time range in the sidebar.",
    select=True,
)
picked = ui.selected_row(event, frame)

details = info.get("details")
if picked is not None and (details is None or details["summary"].get("id") != picked["id"]):
    details = (ctx.report("events", event=str(picked["id"])).data or {}).get("details")
    if pd.notna(picked["change_id"]) and st.query_params.get("change") != picked["change_id"]:
        st.query_params["change"] = str(picked["change_id"])
        st.session_state["events_linked_change"] = str(picked["change_id"])

if not details:
    st.info("Pick an event (click a row) to see its steps, troubleshooting and properties.")
    st.stop()

summary = details["summary"]
st.divider()
status = str(summary.get("status") or "unknown")
headline = (
    f"{summary.get('action') or '?'} · {status} · "
    f"{summary.get('source_name') or summary.get('source_id') or '?'} → "
    f"{summary.get('service_principal_name') or summary.get('service_principal_id') or '?'}"
)
st.subheader("Event details", anchor=False)
st.text(headline)  # names from the logs: plain text
links = st.columns(3)
with links[0]:
    if summary.get("source_upn") or summary.get("source_id"):
        st.link_button(
            "Open this user",
            views.link("users", user=summary.get("source_upn") or summary.get("source_id")),
            icon=":material/person_search:",
        )
with links[1]:
    if summary.get("cycle_id"):
        st.link_button(
            "All events of this cycle",
            views.link("events", cycle=summary["cycle_id"]),
            icon=":material/timeline:",
        )
with links[2]:
    if summary.get("change_id"):
        st.text(f"Link: events?change={summary['change_id']}")

TAB_NAMES = ["Steps", "Troubleshooting & recommendation", "Modified properties", "Summary"]
# A failed or skipped event opens on what to do about it, like the portal's pane.
tabs = st.tabs(TAB_NAMES, default=TAB_NAMES[1] if status in ("failure", "skipped") else None)
with tabs[0]:
    steps = pd.DataFrame(details.get("steps") or [])
    ui.table(
        steps,
        "event-steps",
        column_order=["position", "name", "status", "description", "step_type"],
        empty="Entra logged no steps for this event.",
    )
with tabs[1]:
    trouble = details.get("troubleshooting") or {}
    if not any(trouble.values()):
        st.success("Nothing to troubleshoot: this event did not fail or skip.")
    else:
        shown = {
            "Error code": trouble.get("error_code"),
            "Category": trouble.get("error_category"),
            "Failed step": trouble.get("failed_step"),
            "Reason": trouble.get("reason"),
            "Additional details": trouble.get("additional_details"),
            "Skip reason": trouble.get("skip_reason"),
            "Recommendation": trouble.get("recommended_action"),
            "Who fixes it": trouble.get("fix_owner"),
        }
        for label, value in shown.items():
            if value:
                st.caption(label)
                st.text(str(value))
with tabs[2]:
    mods = pd.DataFrame(details.get("modified_properties") or [])
    ui.table(
        mods,
        "event-modified-properties",
        empty="No attribute was changed by this event.",
    )
with tabs[3]:
    rows = pd.DataFrame(
        {
            "field": [views.column_label(k) for k in summary],
            "value": ["—" if v is None else str(v) for v in summary.values()],
        }
    )
    st.dataframe(
        rows,
        hide_index=True,
        width="stretch",
        column_config={
            "field": st.column_config.TextColumn("Field", width="medium"),
            "value": st.column_config.TextColumn("Value", width="large"),
        },
        key="event_summary",
    )
