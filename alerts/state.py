"""Alert state: which findings are new, which firing alerts cleared, what is still undelivered.

The ``alerts`` table keeps one row per firing (key: ``alert_id`` + ``raised_at``). A rule fires
once per ``(rule, subject)`` until the condition clears; then that row becomes ``resolved``
(announced once). ``delivery_pending`` stays True while a configured target still has to
receive the row's current state; the next run retries it. A rule that was not evaluated this run
(disabled, or its report is not available) leaves its alerts as they are.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import pandas as pd

from alerts.rules import Finding
from ingest.schema import TABLES, conform
from ingest.store import Store

COLUMNS = TABLES["alerts"].names


@dataclass
class Plan:
    """What one run changes: new firings, resolutions, and earlier rows to deliver again."""

    raised: pd.DataFrame
    resolved: pd.DataFrame
    retry: pd.DataFrame
    still_firing: int = 0
    notes: list[str] = field(default_factory=list)

    def changes(self) -> pd.DataFrame:
        """Return the rows raised or resolved by this run (what ``alert --format json`` prints)."""
        return _concat([self.raised, self.resolved])

    def outgoing(self) -> pd.DataFrame:
        """Return every row a target may still need: new, resolved, and pending from before."""
        return _concat([self.raised, self.resolved, self.retry])


def _concat(frames: Iterable[pd.DataFrame]) -> pd.DataFrame:
    parts = [f for f in frames if not f.empty]
    if not parts:
        return conform("alerts", pd.DataFrame(columns=COLUMNS))
    return conform("alerts", pd.concat(parts, ignore_index=True))


def current(stored: pd.DataFrame) -> pd.DataFrame:
    """Return the latest row of each alert id (its current state)."""
    if stored.empty:
        return stored
    ordered = stored.sort_values("raised_at", kind="stable")
    return ordered.drop_duplicates("alert_id", keep="last").reset_index(drop=True)


def plan(
    stored: pd.DataFrame,
    findings: list[Finding],
    evaluated: Iterable[str],
    now: pd.Timestamp,
) -> Plan:
    """Return what to raise, resolve and retry, given the stored alerts and this run's findings."""
    latest = current(stored)
    firing = latest.loc[(latest["state"] == "firing").fillna(False).astype(bool)]
    firing_ids = set(firing["alert_id"])
    found: dict[str, Finding] = {}
    for f in findings:
        found.setdefault(f.alert_id, f)  # a rule names a subject once; keep the first if not
    raised_rows = [
        {
            "alert_id": f.alert_id,
            "rule": f.rule,
            "subject": f.subject,
            "severity": f.severity,
            "state": "firing",
            "raised_at": now,
            "resolved_at": None,
            "summary": f.summary,
            "detail": f.detail_json(),
            "link": f.link,
            "delivered_to": "",
            "delivery_pending": False,
        }
        for aid, f in found.items()
        if aid not in firing_ids
    ]
    evaluated = set(evaluated)
    cleared = firing.loc[
        firing["rule"].isin(evaluated).fillna(False).astype(bool)
        & ~firing["alert_id"].isin(list(found)).fillna(False).astype(bool)
    ].copy()
    cleared["state"] = "resolved"
    cleared["resolved_at"] = now
    cleared["delivered_to"] = ""  # the resolution is a new announcement for every target
    cleared["delivery_pending"] = False
    touched = set(cleared["alert_id"])
    pending = stored.loc[stored["delivery_pending"].fillna(False).astype(bool)]
    retry = pending.loc[~pending["alert_id"].isin(list(touched)).fillna(False).astype(bool)]
    # A firing row whose alert resolves now is announced through its resolution; an older
    # firing of the same id still pending is superseded by the new state too.
    return Plan(
        raised=conform("alerts", pd.DataFrame(raised_rows, columns=COLUMNS)),
        resolved=conform("alerts", cleared),
        retry=conform("alerts", retry),
        still_firing=len(firing_ids & set(found)),
    )


def store_rows(store: Store, rows: pd.DataFrame) -> None:
    """Write ``rows`` to the store's alerts table in one all-or-nothing batch."""
    if rows.empty:
        return
    with store.batch(source="alert", detail=f"{len(rows)} alerts") as batch:
        batch.add({"alerts": rows})
