"""Users: the diagnosis of one user first (verdict, wiki answer, fix, owner, when), then evidence.

Deep link: ``users?user=<UPN or object id>`` opens that user; picking a user puts it in the URL
so the address can be pasted into a ticket.
"""

from __future__ import annotations

import logging
import re

import pandas as pd
import streamlit as st

from dashboard import data, ui, views
from dashboard.sidebar import context
from reports import export, service

log = logging.getLogger(__name__)

# What the callout's colour says: green = has access, red = must be fixed, amber = wait/check.
VERDICT_TONE = {
    "provisioned": ("success", ":material/check_circle:", "Has access"),
    "failed": ("error", ":material/error:", "Provisioning failed"),
    "missing_in_wiki": ("error", ":material/error:", "Missing in the wiki"),
    "should_be_disabled": ("warning", ":material/warning:", "Should be disabled"),
    "orphaned": ("warning", ":material/warning:", "Unknown to Entra"),
    "skipped": ("warning", ":material/warning:", "Skipped by Entra"),
    "pending": ("info", ":material/schedule:", "Waiting for the next cycle"),
    "excluded": ("warning", ":material/block:", "Not in scope"),
}

# A text that is one whole UPN (name@domain.tld), not a part of one.
UPN = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")

ctx = context()
ui.header(
    "Users",
    ctx,
    "Why did a user not get (or lose) access? Search or open a link "
    "(…/users?user=<UPN or object id>), pick one, and read the diagnosis first.",
)

linked = st.query_params.get("user")
if linked and st.session_state.get("users_linked") != linked:
    # A pasted link wins over what was typed before.
    st.session_state["users_linked"] = linked
    st.session_state["users_query"] = linked

query = st.text_input(
    "Search by name, UPN or object id",
    key="users_query",
    placeholder="e.g. ada.lovelace@contoso.com",
)
if query and UPN.fullmatch(str(query).strip()):
    # A whole UPN (a link's, what the dashboard's own links hold, or one typed or pasted) names
    # the diagnosis's subject as the search row will: its diagnosis is computed while the search
    # runs (a UPN in another case than the logs' costs one answer computed for nothing).
    ctx.prefetch(("diagnosis", {"user": str(query).strip()}))
users = ctx.report("user-search", query=str(query or ""))
matches = users.frame if users.frame is not None else pd.DataFrame(columns=["user_key"])
ui.noise_note(users.hidden_noise)
st.caption(
    f"{len(matches):,} of {int((users.data or {}).get('users') or 0):,} users and groups shown"
    + (" (first 200)" if len(matches) == 200 else "")
    + " — click a row to open it."
)
USER_ORDER = [
    "source_name",
    "source_upn",
    "last_status",
    "last_action",
    "last_at",
    "last_error_code",
    "failures",
    "events",
    "source_type",
    "first_success_at",
    "last_success_at",
    "source_id",
    "target_id",
]
event = ui.table(
    matches,
    "users",
    key="users_matches",
    height=240 if len(matches) > 6 else "auto",
    column_order=[c for c in USER_ORDER if c in matches.columns],
    empty="No user matches the search.",
    select=True,
)
clicked = ui.selected_row(event, matches)

picked: str | None = None
if clicked is not None:
    picked = str(matches.loc[clicked.name, "user_key"])
elif not matches.empty:
    keys = matches["user_key"]
    # A link or a search naming exactly one object opens it; otherwise nothing is preselected.
    exact = (
        matches.loc[
            (matches["source_upn"].astype("str").str.lower() == str(query).strip().lower())
            | (matches["source_id"].astype("str") == str(query).strip())
        ]
        if query
        else matches.iloc[0:0]
    )
    if len(exact) == 1:
        picked = str(exact["user_key"].iloc[0])
    elif len(matches) == 1 and query:
        picked = str(keys.iloc[0])

if picked is None:
    st.info("Pick a user: click a row above, or search for one UPN or object id.")
    st.stop()

chosen: str = picked
row = matches[matches["user_key"] == chosen].iloc[0]
upn = row["source_upn"] if pd.notna(row["source_upn"]) else None
subject = str(upn or row["source_id"] if pd.notna(row["source_id"]) else picked)
if st.query_params.get("user") != subject:
    st.query_params["user"] = subject
    st.session_state["users_linked"] = subject

# This user's answers, computed side by side while the page draws them in reading order; the
# correlation beside the timeline: steps, changes and wiki requests are derived from the
# timeline (reports.users.user_timeline), ready as soon as it is.
ctx.prefetch(
    ("diagnosis", {"user": subject}),
    ("timeline", {"user": picked}),
    ("correlation", {"user": picked}),
    ("user-steps", {"user": picked}),
    ("user-changes", {"user": picked}),
    ("user-wiki-requests", {"user": picked}),
)

st.divider()
# Plain text: a display name from the logs never reaches Markdown.
st.text(
    f"Name: {row['source_name'] if pd.notna(row['source_name']) else '—'}\n"
    f"UPN: {upn or '—'}   ·   Entra object id: "
    f"{row['source_id'] if pd.notna(row['source_id']) else '—'}   ·   Wiki SCIM id: "
    f"{row['target_id'] if pd.notna(row['target_id']) else '—'}"
)

