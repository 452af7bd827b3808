"""Drawing helpers shared by the pages: headers, tables with CSV download, empty states.

User-supplied text (display names, UPNs, error text from logs) only ever goes through
``st.dataframe``, ``st.text``/``st.code``, metric values or widget options, which Streamlit shows
as plain text, and into Plotly labels through :func:`views.plot_escape`; never through Markdown
or ``unsafe_allow_html``.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import data, views
from dashboard.sidebar import Context
from reports import export

log = logging.getLogger(__name__)

# One palette for statuses across pages, so "failure" is always the same red.
STATUS_COLORS = {
    "success": "#16a34a",
    "failure": "#dc2626",
    "skipped": "#9ca3af",
    "warning": "#f59e0b",
    "unknown": "#6b7280",
}
# Actions get their own hues (none of the status colours), so a colour means one thing per chart.
ACTION_COLORS = {
    "create": "#2563eb",
    "update": "#0891b2",
    "delete": "#7c3aed",
    "disable": "#db2777",
    "staged_delete": "#a16207",
    "other": "#64748b",
    "unknown": "#94a3b8",
}
CATEGORY_COLORS = views.CATEGORY_COLORS
KIND_COLORS = {"initial": "#7c3aed", "incremental": "#2563eb", "unknown": "#9ca3af"}


def header(title: str, ctx: Context, caption: str | None = None) -> None:
    """Draw the page title, the DEMO DATA label when applicable, and a caption."""
    st.title(title)
    if ctx.options.is_demo:
        st.badge("DEMO DATA", icon=":material/science:", color="orange")
    if caption:
        st.caption(caption)


def noise_note(hidden: int) -> None:
    """Say how many noise rows the report hid (the sidebar toggle shows them)."""
    if hidden:
        st.caption(
            f"{hidden:,} out-of-scope / no-op events hidden — turn off "
            "“Hide out-of-scope noise” in the sidebar to include them."
        )


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """Return ``frame`` as formula-neutralised CSV (reports.export, as the CLI writes it)."""
    return export.csv_bytes(frame)


def time_columns(frame: pd.DataFrame) -> dict[str, Any]:
    """Return column settings showing the frame's UTC timestamps as `YYYY-MM-DD HH:mm:ss`."""
    return {
        str(name): st.column_config.DatetimeColumn(str(name), format="YYYY-MM-DD HH:mm:ss")
        for name, dtype in frame.dtypes.items()
        if isinstance(dtype, pd.DatetimeTZDtype)
    }


def column_settings(
    frame: pd.DataFrame, column_config: dict[str, Any] | None, shown: pd.DataFrame | None = None
) -> dict[str, Any]:
    """Return column settings: readable headers, UTC times, wide text columns, narrow ids.

    ``shown``: the frame as drawn (views.for_display), whose time columns with a missing time
    are text."""
    config: dict[str, Any] = {}
    for name, dtype in frame.dtypes.items():
        label = views.column_label(str(name))
        if isinstance(dtype, pd.DatetimeTZDtype):
            as_text = shown is not None and not isinstance(shown[name].dtype, pd.DatetimeTZDtype)
            config[str(name)] = (
                st.column_config.TextColumn(f"{label} (UTC)")
                if as_text
                else st.column_config.DatetimeColumn(f"{label} (UTC)", format="YYYY-MM-DD HH:mm:ss")
            )
        elif str(name) in views.WIDE_COLUMNS:
            config[str(name)] = st.column_config.TextColumn(label, width="large")
        elif str(name) == "id" or str(name).endswith("_id"):
            config[str(name)] = st.column_config.TextColumn(label, width="small")
        else:
            config[str(name)] = st.column_config.Column(label)
    return config | (column_config or {})


def table(
    frame: pd.DataFrame | None,
    name: str,
    *,
    key: str | None = None,
    height: int | Literal["auto"] = "auto",
    column_config: dict[str, Any] | None = None,
    column_order: list[str] | None = None,
    empty: str = "Nothing to show for the current filters.",
    select: bool = False,
) -> Any:
    """Draw ``frame`` as a table with a CSV download button named ``<name>.csv``.

    Headers are readable, names come before ids, empty text cells read `—`. With ``select``, one
    row can be picked; the selection event is returned.
    """
    if frame is None or frame.empty:
        st.info(empty)
        return None
    order = column_order or views.names_first([str(c) for c in frame.columns])
    shown = views.for_display(frame) if len(frame) <= 50_000 else frame
    settings = column_settings(frame, column_config, shown)
    event: Any = None
    if select:
        event = st.dataframe(
            shown,
            hide_index=True,
            width="stretch",
            height=height,
            column_config=settings,
            column_order=order,
            key=f"df_{key or name}",
            on_select="rerun",
            selection_mode="single-row",
        )
    else:
        st.dataframe(
            shown,
            hide_index=True,
            width="stretch",
            height=height,
            column_config=settings,
            column_order=order,
            key=f"df_{key or name}",
        )
    st.download_button(
        "Download CSV",
        # A callable: the CSV is only built when someone clicks, not on every rerun.
        data=lambda: csv_bytes(frame),
        file_name=f"{name}.csv",
        mime="text/csv",
        key=f"dl_{key or name}",
        icon=":material/download:",
        on_click="ignore",
    )
    return event


def selected_row(event: Any, frame: pd.DataFrame | None) -> pd.Series | None:
    """Return the row picked in a ``table(..., select=True)``, or None."""
    if event is None or frame is None:
        return None
    rows = list(getattr(getattr(event, "selection", None), "rows", []) or [])
    if not rows or rows[0] >= len(frame):
        return None
    return frame.iloc[rows[0]]


