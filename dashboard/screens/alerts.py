"""Alerts: what is firing now and the history, each alert linking to what it is about."""

from __future__ import annotations

import streamlit as st

from dashboard import ui, views
from dashboard.sidebar import context

ctx = context()
ui.header(
    "Alerts",
    ctx,
    "Raised by `provlens alert` (or each round of `provlens watch`): a rule fires once per "
    "subject until its condition clears, and the resolution is announced once. Open a row's "
    "link to see the job, cycle or user it is about.",
)

result = ctx.report("alerts")
alerts = result.frame
counts = (result.data or {}).get("counts") or {}
if alerts is None or alerts.empty:
    st.info(
        "No alerts are stored. Run `provlens alert` to evaluate the rules on this store "
        "(add `--dry-run --format json` to only see what would fire), or schedule "
        "`provlens watch --every 40m` to ingest and alert in rounds; `provlens demo` plants a "
        "few conditions that fire."
    )
    st.stop()

shown = alerts.assign(open=alerts["link"].map(views.deep_link))
columns = ["severity", "rule", "summary", "subject", "raised_at", "open"]
link = {
    "open": st.column_config.LinkColumn("Open", display_text="open", help="The alert's subject"),
    "summary": st.column_config.TextColumn("Summary", width="large"),
}

cols = st.columns(3)
firing = shown.loc[shown["state"] == "firing"]
with cols[0]:
    ui.kpi("Firing", f"{int(counts.get('firing', len(firing))):,}")
with cols[1]:
    ui.kpi("Resolved", f"{int(counts.get('resolved', 0)):,}")
with cols[2]:
    pending = int(shown["delivery_pending"].fillna(False).astype(bool).sum())
    ui.kpi("Delivery pending", f"{pending:,}", "Retried on the next `provlens alert` run.")

st.subheader("Firing")
ui.table(
    firing[[*columns, "delivered_to", "delivery_pending"]].reset_index(drop=True),
    "alerts-firing",
    column_config=link,
    empty="Nothing is firing.",
)

st.subheader("History")
ui.table(
    shown[[*columns, "state", "resolved_at", "delivered_to", "detail"]].reset_index(drop=True),
    "alerts-history",
    column_config=link,
)