diagnosis = ctx.report("diagnosis", user=subject).data or {}
tone, icon, title = VERDICT_TONE.get(
    str(diagnosis.get("verdict")), ("info", ":material/help:", "No verdict")
)
callout = {"success": st.success, "error": st.error, "warning": st.warning, "info": st.info}[tone]
lines = [
    diagnosis.get("headline"),
    diagnosis.get("wiki_line"),
    diagnosis.get("fix_line"),
    diagnosis.get("owner_line"),
    diagnosis.get("when_line"),
]
# Names and error text come from the logs: every line is escaped before Markdown sees it.
callout(
    f"**{title}**  \n" + "  \n".join(views.md_escape(line) for line in lines if line),
    icon=icon,
)

timeline = ctx.report("timeline", user=picked)
events = timeline.frame if timeline.frame is not None else pd.DataFrame()
ui.noise_note(timeline.hidden_noise)

cols = st.columns(4)
with cols[0]:
    ui.kpi("Events", f"{len(events):,}")
with cols[1]:
    ui.kpi("Failures", f"{int(row['failures']) if pd.notna(row['failures']) else 0:,}")
with cols[2]:
    ui.kpi("Last status", str(row["last_status"]) if pd.notna(row["last_status"]) else "—")
with cols[3]:
    ui.kpi("Wiki requests", f"{(diagnosis.get('wiki_answer') or {}).get('requests', 0):,}")

st.subheader("Timeline")
if events.empty:
    st.info("No events for this user in the selected range.")
else:
    window = views.time_window(events["activity_at"].min(), events["activity_at"].max())
    points, spec = views.time_points(events, ui.STATUS_COLORS, window)
    ui.vega(points, spec, "users_timeline")
ui.table(
    events[[c for c in views.TIMELINE_EVENT_COLUMNS if c in events.columns]],
    "user-events",
    empty="No events.",
    column_config={
        "change_id": st.column_config.TextColumn("Change id", width="small"),
    },
)
st.caption("Open one event's details (steps, troubleshooting, modified properties):")
if not events.empty:
    st.link_button(
        "Open these events in the Events page",
        views.link("events", user=subject),
        icon=":material/list_alt:",
    )

left, right = st.columns(2)
with left:
    st.subheader("Steps")
    ui.table(
        ctx.report("user-steps", user=picked).frame,
        "user-steps",
        column_order=["position", "name", "status", "description", "step_type", "event_id"],
        empty="No steps recorded for these events.",
    )
with right:
    st.subheader("Modified properties (old → new)")
    ui.table(
        ctx.report("user-changes", user=picked).frame,
        "user-modified-properties",
        column_order=["name", "old_value", "new_value", "event_id"],
        empty="No attribute changes recorded for these events.",
    )

st.subheader("Entra event beside the wiki's answer")
st.caption(
    "Each event with the wiki requests about the same object within ±120 s, and the verdict: "
    "both_ok, rejected_by_wiki (the wiki answered ≥ 400), not_sent_to_wiki (Entra failed or "
    "skipped before calling the wiki), unmatched (Entra reports success, no request found); "
    "wiki_only rows are requests about this user that no Entra event explains."
)
try:
    # This user's rows only (cached per user): the full report matches every event in the store.
    user_corr = ctx.report("correlation", user=picked).frame
except Exception as exc:  # the rest of the page still answers without the wiki side
    log.exception("correlation report failed")
    st.warning(f"The Entra ↔ wiki correlation could not be computed ({type(exc).__name__}).")
    user_corr = None
ui.table(user_corr, "user-correlation", empty="No correlation rows for these events.")

st.subheader("Wiki SCIM requests about this user")
wiki = ctx.report("user-wiki-requests", user=picked).frame
wiki = wiki if wiki is not None else pd.DataFrame()
ui.table(
    wiki,
    "user-wiki-requests",
    column_order=[
        c
        for c in (
            "received_at",
            "method",
            "path",
            "status_code",
            "scim_type",
            "detail",
            "operation",
            "user_name",
            "latency_ms",
            "resource_id",
            "external_id",
            "request_id",
        )
        if c in wiki.columns
    ],
    empty="The wiki logged no SCIM request about this user (by SCIM id, externalId or userName).",
)

st.subheader("Support pack")
st.caption(
    "Everything above for this user in one file, for a ticket: ids, scope, wiki state, verdict, "
    "when it will be provisioned, the recommended fix and who owns it; then events, steps, "
    "modified properties and wiki requests (formula-neutralised)."
)
filters, at = ctx.filters.to_filters(), data.now()
name = f"provlens-support-{views.safe_file_part(subject)}-{at.strftime('%Y-%m-%d')}"
pack_cols = st.columns(2)
with pack_cols[0]:
    st.download_button(
        "Download support pack (zip)",
        # Built only when clicked (it estimates when the user will be provisioned).
        data=lambda: export.support_pack_zip(
            service.support_pack(ctx.store_path, chosen, filters, at)
        ),
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
        data=lambda: export.xlsx_bytes(service.support_pack(ctx.store_path, chosen, filters, at)),
        file_name=f"{name}.xlsx",
        mime="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        icon=":material/table_view:",
        key="users_support_pack_xlsx",
        on_click="ignore",
    )
