"""access-time: how long each user waited from assignment to access in the wiki (the SLO).

Definition (DESIGN "access time"): ``assigned_at`` is a direct assignment's ``created_at``; for a
group member, the later of the group assignment's ``created_at`` and the member's join time,
taken from Entra's directory audit (``membership_changes``, "Add member to group") when
ingested, else the first stored membership snapshot listing the member
(``group_members.first_seen_at``). ``assigned_at_source`` says which. ``minutes_to_access`` runs
from ``assigned_at`` to ``wiki_active_at`` when known, else to ``first_provisioned_at``.

Choices this module makes, so every reader gets the same answer:

- One row per (user, service principal) in scope (DESIGN "in scope": a direct assignment with a
  role other than Default Access, or a *direct* member of a group assigned with such a role) who
  gained access. With ``include_waiting=True`` the users in scope still waiting are listed too
  (``waiting`` true, ``minutes_to_access`` counted to ``now``, breached when already past the SLO).
- A user reachable by several paths (a direct assignment and groups) is measured from the path
  that put them in scope first.
- Access is the *first* access: ``first_provisioned_at`` is the first successful Entra create, or
  update enabling the account (``active`` set true, ``accountDisabled`` true -> false), of that user
  by that app; ``wiki_active_at`` is the first wiki request creating the user (201) or setting
  ``active`` true (2xx). A join or assignment time *after* the access cannot explain it (the user
  was re-added later) and is not used; the latest one at or before the access is. When none is
  left, ``assigned_at`` is null (not measurable) and the row is neither timed nor breached.
- Time filters select rows by ``assigned_at``; the app filter selects assignments and events.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from reports import Filters, Inputs, ReportResult
from reports.coverage import _default_access, _is_user, effective_direct
from reports.inputs import UTC_DTYPE, casefold, isin, lookup

COLUMNS = [
    "principal_id",
    "upn",
    "service_principal_id",
    "assigned_at",
    "assigned_via",
    "assigned_at_source",
    "first_provisioned_at",
    "wiki_active_at",
    "minutes_to_access",
    "slo_minutes",
    "breached",
    "group_id",
    "waiting",
]
DEFAULT_SLO_MINUTES = 60.0
ASSIGNED_AT_SOURCES = ("assignment", "directory_audit", "membership_snapshot")


def _paths(assignments: pd.DataFrame, group_members: pd.DataFrame) -> pd.DataFrame:
    """Return every in-scope path: principal, app, via, group and the assignment's created_at."""
    ok = assignments.loc[~_default_access(assignments)]
    users = ok.loc[_is_user(ok["principal_type"])]
    direct = pd.DataFrame(
        {
            "principal_id": users["principal_id"].astype("str"),
            "service_principal_id": users["service_principal_id"].astype("str"),
            "assigned_via": "direct",
            "group_id": pd.Series(pd.NA, index=users.index, dtype="str"),
            "created_at": users["created_at"],
        }
    )
    groups = ok.loc[ok["principal_type"] == "group"]
    gm = group_members
    members = gm.loc[_is_user(gm["member_type"]) & effective_direct(gm)]
    via_group = groups[["service_principal_id", "principal_id", "created_at"]].merge(
        members[["group_id", "member_id", "first_seen_at"]],
        left_on="principal_id",
        right_on="group_id",
    )
    grouped = pd.DataFrame(
        {
            "principal_id": via_group["member_id"].astype("str"),
            "service_principal_id": via_group["service_principal_id"].astype("str"),
            "assigned_via": "group",
            "group_id": via_group["group_id"].astype("str"),
            "created_at": via_group["created_at"],
            "first_seen_at": via_group["first_seen_at"],
        }
    )
    return pd.concat([direct, grouped], ignore_index=True)