def chart(fig: go.Figure, key: str) -> None:
    """Draw a Plotly figure full width with provlens' layout defaults."""
    fig.update_layout(
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
    )
    # No template: Streamlit's chart theme follows the viewer's light or dark preference.
    st.plotly_chart(fig, width="stretch", key=key, config={"displaylogo": False})


def vega(frame: pd.DataFrame, spec: dict[str, Any], key: str) -> None:
    """Draw a Vega-Lite chart (``views.time_bars``/``time_points``) full width, in Streamlit's
    theme (light or dark as the viewer prefers)."""
    # usermeta is Vega-Lite's free slot for the application: the chart's name, for tests.
    st.vega_lite_chart(frame, spec | {"usermeta": {"provlens": key}}, width="stretch", key=key)


def fmt_duration(seconds: float | None) -> str:
    """Return ``seconds`` as `1 h 05 min`, `12 min`, `45 s` or `—`."""
    if seconds is None or pd.isna(seconds):
        return "—"
    s = float(seconds)
    if s < 60:
        return f"{s:.0f} s"
    minutes = s / 60
    if minutes < 60:
        return f"{minutes:.1f} min"
    hours, rest = divmod(round(minutes), 60)
    if hours < 48:
        return f"{hours} h {rest:02d} min"
    return f"{hours / 24:.1f} days"


def fmt_time(ts: Any) -> str:
    """Return a timestamp as `2026-11-20 10:15 UTC`, or `—`."""
    if ts is None or (not isinstance(ts, str) and pd.isna(ts)):
        return "—"
    return pd.Timestamp(ts).tz_convert("UTC").strftime("%Y-%m-%d %H:%M UTC")


def fmt_pct(fraction: float | None) -> str:
    """Return a 0-1 fraction as a percentage with one decimal, or `—`."""
    if fraction is None or pd.isna(fraction):
        return "—"
    return f"{100 * float(fraction):.1f} %"


def _run_demo() -> Path | None:
    """Run `provlens demo --no-dashboard` and return the store it wrote (None on failure)."""
    proc = subprocess.run(
        [sys.executable, "-m", "provlens", "demo", "--no-dashboard"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=Path(__file__).resolve().parent.parent,
    )
    if proc.returncode != 0:
        st.error("The demo did not run:")
        st.code(proc.stderr.strip()[-2000:] or f"exit code {proc.returncode}", language=None)
        return None
    for line in reversed(proc.stdout.splitlines()):
        candidate = Path(line.strip().split()[-1]) if line.strip() else None
        if candidate is not None and candidate.is_dir():
            return candidate
    st.error("The demo ran but did not print its store path.")
    return None


def empty_state(ctx: Context) -> None:
    """Explain how to fill an empty store, and offer to load the demo."""
    st.title("provlens")
    st.subheader("No provisioning data in this store yet")
    st.text(f"Store: {ctx.store_path}")
    st.markdown("Fill it with one of these commands, then press **Refresh data** in the sidebar:")
    st.code(
        "# Entra provisioning logs, job status and scope, straight from Microsoft Graph\n"
        "provlens ingest graph --service-principal-id <app-object-id> --days 30\n\n"
        "# or downloaded files (portal JSON/CSV, Log Analytics export, job status, SCIM audit)\n"
        "provlens ingest file provisioning-logs.json jobs-<spId>.json scim-audit.jsonl\n\n"
        "# the wiki's SCIM side (token in PROVLENS_SCIM_TOKEN)\n"
        "provlens ingest scim --scim-url https://<subdomain>.theorgwiki.com/api/v2/scim/v2/",
        language="bash",
    )
    st.markdown("Or look around with generated data first (it goes to a separate demo store):")
    if st.button("Load the demo", type="primary", icon=":material/science:"):
        with st.spinner("Generating a demo tenant… (about a minute)"):
            path = _run_demo()
        if path is not None:
            st.session_state[data.OVERRIDE_KEY] = str(path)
            data.clear_caches()
            st.rerun()


def kpi(label: str, value: str, help: str | None = None, note: str | None = None) -> None:
    """Draw one KPI tile; ``note`` is a small grey line under the value."""
    st.metric(
        label,
        value,
        delta=note,
        delta_color="off",
        delta_arrow="off",
        help=help,
        border=True,
    )


def kpi_time(label: str, ts: Any, help: str | None = None) -> None:
    """Draw a KPI tile for a point in time: `09:05 UTC` with its date underneath."""
    if ts is None or (not isinstance(ts, str) and pd.isna(ts)):
        kpi(label, "—", help)
        return
    t = pd.Timestamp(ts).tz_convert("UTC")
    kpi(label, t.strftime("%H:%M UTC"), help, note=t.strftime("%a %Y-%m-%d"))


def with_link(
    frame: pd.DataFrame | None, label: str, page: str, param: str, *sources: str
) -> tuple[pd.DataFrame | None, dict[str, Any]]:
    """Return ``frame`` with a first column ``open`` linking each row to its subject's page.

    The link is ``<page>?<param>=<first non-empty of sources>`` (e.g. ``users?user=<UPN>``), a
    URL that can go into a ticket; the column config shows it as ``label``.
    """
    if frame is None or frame.empty:
        return frame, {}
    value = pd.Series(pd.NA, index=frame.index, dtype="object")
    for source in sources:
        if source in frame.columns:
            value = value.fillna(frame[source].astype("object").where(frame[source].notna()))
    links = value.map(lambda v: views.link(page, **{param: v}), na_action="ignore")
    out = frame.assign(open=links)
    out = out[["open", *[c for c in frame.columns if c != "open"]]]
    return out, {
        "open": st.column_config.LinkColumn("Open", display_text=label, width="small"),
    }
