"""Export: any report (or events_flat) with the current filters, as CSV, JSON or Excel.

Figures are rounded to 3 decimals; file names carry the subject and the date:
``provlens-<report>[-<user>]-<YYYY-MM-DD>.<ext>``. Text cells starting with = + - @ get a leading
' so spreadsheets never run them.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from dashboard import data, ui, views
from dashboard.sidebar import context
from reports import REPORTS, ReportResult, export

FLAT = "events_flat"
NEEDS_USER = ("timeline", "diagnosis")

ctx = context()
ui.header(
    "Export",
    ctx,
    "Any report with the sidebar's filters, as the CLI's `provlens report NAME` would give it "
    "(events_flat as `provlens export events_flat`). Cells starting with = + - @ are prefixed "
    "with ' so spreadsheets do not run them.",
)

names = [*sorted(REPORTS), FLAT]
descriptions = {n: REPORTS[n].description for n in REPORTS} | {
    FLAT: "Every event with its steps and modified properties as text columns (one file)."
}
name = st.selectbox(
    "Report",
    names,
    index=names.index("failures") if "failures" in names else 0,
    format_func=lambda n: f"{n} — {descriptions[n]}",
    key="export_report",
)
params: dict[str, object] = {}
subject = name
if name in NEEDS_USER:
    user = st.text_input("User (object id, UPN or display name)", key="export_user")
    if not user.strip():
        st.info(f"The {name} report needs a user.")
        st.stop()
    params["user"] = user.strip()
    subject = f"{name}-{views.safe_file_part(user.strip())}"

with st.spinner("Building the export…"):
    if name == FLAT:
        frame = data.events_flat(str(ctx.store_path), ctx.version, ctx.filters.key(), ctx.filters)
        full = ReportResult(frame=frame)
        shape = "rows"
    else:
        result = ctx.report(name, **params)
        if REPORTS[name].noise:
            ui.noise_note(result.hidden_noise)
        full = export.rounded_result(ReportResult(result.frame, result.data, result.hidden_noise))
        shape = REPORTS[name].shape
preview = full.frame if full.frame is not None else export.object_frame(full.data or {})
st.caption(f"{len(preview):,} row(s)")
st.dataframe(
    # Mixed values (an object's key/value rows) shown as text: no Arrow conversion errors.
    export.display_frame(preview.head(500)),
    hide_index=True,
    width="stretch",
    column_config=ui.column_settings(preview, None),
    key="export_preview",
)
if len(preview) > 500:
    st.caption("Preview shows the first 500 rows; the downloads hold all of them.")

stem = f"provlens-{subject}-{data.now().strftime('%Y-%m-%d')}"
cols = st.columns(3)
FORMATS = (
    ("csv", "Download CSV", "text/csv", ":material/download:"),
    ("json", "Download JSON", "application/json", ":material/data_object:"),
    (
        "xlsx",
        "Download Excel (XLSX)",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        ":material/table_view:",
    ),
)


def _renderer(fmt: str) -> Callable[[], bytes]:
    """Return a callable building the file only when its button is clicked."""
    return lambda: export.render(name, full, fmt, shape)


for col, (fmt, label, mime, icon) in zip(cols, FORMATS, strict=True):
    with col:
        st.download_button(
            label,
            data=_renderer(fmt),
            file_name=f"{stem}.{fmt}",
            mime=mime,
            type="primary" if fmt == "csv" else "secondary",
            icon=icon,
            key=f"export_{fmt}",
            on_click="ignore",
        )
st.caption(f"Files are named {stem}.csv / .json / .xlsx.")
