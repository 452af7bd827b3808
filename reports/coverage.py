"""coverage: who should be in the wiki (Entra scope) against who is there, one verdict per user.

Definitions (DESIGN): in scope = assigned directly with a role other than Default Access, or a
*direct* member of a group assigned with such a role. Nested-group members and Default Access
assignments are reported with ``scope_via`` nested_group / default_access, not in scope.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow.compute as pc

from reports import Filters, Inputs, ReportResult
from reports.inputs import (
    casefold,
    isin,
    last_rows,
    latest_scim_snapshot,
    lookup,
    order_events,
    reindex,
    slim,
)
from reports.model_sql import DEFAULT_ACCESS_ROLE, SCOPE_VIAS, VERDICTS

if TYPE_CHECKING:
    from reports.sql import StoredRows

COLUMNS = [
    "principal_id",
    "upn",
    "name",
    "in_scope",
    "scope_via",
    "wiki_state",
    "last_status",
    "verdict",
    "wiki_id",
    "last_at",
    "last_error_code",
]
# One list of scope ways (best first), the Default Access role and the verdicts: the model's.
SCOPE_RANK = {way: rank for rank, way in enumerate(SCOPE_VIAS)}


def _default_access(assignments: pd.DataFrame) -> pd.Series:
    """Return True for Default Access assignments (the flag, else the all-zero role id)."""
    by_role = (assignments["app_role_id"] == DEFAULT_ACCESS_ROLE).fillna(False).astype(bool)
    return assignments["default_access"].fillna(by_role).astype(bool)


def _is_user(types: pd.Series) -> pd.Series:
    """Return True for user principals (an unknown type counts as a user)."""
    return (types.isna() | (types == "user")).astype(bool)


def effective_direct(group_members: pd.DataFrame) -> pd.Series:
    """Return each membership's ``direct`` flag, re-derived where ingest could not.

    DESIGN: a transitive member is direct unless reachable only through a nested group whose own
    members are known. A group whose rows are *all* marked direct although it contains a group
    whose member list is known was ingested without that derivation (one file at a time): its
    members found in the nested group's list are treated as nested.
    """
    gm = group_members
    direct = gm["direct"].fillna(True).astype(bool)
    known = gm["group_id"].dropna().unique()
    nested = gm.loc[(gm["member_type"] == "group").fillna(False).astype(bool)]
    nested = nested.loc[isin(nested["member_id"], known), ["group_id", "member_id"]]
    if nested.empty:
        return direct
    all_direct = direct.groupby(gm["group_id"]).all()
    nested = nested.loc[isin(nested["group_id"], all_direct.index[all_direct.to_numpy()])]
    inner = gm[["group_id", "member_id"]].rename(columns={"group_id": "_inner", "member_id": "_m"})
    via = nested.merge(inner, left_on="member_id", right_on="_inner")[["group_id", "_m"]]
    pairs = gm[["group_id", "member_id"]].reset_index()
    hit = pairs.merge(via, left_on=["group_id", "member_id"], right_on=["group_id", "_m"])
    out = direct.copy()
    out.loc[hit["index"].unique()] = False
    return out


def scope_table(assignments: pd.DataFrame, group_members: pd.DataFrame) -> pd.DataFrame:
    """Return one row per user principal named by scope data: ``scope_via`` and ``in_scope``."""
    default = _default_access(assignments)
    users = assignments.loc[_is_user(assignments["principal_type"])]
    direct = pd.DataFrame(
        {
            "principal_id": users["principal_id"],
            "scope_via": np.where(default[users.index], "default_access", "direct"),
        }
    )
    groups = assignments.loc[assignments["principal_type"] == "group"]
    # A group assigned twice (default and a real role) is in scope through the real role.
    group_ok = groups.loc[~default[groups.index], "principal_id"].unique()
    group_default = groups.loc[default[groups.index], "principal_id"].unique()
    members = group_members.loc[_is_user(group_members["member_type"])]
    is_direct = effective_direct(group_members).loc[members.index]
    in_ok = isin(members["group_id"], group_ok)
    in_default = isin(members["group_id"], group_default)
    via = np.select(
        [in_ok & is_direct, in_ok, in_default],
        ["group", "nested_group", "default_access"],
        default="none",
    )
    through_groups = pd.DataFrame({"principal_id": members["member_id"], "scope_via": via})
    both = pd.concat([direct, through_groups], ignore_index=True)
    # Each principal's best way in (SCOPE_RANK; first seen among equals), by integer codes: a
    # million text keys take pandas' map and drop_duplicates seconds.
    labels, ways = pd.factorize(both["scope_via"].to_numpy(dtype=object))
    rank = np.array([SCOPE_RANK[w] for w in ways], dtype=np.int64)[labels]
    order = np.argsort(rank, kind="stable")
    ids, _ = pd.factorize(both["principal_id"].iloc[order])  # null ids: one code, as one key
    _, first = np.unique(ids, return_index=True)
    best = both.iloc[order[np.sort(first)]]
    best = best.set_index("principal_id")[["scope_via"]].astype("str")
    best["in_scope"] = isin(best["scope_via"], ["direct", "group"])
    return best


def in_scope_groups(assignments: pd.DataFrame) -> pd.Index:
    """Return ids of groups assigned with a role other than Default Access."""
    default = _default_access(assignments)
    groups = assignments.loc[(assignments["principal_type"] == "group") & ~default]
    return pd.Index(groups["principal_id"].unique())


def _first_known(*series: pd.Series) -> pd.Series:
    out = series[0].astype("str")
    for s in series[1:]:
        out = out.fillna(s.astype("str"))
    return out


def coverage_table(
    events: pd.DataFrame,
    assignments: pd.DataFrame,
    group_members: pd.DataFrame,
    scim_resources: pd.DataFrame,
) -> pd.DataFrame:
    """Return one row per user principal with scope, wiki state, last status and verdict."""
    scope = scope_table(assignments, group_members)
    user_events = order_events(
        events.loc[
            (events["source_type"].isna() | (events["source_type"] == "user"))
            & events["source_id"].notna()
        ]
    )
    last = last_rows(user_events, "source_id").set_index("source_id")
    failed = user_events.loc[user_events["status"] == "failure"]
    last_error = last_rows(failed, "source_id").set_index("source_id")["error_code"]

    members = group_members.loc[_is_user(group_members["member_type"])]
    users = assignments.loc[_is_user(assignments["principal_type"])]
    # Every Entra id known from scope data or events, with its best-known UPN and name.
    known = pd.concat(
        [
            pd.DataFrame({"principal_id": users["principal_id"], "name": users["principal_name"]}),
            pd.DataFrame(
                {
                    "principal_id": members["member_id"],
                    "upn": members["member_upn"],
                    "name": members["member_name"],
                }
            ),
            pd.DataFrame(
                {
                    "principal_id": user_events["source_id"],
                    "upn": user_events["source_upn"],
                    "name": user_events["source_name"],
                }
            ).iloc[::-1],  # latest event first
        ],
        ignore_index=True,
    )
    known = known.astype({"principal_id": "str", "upn": "str", "name": "str"})
    entra = known.groupby("principal_id", sort=False)[["upn", "name"]].first()

    # Wiki users: match externalId = Entra id, else userName = UPN (case-insensitive).
    wiki = latest_scim_snapshot(scim_resources, "User")
    by_upn = (
        entra.loc[entra["upn"].notna(), "upn"]
        .pipe(lambda s: pd.Series(s.index, index=casefold(s)))
        .loc[lambda s: ~s.index.duplicated()]
    )
    ext_known = wiki["external_id"].where(isin(wiki["external_id"], entra.index))
    upn_match = lookup(by_upn, casefold(wiki["user_name"]))
    wiki = wiki.assign(
        _pid=_first_known(ext_known, upn_match, wiki["external_id"]).astype("str"),
        _how=np.where(ext_known.notna(), 0, np.where(upn_match.notna(), 1, 2)),
        _active=wiki["active"].fillna(True).astype(bool),
    )
    wiki = wiki.sort_values(["_how", "_active"], ascending=[True, False], kind="stable")
    matched = wiki.loc[wiki["_pid"].notna()].drop_duplicates("_pid").set_index("_pid")
    unmatched = wiki.loc[wiki["_pid"].isna()]

    ids = pd.Index(entra.index).union(pd.Index(matched.index))
    rows = pd.DataFrame(index=ids.rename("principal_id"))
    rows["wiki_id"] = matched["id"]
    rows["upn"] = _first_known(reindex(entra["upn"], ids), reindex(matched["user_name"], ids))
    rows["name"] = _first_known(reindex(entra["name"], ids), reindex(matched["display_name"], ids))
    rows["_active"] = reindex(matched["_active"], ids)
    rows["_known"] = isin(pd.Series(ids), entra.index).to_numpy()
    rows = rows.reset_index()
    orphans = pd.DataFrame(
        {
            "principal_id": pd.Series(pd.NA, index=unmatched.index, dtype="str"),
            "wiki_id": unmatched["id"],
            "upn": unmatched["user_name"],
            "name": unmatched["display_name"],
            "_active": unmatched["_active"],
            "_known": False,
        }
    )
    rows = pd.concat([rows, orphans], ignore_index=True) if len(orphans) else rows

    pid = rows["principal_id"]
    rows["scope_via"] = lookup(scope["scope_via"], pid).fillna("none")
    rows["in_scope"] = isin(rows["scope_via"], ["direct", "group"])
    rows["wiki_state"] = np.select(
        [rows["_active"].isna(), rows["_active"].fillna(False).astype(bool)],
        ["absent", "active"],
        default="inactive",
    )
    rows["last_status"] = lookup(last["status"], pid)
    rows["last_at"] = lookup(last["activity_at"], pid)
    rows["last_error_code"] = lookup(last_error, pid)

    in_scope = rows["in_scope"]
    active = rows["wiki_state"] == "active"
    in_wiki = rows["wiki_state"] != "absent"
    status = rows["last_status"]
    has_events = status.notna()
    rows["verdict"] = np.select(
        [
            in_scope & active,
            in_scope & (status == "failure"),
            in_scope & (status == "skipped"),
            in_scope & ~has_events,
            in_scope & (status == "success") & ~active,
            ~in_scope & active & has_events,
            in_wiki & ~rows["_known"],
        ],
        list(VERDICTS[:-1]),
        default="excluded",
    )
    rows["_rank"] = rows["verdict"].map({v: i for i, v in enumerate(VERDICTS)})
    rows = rows.sort_values(["_rank", "upn", "principal_id"], kind="stable", na_position="last")
    out = rows.reset_index(drop=True)[COLUMNS]
    return out.astype(
        {
            "principal_id": "str",
            "upn": "str",
            "name": "str",
            "scope_via": "str",
            "wiki_state": "str",
            "verdict": "str",
            "wiki_id": "str",
            "in_scope": "bool",
        }
    )


def verdict_counts(coverage: pd.DataFrame) -> dict[str, int]:
    """Return how many users have each verdict (every verdict present, zero when none)."""
    return _counted(coverage["verdict"].value_counts().to_dict())


def _counted(counts: Mapping[Any, int]) -> dict[str, int]:
    """Return every verdict's count of ``counts`` (zero when absent), in VERDICTS' order."""
    return {v: int(counts.get(v, 0)) for v in VERDICTS}


def coverage_funnel(coverage: pd.DataFrame) -> pd.DataFrame:
    """Return the funnel from in scope to provisioned: columns ``stage`` and ``users``.

    Stages nest: in scope; of those, processed by Entra (any event); of those, last status
    success; of those, active in the wiki.
    """
    in_scope = coverage.loc[coverage["in_scope"].fillna(False).astype(bool)]
    seen = in_scope.loc[in_scope["last_status"].notna()]
    ok = seen.loc[(seen["last_status"] == "success").fillna(False).astype(bool)]
    provisioned = ok.loc[(ok["wiki_state"] == "active").fillna(False).astype(bool)]
    return pd.DataFrame(
        {
            "stage": [
                "In scope",
                "Processed by Entra",
                "Last Entra status success",
                "Active in the wiki",
            ],
            "users": [len(in_scope), len(seen), len(ok), len(provisioned)],
        }
    )


def build(
    inputs: Inputs,
    filters: Filters,
    *,
    include_noise: bool = True,
    now: pd.Timestamp | None = None,
    **params: Any,
) -> ReportResult:
    """Return the coverage rows and, in ``data``, the count of users per verdict."""
    kept = _kept_rows(inputs, filters)
    if kept is not None:
        verdicts = replace(kept, columns=("verdict",)).table().column("verdict")
        counts = pc.value_counts(verdicts).to_pylist()
        data = {"verdict_counts": _counted({c["values"]: c["counts"] for c in counts})}
        return ReportResult.of_rows(kept, _frame_of_rows, data=data)
    table = coverage_rows(inputs, filters, COLUMNS)[COLUMNS].reset_index(drop=True)
    return ReportResult(frame=table, data={"verdict_counts": verdict_counts(table)})


def _kept_rows(inputs: Inputs, filters: Filters) -> StoredRows | None:
    """Return the coverage rows of a kept model's objects part (read in place) when the
    filters do not redefine them (coverage_rows' rule), None otherwise."""
    if _scoped(filters) != Filters() or inputs.scan("events") is None:
        return None
    from reports.model import model_of

    path = model_of(inputs).file("objects")
    return None if path is None else kept_rows_at(path)


def kept_rows_at(objects_file: str) -> StoredRows:
    """Return the coverage rows of the objects part kept in ``objects_file``."""
    from reports.sql import StoredRows

    # coverage_rows' frame reads a missing in_scope as false.
    return StoredRows(
        objects_file, tuple(COLUMNS), "coverage", (("in_scope", "coalesce(in_scope, false)"),)
    )


def _frame_of_rows(rows: StoredRows) -> pd.DataFrame:
    """Return the coverage frame of rows kept in the objects part (as coverage_rows gives)."""
    frame: pd.DataFrame = rows.table().to_pandas()
    return frame.astype({"in_scope": "bool"})


def _scoped(filters: Filters) -> Filters:
    """Return the filters that redefine coverage rows (time, app, job: scope and last events)."""
    return Filters(
        since=filters.since,
        until=filters.until,
        service_principal_ids=filters.service_principal_ids,
        job_ids=filters.job_ids,
    )


def coverage_rows(
    inputs: Inputs, filters: Filters, columns: Sequence[str] | None = None
) -> pd.DataFrame:
    """Return the model's objects that are coverage rows (user principals): every column, or
    ``columns`` only (read column-wise from a kept model).

    Scope is per service principal, and events are cut by time and job: with such a filter the
    objects are computed (by the model's own function) over that selection; action and status
    filters choose events to list, they never change who is in scope or a last status.
    """
    from reports.model import model_of, objects_in_place, objects_table

    model = model_of(inputs)
    scoped = _scoped(filters)
    if scoped == Filters():
        objects = (
            model.objects if columns is None else model.columns("objects", [*columns, "coverage"])
        )
    else:
        # Over a store: the objects of the selection computed where it lies (the service
        # pushed the filters down), never read as frames.
        noise_file = model.file("noise")
        found = objects_in_place(inputs, noise_file) if noise_file is not None else None
        if found is not None:
            objects = found
        else:
            slimmed = inputs.replace(events=slim(inputs.events, "source_type", "error_code"))
            objects = objects_table(scoped.apply_inputs(slimmed).unguarded(), model.noise)
    rows = objects.loc[objects["coverage"]].reset_index(drop=True)
    return rows.astype({"in_scope": "bool"})
