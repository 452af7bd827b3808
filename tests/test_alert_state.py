"""Alert state over many runs (property tests) and the config parser on arbitrary input."""

from __future__ import annotations

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from alerts.config import RULE_NAMES, parse
from alerts.rules import Finding
from alerts.state import current, plan
from ingest.errors import UsageError
from ingest.schema import conform, empty_frame

SUBJECTS = ("j1", "j2", "u1")
RULES = ("stalled", "quarantine")
T0 = pd.Timestamp("2026-11-20T00:00:00Z")


def finding(rule: str, subject: str) -> Finding:
    return Finding(rule, subject, "warning", f"{rule} {subject}", {"n": 1}, "")


def upsert(stored: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """What the store does with a batch: last write wins on (alert_id, raised_at)."""
    both = pd.concat([stored, rows], ignore_index=True) if not stored.empty else rows
    return conform("alerts", both.drop_duplicates(["alert_id", "raised_at"], keep="last"))


runs = st.lists(
    st.sets(st.tuples(st.sampled_from(RULES), st.sampled_from(SUBJECTS))), min_size=1, max_size=8
)


@settings(max_examples=40, deadline=None)
@given(runs)
def test_fires_once_until_resolved_and_resolves_once(history) -> None:
    stored = empty_frame("alerts")
    previous: set[str] = set()
    for i, conditions in enumerate(history):
        now = T0 + pd.Timedelta(hours=i)
        found = [finding(r, s) for r, s in conditions]
        p = plan(stored, found, RULES, now)
        ids = {f.alert_id for f in found}
        assert set(p.raised["alert_id"]) == ids - previous
        assert set(p.resolved["alert_id"]) == previous - ids
        assert (p.resolved["resolved_at"] == now).all()
        stored = upsert(stored, p.changes())
        latest = current(stored)
        firing = set(latest.loc[latest["state"] == "firing", "alert_id"])
        assert firing == ids
        # every firing ever raised is still there: one row per (alert, raised_at)
        assert len(stored) == sum(
            len(
                {f"{r}:{s}" for r, s in c}
                - (set() if j == 0 else {f"{r}:{s}" for r, s in history[j - 1]})
            )
            for j, c in enumerate(history[: i + 1])
        )
        previous = ids


def test_rules_not_evaluated_keep_their_alerts() -> None:
    stored = plan(empty_frame("alerts"), [finding("stalled", "j1")], RULES, T0).changes()
    p = plan(stored, [], ["quarantine"], T0 + pd.Timedelta(hours=1))
    assert p.resolved.empty and p.raised.empty


values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 10**6)
    | st.floats(allow_nan=True)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)
rule_tables = st.dictionaries(
    st.sampled_from([*RULE_NAMES, "nope"]),
    st.dictionaries(
        st.sampled_from(
            ["enabled", "severity", "factor", "min_failures", "levels", "intervals", "x"]
        ),
        values,
        max_size=3,
    ),
    max_size=3,
)
documents = st.fixed_dictionaries(
    {},
    optional={
        "rules": rule_tables | values,
        "targets": st.dictionaries(
            st.sampled_from(["webhook", "teams", "mail_to", "mail_from", "y"]), values, max_size=2
        ),
        "delivery": st.dictionaries(
            st.sampled_from(["attempts", "backoff_s", "z"]), values, max_size=2
        ),
        "dashboard_url": values,
        "sources": values,
    },
)


@settings(max_examples=150, deadline=None)
@given(documents)
def test_config_parser_accepts_or_names_the_problem(doc) -> None:
    try:
        cfg = parse(doc, "alerts.toml")
    except UsageError as exc:
        assert str(exc).startswith("alerts.toml")
        assert "\n" not in str(exc)
        return
    for name in RULE_NAMES:
        assert cfg.rule(name)["severity"] in ("info", "warning", "critical")
    assert cfg.delivery.attempts >= 1
