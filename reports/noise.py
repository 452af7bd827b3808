"""Noise: events that say nothing a person needs to act on, hidden by default in user reports.

Per DESIGN "noise": skipped events whose skip reason says the object is out of scope
(``NotEffectivelyEntitled`` and kin), and updates whose only modified property is a no-op
``accountDisabled`` (Entra logs it on updates whether or not it changed, with a null old value).
"""

from __future__ import annotations

import pandas as pd

from reports.inputs import isin

# Lower-cased skip reasons meaning "this object is not in the app's scope".
OUT_OF_SCOPE_SKIP_REASONS: frozenset[str] = frozenset(
    {
        "noteffectivelyentitled",
        "notentitled",
        "outofscope",
        "notinscope",
        "scopingfilternotsatisfied",
        "scopingfilterevaluationfailed",
        "entrysynchronizationskipped",
    }
)


def _noisy_reasons(reasons: pd.Series) -> pd.Series:
    folded = reasons.astype("str").str.lower().str.replace(r"[\s_\-]", "", regex=True)
    known = folded.isin(OUT_OF_SCOPE_SKIP_REASONS)
    kin = folded.str.contains("entitled", regex=False) | folded.str.contains("outofscope")
    return (known | kin).fillna(False).astype(bool)


def is_noise_skip_reason(reason: pd.Series) -> pd.Series:
    """Return True where a skip reason says the object is out of scope."""
    distinct = pd.Series(reason.dropna().unique(), dtype="str")
    return isin(reason.astype("str"), distinct[_noisy_reasons(distinct)])


def noop_account_disabled_events(modified_properties: pd.DataFrame) -> pd.Index:
    """Return ids of events whose only modified property is a no-op ``accountDisabled``."""
    mp = modified_properties
    if mp.empty:
        return pd.Index([], dtype="str")
    # Fold the few distinct names, not every row (millions of properties at 1M events).
    names = pd.Series(mp["name"].dropna().unique(), dtype="str")
    named = isin(mp["name"].astype("str"), names[names.str.lower() == "accountdisabled"])
    candidates = mp.loc[named.astype(bool), "event_id"]
    if candidates.empty:
        return pd.Index([], dtype="str")
    # Events with any other modified property are real changes.
    related = mp.loc[isin(mp["event_id"], candidates), "event_id"]
    single = related.loc[~related.duplicated(keep=False)]
    only = mp.loc[single.index]
    name_ok = named.loc[single.index]
    old = only["old_value"].astype("str").str.lower()
    new = only["new_value"].astype("str").str.lower()
    noop = old.isna() | (old == new)
    return pd.Index(only.loc[(name_ok & noop).fillna(False).astype(bool), "event_id"].unique())


def noise_mask(
    events: pd.DataFrame,
    modified_properties: pd.DataFrame,
    steps: pd.DataFrame | None = None,
) -> pd.Series:
    """Return a boolean Series (aligned to ``events``) that is True for noise events.

    The rule is reports.model.event_noise; ``steps`` let it tell a scoping-filter skip of an
    assigned user (an answer, not noise) from an out-of-scope skip.
    """
    from ingest.schema import empty_frame
    from reports.model import event_noise

    st = steps if steps is not None else empty_frame("steps")
    part = event_noise(events, st, modified_properties)
    flags = isin(events["id"], part.loc[part["noise"], "event_id"]).to_numpy(bool)
    return pd.Series(flags, index=events.index, name="noise")
