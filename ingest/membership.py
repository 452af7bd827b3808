"""Direct versus nested group membership, decided across every members list known at once.

Entra provisions direct members of an assigned group only. A transitiveMembers list does not say
how a member is reached, so DESIGN.md's rule applies: a transitive member is direct unless it is
reachable through a nested group whose own members are also known. One members file cannot know
that; the batch (and the store) can, so file ingest derives ``direct`` here over all of them.
"""

from __future__ import annotations

import pandas as pd

from ingest import schema


def derive_direct(batch: pd.DataFrame, stored: pd.DataFrame | None = None) -> pd.DataFrame:
    """Return ``batch`` (group_members rows) with ``direct`` derived from all known lists.

    ``stored`` supplies member lists of nested groups that this batch does not carry.
    """
    if batch.empty:
        return batch
    known = batch
    if stored is not None and not stored.empty:
        extra = stored.loc[~stored["group_id"].isin(batch["group_id"])]
        known = pd.concat([batch, extra], ignore_index=True)
    known_groups = pd.Index(known["group_id"].unique())
    # (G, N): groups N nested in G whose own member lists are known.
    nested = batch.loc[
        (batch["member_type"] == "group")
        & batch["member_id"].isin(known_groups)
        & (batch["member_id"] != batch["group_id"]),
        ["group_id", "member_id"],
    ].rename(columns={"member_id": "nested_id"})
    via = nested.merge(
        known[["group_id", "member_id"]].rename(columns={"group_id": "nested_id"}),
        on="nested_id",
    )[["group_id", "member_id"]].drop_duplicates()
    via["_via"] = True
    out = batch.merge(via, on=["group_id", "member_id"], how="left")
    # Reached through a known nested list: nested. Otherwise the flag the parser gave stands.
    out["direct"] = out["direct"].fillna(True).astype(bool) & ~out["_via"].fillna(False).astype(
        bool
    )
    return schema.conform("group_members", out.drop(columns=["_via"]))


def carry_first_seen(
    batch: pd.DataFrame, stored: pd.DataFrame | None, seen_at: pd.Timestamp
) -> pd.DataFrame:
    """Return ``batch`` (group_members rows) with ``first_seen_at`` filled in.

    A member the stored snapshot of its group already lists keeps that snapshot's
    ``first_seen_at`` (the first snapshot listing it); a member new to its group was first seen
    in this snapshot, taken at ``seen_at``. A value the batch already carries is kept.
    """
    if batch.empty:
        return batch
    first = pd.Series(pd.Timestamp(seen_at), index=batch.index).astype(schema.DTYPES[schema.TIME])
    if stored is not None and not stored.empty and "first_seen_at" in stored.columns:
        known = stored.dropna(subset=["first_seen_at"]).drop_duplicates(
            ["group_id", "member_id"], keep="first"
        )
        prior = batch[["group_id", "member_id"]].merge(
            known[["group_id", "member_id", "first_seen_at"]],
            on=["group_id", "member_id"],
            how="left",
        )["first_seen_at"]
        first = prior.set_axis(batch.index).fillna(first)
    out = batch.copy()
    if "first_seen_at" in out.columns:
        first = out["first_seen_at"].fillna(first)
    out["first_seen_at"] = first
    return schema.conform("group_members", out)
