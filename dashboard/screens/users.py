"""Users: find a user, see their timeline, steps, changes, wiki requests and verdict."""

from __future__ import annotations

import logging

import pandas as pd
import plotly.express as px
import streamlit as st

from dashboard import data, ui, views
from dashboard.sidebar import context
from reports import export
from reports.correlation import latest_verdict
from reports.users import search_users, shown_timeline, user_key

log = logging.getLogger(__name__)

ctx = context()
ui.header(
    "Users",
    ctx,
    "Why did a user not get (or lose) access? Search, pick one, and read what Entra did and "
    "what the wiki answered.",
)

users = ctx.report("users")
query = st.text_input(
    "Search by name, UPN or object id",
    key="users_query",
    placeholder="e.g. ada.lovelace@contoso.com",
)
frame = users.frame if users.frame is not None else pd.DataFrame()
matches = search_users(frame, query) if not frame.empty else frame
ui.noise_note(users.hidden_noise)
st.caption(
    f"{len(matches):,} of {len(frame):,} users shown"
    + (" (first 200)" if len(matches) == 200 else "")
)
ui.table(
    matches,
    "users",
    key="users_matches",
    height=260 if len(matches) > 6 else "auto",
    empty="No user matches the search.",
)

if matches.empty:
    st.stop()

choices = views.user_choices(matches)
picked = st.selectbox(
    "User",
    options=list(choices),
    format_func=lambda k: choices[k],
    key="users_pick",
    help="Pick one to see their timeline.",
)
if picked is None:
    st.stop()

row = matches[user_key(matches) == picked].iloc[0]
timeline = data.user_timeline(
    str(ctx.store_path), ctx.version, ctx.filters.key(), picked, ctx.filters
)
timeline, hidden = shown_timeline(timeline, ctx.filters.include_noise)
events = timeline.events
ui.noise_note(hidden)

st.subheader("Selected user")
st.text(
    f"Name: {row['source_name'] if pd.notna(row['source_name']) else '—'}\n"
    f"UPN:  {row['source_upn'] if pd.notna(row['source_upn']) else '—'}\n"
    f"Entra object id: {row['source_id'] if pd.notna(row['source_id']) else '—'}\n"
    f"Wiki SCIM id:    {row['target_id'] if pd.notna(row['target_id']) else '—'}"
)

try:
    # This user's rows only (cached per user): the full report matches every event in the store.
    user_corr = ctx.report("correlation", user=picked).frame
except Exception as exc:  # the rest of the page still answers without the wiki side
    log.exception("correlation report failed")
    st.warning(f"The Entra ↔ wiki correlation could not be computed ({type(exc).__name__}).")
    user_corr = None
verdict = latest_verdict(user_corr)

cols = st.columns(4)
with cols[0]:
    ui.kpi("Events", f"{len(events):,}")
with cols[1]:
    ui.kpi("Failures", f"{int(row['failures']) if pd.notna(row['failures']) else 0:,}")
with cols[2]:
    ui.kpi("Last status", str(row["last_status"]) if pd.notna(row["last_status"]) else "—")
with cols[3]:
    ui.kpi(
        "Entra ↔ wiki verdict",
        verdict or "—",
        "both_ok: Entra and the wiki agree; rejected_by_wiki: the wiki answered ≥ 400; "
        "not_sent_to_wiki: Entra failed or skipped before calling the wiki; unmatched: Entra "
        "reports success but no wiki request was found.",
    )

st.subheader("Timeline")
if events.empty:
    st.info("No events for this user in the selected range.")
else:
    fig = px.scatter(
        # Hover labels are Plotly HTML: escape what came from the logs.
        events.assign(
            error_code=events["error_code"].map(views.plot_escape, na_action="ignore"),
            cycle_id=events["cycle_id"].map(views.plot_escape, na_action="ignore"),
        ),
        x="activity_at",
        y="action",
        color="status",
        color_discrete_map=ui.STATUS_COLORS,
        symbol="status",
        hover_data={"error_code": True, "cycle_id": True, "activity_at": True},
        labels={"activity_at": "Time (UTC)", "action": "Action", "status": "Status"},
    )
    fig.update_traces(marker={"size": 12})
    fig.update_layout(height=260)
    ui.chart(fig, "users_timeline")
ui.table(
    events[[c for c in views.TIMELINE_EVENT_COLUMNS if c in events.columns]],
    "user-events",
    empty="No events.",
)

left, right = st.columns(2)
with left:
    st.subheader("Steps")
    ui.table(
        timeline.steps[["event_id", "position", "name", "step_type", "status", "description"]],
        "user-steps",
        empty="No steps recorded for these events.",
    )
with right:
    st.subheader("Modified properties (old → new)")
    ui.table(
        timeline.modified_properties[["event_id", "name", "old_value", "new_value"]],
        "user-modified-properties",
        empty="No attribute changes recorded for these events.",
    )

st.subheader("Entra event beside the wiki's answer")
st.caption(
    "Each event with the wiki requests about the same object within ±120 s, and the verdict: "
    "both_ok, rejected_by_wiki (the wiki answered ≥ 400), not_sent_to_wiki (Entra failed or "
    "skipped before calling the wiki), unmatched (Entra reports success, no request found); "
    "wiki_only rows are requests about this user that no Entra event explains."
)
ui.table(user_corr, "user-correlation", empty="No correlation rows for these events.")

st.subheader("Wiki SCIM requests about this user")
wiki = data.user_wiki_requests(
    str(ctx.store_path), ctx.version, ctx.filters.key(), picked, ctx.filters
)
ui.table(
    wiki,
    "user-wiki-requests",
    empty="The wiki logged no SCIM request about this user (by SCIM id, externalId or userName).",
)

st.subheader("When will this user be provisioned?")
# Off by default: it re-derives scope and throughput, which takes seconds on a large store.
if st.toggle("Estimate it", key="users_when"):
    when = (ctx.report("estimate", user=picked).data or {}).get("when_user") or {}
    when_cols = st.columns([1, 3])
    with when_cols[0]:
        ui.kpi_time("Expected by", when.get("expected_by"))
    with when_cols[1]:
        st.caption("Why")
        st.text(str(when.get("reason") or "—"))

st.subheader("Support pack")
st.caption(
    "Everything above for this user in one file, for a ticket: ids, scope, wiki state, verdict, "
    "when it will be provisioned, the recommended fix and who owns it; then events, steps, "
    "modified properties and wiki requests (formula-neutralised)."
)
inputs = data.load_inputs(ctx.store_path, ctx.version)
filters, at = ctx.filters.to_filters(), data.now()
name = f"provlens-support-{views.safe_file_part(picked)}"
pack_cols = st.columns(2)
with pack_cols[0]:
    st.download_button(
        "Download support pack (zip)",
        # Built only when clicked (it estimates when the user will be provisioned).
        data=lambda: export.support_pack_zip(export.support_pack(inputs, picked, filters, at)),
        file_name=f"{name}.zip",
        mime="application/zip",
        type="primary",
        icon=":material/folder_zip:",
        key="users_support_pack",
        on_click="ignore",
    )
with pack_cols[1]:
    st.download_button(
        "Download support pack (Excel)",
        data=lambda: export.xlsx_bytes(export.support_pack(inputs, picked, filters, at)),
        file_name=f"{name}.xlsx",
        mime="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        icon=":material/table_view:",
        key="users_support_pack_xlsx",
        on_click="ignore",
    )
