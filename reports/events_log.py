"""events: every provisioning event like the portal's log, and one event's details pane.

:func:`build` returns the filtered events newest first (``change``, ``cycle``, ``user`` and a
free-text ``search`` narrow them; noise hidden unless asked). With ``event`` (an event id), or
when the filters leave exactly one event, ``data["details"]`` holds that event's pane as the
Entra admin center shows it: summary, steps, troubleshooting and recommendation, modified
properties.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from reports import Filters, Inputs, ReportResult
from reports.inputs import casefold, isin
from reports.model import drop_noise_events, model_of

COLUMNS = [
    "activity_at",
    "service_principal_name",
    "action",
    "status",
    "source_name",
    "source_upn",
    "target_name",
    "error_code",
    "error_reason",
    "skip_reason",
    "cycle_id",
    "change_id",
    "id",
    "job_id",
    "source_id",
    "target_id",
    "service_principal_id",
]
SUMMARY_FIELDS = (
    "activity_at",
    "status",
    "action",
    "service_principal_name",
    "service_principal_id",
    "job_id",
    "cycle_id",
    "change_id",
    "id",
    "source_name",
    "source_upn",
    "source_id",
    "source_type",
    "target_name",
    "target_id",
    "target_type",
    "duration_ms",
)
SEARCH_COLUMNS = ("source_name", "source_upn", "target_name", "source_id", "target_id", "id")


def _match(events: pd.DataFrame, column: str, value: str | None) -> pd.Series | None:
    if not value:
        return None
    return isin(events[column], [value.strip()])


def select_events(
    events: pd.DataFrame,
    *,
    change: str | None = None,
    cycle: str | None = None,
    user: str | None = None,
    search: str | None = None,
) -> pd.DataFrame:
    """Return the events with this change id, cycle id, user and free text (all that are given)."""
    keep = pd.Series(True, index=events.index)
    for column, value in (("change_id", change), ("cycle_id", cycle)):
        hit = _match(events, column, value)
        if hit is not None:
            keep &= hit
    if user:
        from reports.users import match_user

        keep &= match_user(events, user)
    if search and search.strip():
        wanted = search.strip().casefold()
        any_hit = pd.Series(False, index=events.index)
        for column in SEARCH_COLUMNS:
            if column in events.columns:
                text = casefold(events[column])
                any_hit |= text.str.contains(wanted, regex=False).fillna(False).astype(bool)
        keep &= any_hit
    return events if bool(keep.all()) else events.loc[keep]


def _value(value: Any) -> Any:
    from reports.export import jsonable

    return jsonable(value)


def details(inputs: Inputs, event_id: str) -> dict[str, Any] | None:
    """Return one event's details pane (None when no event has that id)."""
    from reports.owners import documented_action, owners

    ev = inputs.events.loc[isin(inputs.events["id"], [event_id])]
    if ev.empty:
        return None
    row = ev.iloc[0]
    summary = {f: _value(row[f]) for f in SUMMARY_FIELDS if f in ev.columns}
    steps = inputs.steps.loc[isin(inputs.steps["event_id"], [event_id])].sort_values(
        "position", kind="stable"
    )
    mods = inputs.modified_properties.loc[isin(inputs.modified_properties["event_id"], [event_id])]
    code = ev["error_code"].astype("str")
    has_error = pd.notna(row.get("error_code"))
    recommended = row.get("recommended_action")
    if has_error and (recommended is None or pd.isna(recommended)):
        recommended = documented_action(code).iloc[0]
    troubleshooting = {
        "error_code": _value(row.get("error_code")),
        "error_category": _value(row.get("error_category")),
        "reason": _value(row.get("error_reason")),
        "additional_details": _value(row.get("error_additional_details")),
        "skip_reason": _value(row.get("skip_reason")),
        "failed_step": _value(row.get("failed_step")),
        "recommended_action": _value(recommended),
        "fix_owner": owners(code, ev["error_category"].astype("str")).iloc[0]
        if has_error
        else None,
    }
    return {
        "summary": summary,
        "steps": [
            {k: _value(v) for k, v in r.items()}
            for r in steps[["position", "name", "step_type", "status", "description"]].to_dict(
                "records"
            )
        ],
        "troubleshooting": troubleshooting,
        "modified_properties": [
            {k: _value(v) for k, v in r.items()}
            for r in mods[["name", "old_value", "new_value"]].to_dict("records")
        ],
    }


def build(
    inputs: Inputs,
    filters: Filters,
    *,
    include_noise: bool = False,
    now: pd.Timestamp | None = None,
    change: str | None = None,
    cycle: str | None = None,
    user: str | None = None,
    search: str | None = None,
    event: str | None = None,
    limit: int | str = 5000,
    **params: Any,
) -> ReportResult:
    """Return matching events newest first (at most ``limit``) and, for one event, its details.

    A change or cycle id finds its events whatever the time filter says (a link pasted into a
    ticket must open its subject), but app/job/action/status filters still apply.
    """
    events = inputs.events
    if change or cycle:
        filters = Filters(
            service_principal_ids=filters.service_principal_ids,
            job_ids=filters.job_ids,
            actions=filters.actions,
            statuses=filters.statuses,
        )
    ev = select_events(
        filters.apply_events(events), change=change, cycle=cycle, user=user, search=search
    )
    hidden = 0
    if not (change or event):
        ev, hidden = drop_noise_events(ev, model_of(inputs), include_noise)
    ev = ev.sort_values(["activity_at", "id"], ascending=False, kind="stable")
    total = len(ev)
    frame = ev[[c for c in COLUMNS if c in ev.columns]].head(int(limit)).reset_index(drop=True)
    chosen = event or (str(frame["id"].iloc[0]) if total == 1 else None)
    data: dict[str, Any] = {
        "matches": total,
        "shown": len(frame),
        "details": details(inputs, chosen) if chosen else None,
    }
    return ReportResult(frame=frame, data=data, hidden_noise=hidden)