def _first_provisioned(events: pd.DataFrame, modified_properties: pd.DataFrame) -> pd.Series:
    """Return the first successful create or enable per (source_id, service_principal_id)."""
    ok = events.loc[(events["status"] == "success") & events["source_id"].notna()]
    updates = ok.loc[ok["action"] == "update", "id"]
    # Only successful updates can enable: fold their properties, not every row.
    mp = modified_properties.loc[isin(modified_properties["event_id"], updates)]
    name = casefold(mp["name"])
    new = casefold(mp["new_value"])
    old = casefold(mp["old_value"])
    enabling = ((name == "active") & (new == "true")) | (
        (name == "accountdisabled") & (old == "true") & (new == "false")
    )
    enabled_ids = mp.loc[enabling.fillna(False).astype(bool), "event_id"]
    hit = ok.loc[
        (ok["action"] == "create") | ((ok["action"] == "update") & isin(ok["id"], enabled_ids))
    ]
    if hit.empty:
        return pd.Series(dtype=UTC_DTYPE)
    return hit.groupby(["source_id", "service_principal_id"], dropna=False)["activity_at"].min()


def _wiki_active(
    scim_requests: pd.DataFrame,
    scim_resources: pd.DataFrame,
    events: pd.DataFrame,
    upns: pd.Series,
) -> pd.Series:
    """Return the first wiki create (201) or activation (2xx, ``active`` true) per Entra id.

    A request names its user by ``externalId`` (the Entra id) or ``userName`` (the UPN,
    case-insensitively), as DESIGN's matching rule says; a PATCH naming only the wiki id is
    tied to the user through the wiki's own records (created resources, SCIM state) and the
    Entra events' ``target_id``.
    """
    rq = scim_requests.loc[isin(scim_requests["resource_type"].fillna("User"), ["User"])]
    code = rq["status_code"]
    created = (rq["operation"] == "create") & (code == 201)
    activated = isin(rq["operation"], ["replace", "patch"]) & (rq["active_set"] == True)  # noqa: E712
    activated &= (code >= 200) & (code < 300)
    rq = rq.loc[(created | activated).fillna(False).astype(bool)]
    if rq.empty:
        return pd.Series(dtype=UTC_DTYPE)
    by_upn = pd.Series(upns.index, index=casefold(upns)).loc[lambda s: ~s.index.duplicated()]
    # The wiki id of each Entra user, from every place that tells.
    res = scim_resources.loc[scim_resources["resource_type"] == "User"]
    sources = [
        pd.DataFrame(
            {"wiki_id": rq["resource_id"], "ext": rq["external_id"], "un": rq["user_name"]}
        ),
        pd.DataFrame({"wiki_id": res["id"], "ext": res["external_id"], "un": res["user_name"]}),
    ]
    ids = pd.concat(sources, ignore_index=True).dropna(subset=["wiki_id"])
    ids["pid"] = ids["ext"].where(
        ids["ext"].notna(), by_upn.reindex(casefold(ids["un"])).to_numpy()
    )
    from_events = events.loc[events["target_id"].notna() & events["source_id"].notna()]
    ids = pd.concat(
        [
            ids[["wiki_id", "pid"]],
            pd.DataFrame({"wiki_id": from_events["target_id"], "pid": from_events["source_id"]}),
        ],
        ignore_index=True,
    ).dropna()
    wiki_to_pid = ids.drop_duplicates("wiki_id").set_index("wiki_id")["pid"]
    pid = rq["external_id"].where(
        rq["external_id"].notna(), by_upn.reindex(casefold(rq["user_name"])).to_numpy()
    )
    pid = pid.fillna(wiki_to_pid.reindex(rq["resource_id"]).set_axis(rq.index))
    found = rq.assign(_pid=pid).dropna(subset=["_pid"])
    return found.groupby("_pid")["received_at"].min()


def _join_times(changes: pd.DataFrame) -> pd.DataFrame:
    """Return successful "added" changes: group_id, member_id, joined_at."""
    mc = changes
    ok = (mc["change"] == "added") & (mc["result"].isna() | (casefold(mc["result"]) == "success"))
    return mc.loc[ok.fillna(False).astype(bool), ["group_id", "member_id", "changed_at"]].rename(
        columns={"changed_at": "joined_at"}
    )


