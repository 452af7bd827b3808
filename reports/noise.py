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


def is_noise_skip_reason(reason: pd.Series) -> pd.Series:
    """Return True where a skip reason says the object is out of scope (the model's rule,
    reports.model_sql.noise_skip_reason_sql, asked of the few distinct reasons)."""
    import duckdb

    from reports.model_sql import noise_skip_reason_sql

    distinct = pd.DataFrame({"reason": pd.Series(reason.dropna().unique(), dtype="str")})
    if distinct.empty:
        return pd.Series(False, index=reason.index)
    con = duckdb.connect()
    try:
        con.register("reasons", distinct)
        rule = noise_skip_reason_sql("reason")
        noisy = con.sql(f"SELECT reason FROM reasons WHERE {rule}").fetchnumpy()["reason"]  # noqa: S608
    finally:
        con.close()
    return isin(reason.astype("str"), pd.Series(noisy, dtype="str"))


def noise_mask(
    events: pd.DataFrame,
    modified_properties: pd.DataFrame,
    steps: pd.DataFrame | None = None,
) -> pd.Series:
    """Return a boolean Series (aligned to ``events``) that is True for noise events.

    The rule is the model's noise part (reports.model.event_noise); ``steps`` let it tell a
    scoping-filter skip of an assigned user (an answer, not noise) from an out-of-scope skip.
    """
    from ingest.schema import empty_frame
    from reports.model import event_noise

    st = steps if steps is not None else empty_frame("steps")
    part = event_noise(events, st, modified_properties)
    flags = isin(events["id"], part.loc[part["noise"], "event_id"]).to_numpy(bool)
    return pd.Series(flags, index=events.index, name="noise")
