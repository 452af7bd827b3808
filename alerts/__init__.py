"""Alerts: rules over registered reports, alert state in the store, delivery to people.

``rules`` turns report results into findings, ``state`` compares them with the stored ``alerts``
table (fire once per rule and subject, announce a resolution once, retry what was not
delivered), ``delivery`` sends Teams cards, webhook posts and Graph mail, ``config`` reads the
TOML file. :func:`run` is one `provlens alert` run; it stores its changes in one batch after
delivering, so a crash in between re-delivers (at least once) rather than losing an alert.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from alerts import rules as rules_mod
from alerts import state
from alerts.config import Config
from alerts.delivery import Target, deliver
from ingest.store import Store
from reports import Inputs


@dataclass
class RunResult:
    """What a run did: rows raised or resolved, rows delivered again, errors, still firing."""

    changes: pd.DataFrame
    retried: pd.DataFrame
    still_firing: int
    rules: list[str]
    errors: list[str] = field(default_factory=list)
    pending: int = 0  # rows some target still lacks after this run


def load_inputs(store: Store, rule_names: list[str]) -> Inputs:
    """Return the inputs the rules' reports read, plus the stored alerts, from ``store``."""
    tables = set(rules_mod.tables_for(rule_names)) | {"alerts"}
    return Inputs.from_tables({t: store.read(t) for t in sorted(tables)})


def run(
    store: Store,
    config: Config,
    targets: list[Target],
    now: pd.Timestamp,
    *,
    dry_run: bool = False,
) -> RunResult:
    """Evaluate the rules on ``store``, deliver what is new or pending, store the new state."""
    names = rules_mod.active_rules(config)
    inputs = load_inputs(store, names)
    findings, evaluated = rules_mod.evaluate(inputs, config, now, names)
    p = state.plan(inputs.alerts, findings, evaluated, now)
    if dry_run:
        return RunResult(p.changes(), p.retry, p.still_firing, evaluated)
    # Without targets the run's output is the delivery; rows pending for earlier targets wait.
    outgoing = p.outgoing() if targets else p.changes()
    sent, errors = deliver(targets, outgoing, config)
    state.store_rows(store, sent)
    n_new = len(p.raised) + len(p.resolved)
    changes = sent.iloc[:n_new].reset_index(drop=True)
    retried = sent.iloc[n_new:].reset_index(drop=True)
    pending = int(sent["delivery_pending"].fillna(False).astype(bool).sum()) if len(sent) else 0
    return RunResult(changes, retried, p.still_firing, evaluated, errors, pending)
