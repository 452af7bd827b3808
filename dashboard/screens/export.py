"""Export: any report with the current filters, as CSV or Excel (formula-neutralised)."""

from __future__ import annotations

import streamlit as st

from dashboard import ui
from dashboard.sidebar import context
from reports import REPORTS, ReportResult, export

ctx = context()
ui.header(
    "Export",
    ctx,
    "Any report with the sidebar's filters, as the CLI's `provlens report NAME` would give it. "
    "Cells starting with = + - @ are prefixed with ' so spreadsheets do not run them.",
)

names = sorted(REPORTS)
name = st.selectbox(
    "Report",
    names,
    index=names.index("failures") if "failures" in names else 0,
    format_func=lambda n: f"{n} — {REPORTS[n].description}",
    key="export_report",
)
params: dict[str, object] = {}
if name == "timeline":
    user = st.text_input("User (object id, UPN or display name)", key="export_user")
    if not user.strip():
        st.info("The timeline report needs a user.")
        st.stop()
    params["user"] = user.strip()

result = ctx.report(name, **params)
if REPORTS[name].noise:
    ui.noise_note(result.hidden_noise)
spec = REPORTS[name]
full = ReportResult(result.frame, result.data, result.hidden_noise)
frame = result.frame if result.frame is not None else export.object_frame(result.data or {})
st.caption(f"{len(frame):,} row(s)")
st.dataframe(
    frame.head(500),
    hide_index=True,
    width="stretch",
    column_config=ui.time_columns(frame),
    key="export_preview",
)
if len(frame) > 500:
    st.caption("Preview shows the first 500 rows; the downloads hold all of them.")

left, right = st.columns(2)
with left:
    st.download_button(
        "Download CSV",
        data=lambda: export.render(name, full, "csv", spec.shape),
        file_name=f"provlens-{name}.csv",
        mime="text/csv",
        type="primary",
        icon=":material/download:",
        key="export_csv",
        on_click="ignore",
    )
with right:
    st.download_button(
        "Download Excel (XLSX)",
        data=lambda: export.render(name, full, "xlsx", spec.shape),
        file_name=f"provlens-{name}.xlsx",
        mime="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        icon=":material/table_view:",
        key="export_xlsx",
        on_click="ignore",
    )