def _assigned_at(paths: pd.DataFrame, joins: pd.DataFrame, access_at: pd.Series) -> pd.DataFrame:
    """Return ``paths`` with each path's ``assigned_at`` and ``assigned_at_source``."""
    p = paths.copy()
    p["_access"] = access_at.set_axis(p.index)
    # Latest join at or before the access (any join when there is no access yet).
    cand = p.reset_index()[["index", "group_id", "principal_id", "_access"]].merge(
        joins, left_on=["group_id", "principal_id"], right_on=["group_id", "member_id"]
    )
    cand = cand.loc[cand["_access"].isna() | (cand["joined_at"] <= cand["_access"])]
    audit = cand.groupby("index")["joined_at"].max().reindex(p.index)
    snapshot = p["first_seen_at"].where(p["_access"].isna() | (p["first_seen_at"] <= p["_access"]))
    is_group = p["assigned_via"] == "group"
    join = audit.fillna(snapshot)
    created = p["created_at"].astype(UTC_DTYPE)
    join = join.astype(UTC_DTYPE)
    later = created.where(created >= join, join).where(created.notna() & join.notna())
    at = created.where(~is_group, later)
    at = at.where(p["_access"].isna() | (at <= p["_access"]))
    p["assigned_at"] = at
    source = np.select(
        [~is_group, audit.notna()], ["assignment", "directory_audit"], "membership_snapshot"
    )
    p["assigned_at_source"] = pd.Series(source, index=p.index, dtype="str").where(at.notna())
    return p


def access_table(
    inputs: Inputs,
    *,
    slo_minutes: float = DEFAULT_SLO_MINUTES,
    now: pd.Timestamp | None = None,
    include_waiting: bool = False,
) -> pd.DataFrame:
    """Return the access-time rows (see the module docstring) over already-selected inputs."""
    paths = _paths(inputs.assignments, inputs.group_members)
    events = inputs.events
    gm = inputs.group_members
    mc = inputs.membership_changes
    upns = (
        pd.concat(
            [
                pd.DataFrame({"pid": gm["member_id"], "upn": gm["member_upn"]}),
                pd.DataFrame({"pid": mc["member_id"], "upn": mc["member_upn"]}),
                pd.DataFrame({"pid": events["source_id"], "upn": events["source_upn"]}),
            ],
            ignore_index=True,
        )
        .dropna()
        .drop_duplicates("pid")
        .set_index("pid")["upn"]
        .astype("str")
    )
    first = _first_provisioned(events, inputs.modified_properties)
    wiki = _wiki_active(inputs.scim_requests, inputs.scim_resources, events, upns)
    key = pd.MultiIndex.from_arrays([paths["principal_id"], paths["service_principal_id"]])
    # reindex + set_axis keeps the datetime dtype (to_numpy() would make Timestamp objects).
    paths["first_provisioned_at"] = first.reindex(key).set_axis(paths.index).astype(UTC_DTYPE)
    paths["wiki_active_at"] = lookup(wiki, paths["principal_id"]).astype(UTC_DTYPE)
    access = paths["wiki_active_at"].fillna(paths["first_provisioned_at"])
    p = _assigned_at(paths, _join_times(mc), access)
    p["_access"] = access
    # The path that put the user in scope first; unmeasurable paths last.
    p = p.sort_values(["assigned_at", "assigned_via"], kind="stable", na_position="last")
    p = p.drop_duplicates(["principal_id", "service_principal_id"])
    p["waiting"] = p["_access"].isna()
    if not include_waiting:
        p = p.loc[~p["waiting"]]
    end = p["_access"]
    if now is not None:
        end = end.fillna(now)
    minutes = (end - p["assigned_at"]).dt.total_seconds() / 60.0
    p["minutes_to_access"] = minutes.astype("Float64")
    p["slo_minutes"] = float(slo_minutes)
    p["breached"] = (p["minutes_to_access"] > slo_minutes).fillna(False).astype(bool)
    p["upn"] = lookup(upns, p["principal_id"])
    p = p.sort_values(["assigned_at", "principal_id"], kind="stable", na_position="last")
    out = p.reset_index(drop=True)[COLUMNS]
    return out.astype(
        {
            "principal_id": "str",
            "upn": "str",
            "service_principal_id": "str",
            "assigned_via": "str",
            "assigned_at_source": "str",
            "slo_minutes": "Float64",
            "group_id": "str",
            "waiting": "bool",
        }
    )


def _flag(value: object) -> bool:
    """Return a parameter as a bool; text (from `report --param KEY=VALUE`) is read as words."""
    if isinstance(value, str):
        word = value.strip().lower()
        if word in ("1", "true", "yes", "on"):
            return True
        if word in ("", "0", "false", "no", "off"):
            return False
        raise ValueError(f"access-time: include_waiting must be true or false, not {value!r}")
    return bool(value)


def _select(inputs: Inputs, filters: Filters) -> Inputs:
    """Return the inputs of the selected apps and jobs, never cut by time (first times count)."""
    if not (filters.service_principal_ids or filters.job_ids):
        return inputs
    apps = Filters(service_principal_ids=filters.service_principal_ids, job_ids=filters.job_ids)
    return apps.apply_inputs(inputs)


def build(
    inputs: Inputs,
    filters: Filters,
    *,
    include_noise: bool = True,
    now: pd.Timestamp | None = None,
    slo_minutes: float = DEFAULT_SLO_MINUTES,
    include_waiting: bool = False,
    **params: Any,
) -> ReportResult:
    """Return one row per user in scope who gained access, timed against the SLO."""
    table = access_table(
        _select(inputs, filters),
        slo_minutes=float(slo_minutes),
        now=now,
        include_waiting=_flag(include_waiting),
    )
    table = filters.apply(table, "assigned_at").reset_index(drop=True)
    return ReportResult(frame=table)


SUMMARY_COLUMNS = [
    "by",
    "key",
    "name",
    "users",
    "p50_minutes",
    "p90_minutes",
    "max_minutes",
    "breached",
    "slo_minutes",
]


def _quantiles(minutes: pd.Series) -> dict[str, Any]:
    m = minutes.dropna().astype(float)
    if m.empty:
        return {"users": 0, "p50_minutes": None, "p90_minutes": None, "max_minutes": None}
    return {
        "users": len(m),
        "p50_minutes": float(m.quantile(0.5)),
        "p90_minutes": float(m.quantile(0.9)),
        "max_minutes": float(m.max()),
    }


def summarise(rows: pd.DataFrame, by: str, names: pd.Series | None = None) -> pd.DataFrame:
    """Return p50/p90 of ``minutes_to_access`` per week of ``assigned_at`` or per app."""
    timed = rows.loc[rows["minutes_to_access"].notna() & ~rows["waiting"]]
    if by == "week":
        day = timed["assigned_at"].dt.tz_localize(None).dt.normalize()
        keys = (day - pd.to_timedelta(day.dt.day_of_week, unit="D")).dt.strftime("%Y-%m-%d")
    elif by == "app":
        keys = timed["service_principal_id"]
    else:
        raise ValueError(f"access-time-summary: by must be week or app, not {by!r}")
    out = []
    for key, grp in timed.groupby(keys.to_numpy(), sort=True):
        stats = _quantiles(grp["minutes_to_access"])
        out.append(
            {
                "by": by,
                "key": str(key),
                "name": None if names is None else names.get(key),
                **stats,
                "breached": int(grp["breached"].sum()),
                "slo_minutes": float(grp["slo_minutes"].iloc[0]),
            }
        )
    frame = pd.DataFrame(out, columns=SUMMARY_COLUMNS)
    return frame.astype(
        {
            "by": "str",
            "key": "str",
            "name": "str",
            "users": "Int64",
            "p50_minutes": "Float64",
            "p90_minutes": "Float64",
            "max_minutes": "Float64",
            "breached": "Int64",
            "slo_minutes": "Float64",
        }
    )


def build_summary(
    inputs: Inputs,
    filters: Filters,
    *,
    include_noise: bool = True,
    now: pd.Timestamp | None = None,
    slo_minutes: float = DEFAULT_SLO_MINUTES,
    by: str = "week",
    **params: Any,
) -> ReportResult:
    """Return p50/p90 time to access per week (of ``assigned_at``) or per app, and overall."""
    rows = build(inputs, filters, now=now, slo_minutes=slo_minutes).frame
    assert rows is not None
    ev = inputs.events.dropna(subset=["service_principal_id", "service_principal_name"])
    names = ev.drop_duplicates("service_principal_id", keep="last").set_index(
        "service_principal_id"
    )["service_principal_name"]
    table = summarise(rows, by, names)
    overall = _quantiles(rows["minutes_to_access"])
    data = {
        **overall,
        "breached": int(rows["breached"].sum()),
        "slo_minutes": float(slo_minutes),
    }
    return ReportResult(frame=table, data=data)
