"""Report push-down to Log Analytics: the KQL for summary, cycles, failures and skips.

Pure (no I/O): :func:`plan` returns the KQL queries a report needs; :func:`assemble` turns their
small results into the same :class:`~reports.ReportResult` the local engine returns. The caller
(``provlens report --engine log-analytics``) runs the queries through
``ingest.log_analytics``. What runs where:

* pushed down (KQL in the workspace): the canonical fields each report reads, derived from the
  ``AADProvisioningLogs`` columns (:data:`FIELDS`; enum values from the parser's own maps in
  ``ingest.records``), the filters (time, app, job, action, status), and every grouping and
  measure over events: counts, per-status counts, first/last times, exact distinct counts
  (``summarize by k | count``-style two-level summarize, never the estimating ``dcount``), the
  latest non-empty reason / recommendation and the error-category counts per code;
* done locally on those aggregates, by the same functions as the local engine
  (``finish_cycles``, ``finish_failures``, ``finish_skips``): cycle duration, throughput, gap
  and kind (which reads ``sync_jobs`` from the local store), owner and documented action per
  error code, the noise flag of a skip reason, hiding noise, ordering;
* not pushed down: the wiki's ``scim_requests`` (not in the workspace), so ``failures`` from
  the workspace has no ``scim_type`` and the owner falls back to code / category rules; other
  reports (users, coverage, correlation, estimate...) need row-level joins with local tables.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ingest.records import ACTION, ERROR_CATEGORY, STATUS
from reports import Filters, ReportResult

TABLE = "AADProvisioningLogs"
ENGINE_REPORTS = ("summary", "cycles", "failures", "skips")
STATUSES = ("success", "failure", "skipped", "warning")
# Skip reasons sit in a step's details; a regular expression finds the first one in step order.
_SKIP_REASON_RE = r'"[Ss][Kk][Ii][Pp] ?[Rr][Ee][Aa][Ss][Oo][Nn]"\s*:\s*"([^"\\]*)"'


def lit(value: str) -> str:
    """Return ``value`` as a KQL string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _first_of(*exprs: str) -> str:
    """KQL: the first non-empty of ``exprs`` ('' when all are empty)."""
    out = exprs[-1]
    for e in reversed(exprs[:-1]):
        out = f"iff(isnotempty({e}), {e}, {out})"
    return out


def _prop(obj: str, *names: str) -> str:
    """KQL: property ``names`` (spellings tried in order) of a parsed JSON column, as text."""
    return _first_of(*(f"tostring({obj}.{n})" for n in names))


def _enum(raw: str, mapping: Mapping[Any, str]) -> tuple[str, str]:
    """KQL mirroring ``ingest.records.norm_enum``: ``(case over _f, folding of raw)``.

    Generated from the parser's own enum maps, so both read a value the same way.
    """
    folded = f"replace_regex(tolower({raw}), @'[_\\s]', '')"
    pairs = sorted({(str(k), v) for k, v in mapping.items() if v != "unknown"})
    arms = ", ".join(f"_f == {lit(k)}, {lit(v)}" for k, v in pairs)
    return f"case({arms}, 'unknown')", folded


@dataclass(frozen=True)
class Schema:
    """What the workspace's table offers (from a ``take 0`` probe)."""

    columns: frozenset[str]

    @property
    def action_column(self) -> str:
        """``ProvisioningAction`` (current) or ``Action`` (older workspaces)."""
        if "ProvisioningAction" in self.columns or "Action" not in self.columns:
            return "ProvisioningAction"
        return "Action"


PROBE = f"{TABLE} | take 0"


def events_kql(schema: Schema, filters: Filters) -> str:
    """Return KQL yielding one row per event with the canonical columns the reports read.

    Columns: ``id``, ``activity_at``, ``job_id``, ``cycle_id``, ``change_id``,
    ``service_principal_id``, ``action``, ``status``, ``error_code``, ``error_category``,
    ``error_reason``, ``recommended_action``, ``skip_reason``, ``object_key`` (as
    ``reports.inputs.object_key``: source id, else ``upn:``, ``name:`` or ``target:``).
    """
    action_case, action_fold = _enum("_a", ACTION)
    status_case, status_fold = _enum("_s", STATUS)
    category_case, category_fold = _enum("_c", ERROR_CATEGORY)
    where = ["isnotempty(Id)"]
    if filters.since is not None:
        where.append(f"TimeGenerated >= {time_lit(filters.since)}")
    if filters.until is not None:
        where.append(f"TimeGenerated < {time_lit(filters.until)}")
    q = [
        f"{TABLE}",
        "| where " + " and ".join(where),
        "| extend _psi = parse_json(ProvisioningStatusInfo), _src = parse_json(SourceIdentity),"
        " _tgt = parse_json(TargetIdentity), _sp = parse_json(ServicePrincipal),"
        " _st = parse_json(ProvisioningSteps)",
        "| extend _err = _psi.errorInformation, _srcd = _src.details, _imp = _st[0]",
        f"| extend _a = {schema.action_column},"
        f" _s = {_first_of(_prop('_psi', 'status', 'Status'), 'ResultType')},"
        f" _c = {_prop('_err', 'errorCategory', 'ErrorCategory')}",
        # The raw column goes: `Action` and the canonical `action` must not meet in an engine
        # whose column names ignore case (DuckDB, under the test workspace).
        f"| project-away {schema.action_column}",
        f"| extend _a = {action_fold}, _s = {status_fold}, _c = {category_fold}",
    ]
    # Fold first, then map the folded value (_f) with one case() generated from the parser's map.
    q.append(f"| extend _f = _a | extend action = iff(isempty(_a), 'unknown', {action_case})")
    q.append(f"| extend _f = _s | extend status = iff(isempty(_s), 'unknown', {status_case})")
    q.append(f"| extend _f = _c | extend error_category = iff(isempty(_c), '', {category_case})")
    code = _first_of(_prop("_err", "errorCode", "ErrorCode"), "ResultSignature")
    upn = _first_of(
        _prop("_srcd", "UserPrincipalName", "userPrincipalName"),
        "iff(tolower(tostring(_imp.provisioningStepType)) == 'import' or "
        "tostring(_imp.provisioningStepType) == '0', "
        + _prop("_imp.details", "UserPrincipalName", "userPrincipalName")
        + ", '')",
    )
    src = _prop("_src", "Id", "id")
    name = _prop("_src", "Name", "displayName", "name")
    tgt = _prop("_tgt", "Id", "id")
    reason = _prop("_err", "reason", "Reason")
    q.append(
        f"| extend _code = {code}, _upn = {upn}, _srcid = {src}, _name = {name}, _tgtid = {tgt},"
        f" _reason = {_first_of(reason, 'ResultDescription')},"
        f" _skip = extract(@'{_SKIP_REASON_RE}', 1, ProvisioningSteps)"
    )
    q.append(
        "| project id = Id, activity_at = TimeGenerated, job_id = JobId, cycle_id = CycleId,"
        " change_id = ChangeId,"
        # as ingest.fieldmap.snake: the envelope's result type in lower snake case
        " envelope_result_type = tolower(replace_regex(replace_regex(trim(@'\\s', ResultType),"
        " @'([a-z0-9])([A-Z])', @'\\1_\\2'), @'[\\s\\-]+', '_')),"
        f" service_principal_id = {_prop('_sp', 'Id', 'id')},"
        " action, status, error_category,"
        " error_code = iff(_code == 'None' or _code == '0', '', _code),"
        " error_reason = _reason,"
        f" recommended_action = {_prop('_err', 'recommendedAction', 'RecommendedAction')},"
        " error_additional_details ="
        f" {_prop('_err', 'additionalDetails', 'AdditionalDetails')},"
        " skip_reason = iff(isnotempty(_skip), _skip, iff(status == 'skipped', "
        + reason
        + ", '')),"
        " object_key = iff(isnotempty(_srcid), _srcid, iff(isnotempty(_upn), strcat('upn:', _upn),"
        " iff(isnotempty(_name), strcat('name:', _name),"
        " iff(isnotempty(_tgtid), strcat('target:', _tgtid), ''))))"
    )
    sel = []
    for column, values in filters.value_filters():
        if values:
            sel.append(f"{column} in ({', '.join(lit(str(v)) for v in values)})")
    if sel:
        q.append("| where " + " and ".join(sel))
    return "\n".join(q)


def time_lit(ts: pd.Timestamp) -> str:
    """Return a KQL datetime literal (UTC, microseconds)."""
    return "datetime(" + pd.Timestamp(ts).tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%S.%fZ") + ")"


def _distinct(ev: str, keys: Iterable[str], column: str, name: str) -> str:
    """KQL: an exact distinct count of ``column`` per ``keys`` (two-level summarize)."""
    by = ", ".join(keys)
    inner = f"{by}, {column}" if by else column
    outer = f" by {by}" if by else ""
    return (
        f"{ev}\n| where isnotempty({column})\n| summarize by {inner}\n"
        f"| summarize {name} = count(){outer}"
    )


def _quoted_scim_errors(fail: str) -> dict[str, str]:
    """KQL: the wiki's SCIM error Entra quotes in a failure's reason (else additional details),
    with the same patterns as ``reports.owners.embedded_scim_error``; per error code the most
    frequent scimType and the latest status and detail (as the local failures report)."""
    from reports.owners import EMBEDDED_DETAIL, EMBEDDED_STATUS, EMBEDDED_TYPE

    quoted = (
        f"{fail}\n| extend _p = replace_string(strcat(error_reason, ' ', error_additional_details),"
        " '\\\"', '\"')"
        f"\n| extend scim_status = extract(@'{EMBEDDED_STATUS}', 1, _p),"
        f" scim_type = extract(@'{EMBEDDED_TYPE}', 1, _p),"
        f" scim_detail = extract(@'{EMBEDDED_DETAIL}', 1, _p)"
    )
    return {
        "scim_types": f"{quoted}\n| where isnotempty(scim_type)\n| summarize n = count(),"
        " t = min(activity_at) by error_code, scim_type",
        "scim_status": f"{quoted}\n| where isnotempty(scim_status)\n| summarize"
        " arg_max(activity_at, scim_status) by error_code",
        "scim_detail": f"{quoted}\n| where isnotempty(scim_detail)\n| summarize"
        " arg_max(activity_at, scim_detail) by error_code",
    }


def plan(name: str, schema: Schema, filters: Filters) -> dict[str, str]:
    """Return the KQL queries report ``name`` needs, by role."""
    ev = events_kql(schema, filters)
    counts = ", ".join(f"{s} = countif(status == {lit(s)})" for s in STATUSES)
    if name == "summary":
        return {
            "groups": f"{ev}\n| summarize events = count(), first_at = min(activity_at),"
            " last_at = max(activity_at) by action, status, envelope_result_type,"
            " code = iff(status == 'failure', error_code, '')",
            "distinct_ids": _distinct(ev, (), "id", "n"),
            # a cycle is a (job, cycle) pair (DESIGN.md), as reports.model.cycle_pairs
            "cycles": _distinct(
                f"{ev}\n| where isnotempty(cycle_id)"
                "\n| extend cycle_pair = strcat(job_id, '|', cycle_id)",
                (),
                "cycle_pair",
                "n",
            ),
            "changes": _distinct(ev, (), "change_id", "n"),
            "source_objects": _distinct(ev, (), "object_key", "n"),
        }
    if name == "cycles":
        # A cycle is what all its events say (DESIGN "filters"): the aggregates run over every
        # event; the filters only choose which cycles are listed (those with a selected event).
        cyc = f"{events_kql(schema, Filters())}\n| where isnotempty(cycle_id)"
        return {
            "selected": f"{ev}\n| where isnotempty(cycle_id)\n| summarize by job_id, cycle_id",
            "groups": f"{cyc}\n| summarize service_principal_id = take_any(service_principal_id),"
            " started_at = min(activity_at), ended_at = max(activity_at), events = count(),"
            f" {counts} by job_id, cycle_id",
            "changes": _distinct(cyc, ("job_id", "cycle_id"), "change_id", "changes"),
            "objects": _distinct(cyc, ("job_id", "cycle_id"), "object_key", "objects"),
        }
    if name == "failures":
        fail = f"{ev}\n| where status == 'failure'"
        return {
            "groups": f"{fail}\n| summarize events = count(), first_seen = min(activity_at),"
            " last_seen = max(activity_at) by error_code",
            "objects": _distinct(fail, ("error_code",), "object_key", "objects"),
            "categories": f"{fail}\n| where isnotempty(error_category)\n| summarize n = count(),"
            " t = min(activity_at) by error_code, error_category",
            "reasons": f"{fail}\n| where isnotempty(error_reason)\n| summarize"
            " arg_max(activity_at, error_reason) by error_code",
            "actions": f"{fail}\n| where isnotempty(recommended_action)\n| summarize"
            " arg_max(activity_at, recommended_action) by error_code",
            **_quoted_scim_errors(fail),
        }
    if name == "skips":
        skip = f"{ev}\n| where status == 'skipped'"
        return {
            "groups": f"{skip}\n| summarize events = count(), first_seen = min(activity_at),"
            " last_seen = max(activity_at) by skip_reason",
            "objects": _distinct(skip, ("skip_reason",), "object_key", "objects"),
        }
    raise KeyError(
        f"report {name!r} does not run in Log Analytics; these do: {', '.join(ENGINE_REPORTS)}"
    )


def _times(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    for c in columns:
        frame[c] = pd.to_datetime(frame[c], utc=True, format="ISO8601").astype(
            "datetime64[us, UTC]"
        )
    return frame


def _none(text: Any) -> Any:
    return pd.NA if text is None or text == "" else text


def assemble(
    name: str,
    results: Mapping[str, pd.DataFrame],
    filters: Filters,
    *,
    include_noise: bool,
    sync_jobs: pd.DataFrame | None = None,
) -> ReportResult:
    """Return the report from its queries' results (frames with the KQL's columns)."""
    if name == "summary":
        return ReportResult(data=_summary(results))
    if name == "cycles":
        return ReportResult(frame=_cycles(results, sync_jobs, filters))
    if name == "failures":
        return ReportResult(frame=_failures(results), hidden_noise=0)
    if name == "skips":
        from reports.failures import finish_skips

        g = results["groups"]
        out = g.set_index("skip_reason")[["events", "first_seen", "last_seen"]]
        out = _times(out, "first_seen", "last_seen")
        out["objects"] = _lookup(results["objects"], "skip_reason", "objects", out.index)
        out.index.name = "_reason"
        table = finish_skips(out[["events", "objects", "first_seen", "last_seen"]])
        if include_noise:
            return ReportResult(frame=table)
        hidden = int(table.loc[table["noise"], "events"].sum())
        return ReportResult(
            frame=table.loc[~table["noise"]].reset_index(drop=True), hidden_noise=hidden
        )
    raise KeyError(name)


def _lookup(frame: pd.DataFrame, key: str | list[str], value: str, index: pd.Index) -> pd.Series:
    if frame.empty:
        return pd.Series(0, index=index, dtype="int64")
    return frame.set_index(key)[value].reindex(index).fillna(0).astype("int64")


def _summary(results: Mapping[str, pd.DataFrame]) -> dict[str, Any]:
    g = _times(results["groups"].copy(), "first_at", "last_at")
    n = int(g["events"].sum()) if not g.empty else 0

    def one(role: str) -> int:
        f = results[role]
        return int(f["n"].iloc[0]) if not f.empty else 0

    by_action_status: dict[str, dict[str, int]] = {}
    for (action, status), count in g.groupby(["action", "status"])["events"].sum().items():
        by_action_status.setdefault(str(action), {})[str(status)] = int(count)
    failed = g.loc[g["status"] == "failure"]
    by_code = failed.groupby(failed["code"].replace("", "(none)"))["events"].sum().sort_index()
    success = int(g.loc[g["status"] == "success", "events"].sum()) if n else 0
    by_result_type: dict[str, dict[str, int]] = {}
    enveloped = g.loc[g["envelope_result_type"].fillna("") != ""]
    pairs = enveloped.groupby(["envelope_result_type", "status"])["events"].sum()
    for (result_type, status), count in pairs.items():
        by_result_type.setdefault(str(result_type), {})[str(status)] = int(count)
    return {
        "events": n,
        "distinct_ids": one("distinct_ids"),
        "cycles": one("cycles"),
        "changes": one("changes"),
        "source_objects": one("source_objects") if n else 0,
        "first_at": pd.Timestamp(g["first_at"].min()) if n else None,
        "last_at": pd.Timestamp(g["last_at"].max()) if n else None,
        "success_rate": float(success / n) if n else None,
        "by_action_status": by_action_status,
        "failures_by_error_code": {str(k): int(v) for k, v in by_code.items()},
        "by_envelope_result_type": by_result_type,
    }


def _cycles(
    results: Mapping[str, pd.DataFrame], sync_jobs: pd.DataFrame | None, filters: Filters
) -> pd.DataFrame:
    from ingest.schema import empty_frame
    from reports.cycles import finish_cycles

    g = results["groups"].copy()
    jobs = sync_jobs if sync_jobs is not None else empty_frame("sync_jobs")
    if g.empty:
        return finish_cycles(g, jobs)
    g = _times(g, "started_at", "ended_at")
    keys = ["job_id", "cycle_id"]
    idx = pd.MultiIndex.from_frame(g[keys])
    g["changes"] = _lookup(results["changes"], keys, "changes", idx).to_numpy()
    g["objects"] = _lookup(results["objects"], keys, "objects", idx).to_numpy()
    g["service_principal_id"] = g["service_principal_id"].map(_none).astype("str")
    g["cycle_id"] = g["cycle_id"].astype("str")
    g["job_id"] = g["job_id"].fillna("").astype("str")
    out = finish_cycles(g, filters.apply_table("sync_jobs", jobs))
    sel = results["selected"]
    chosen = set(zip(sel["job_id"].fillna("").astype("str"), sel["cycle_id"].astype("str")))
    pairs = zip(out["job_id"].fillna("").astype("str"), out["cycle_id"].astype("str"))
    keep = [pair in chosen for pair in pairs]
    return out.loc[keep].reset_index(drop=True)


def _failures(results: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    from reports.failures import FAILURE_COLUMNS, finish_failures

    g = results["groups"]
    if g.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in FAILURE_COLUMNS})
    out = g.set_index("error_code")[["events", "first_seen", "last_seen"]].copy()
    out = _times(out, "first_seen", "last_seen")
    out["objects"] = _lookup(results["objects"], "error_code", "objects", out.index)
    cats = results["categories"]
    mode = pd.Series(pd.NA, index=out.index, dtype="str")
    if not cats.empty:
        # The most frequent category per code; ties go to the one seen first (like value_counts
        # over time-ordered events).
        cats = _times(cats.copy(), "t").sort_values(["n", "t"], ascending=[False, True])
        mode = cats.drop_duplicates("error_code").set_index("error_code")["error_category"]
        mode = mode.reindex(out.index).astype("str")
    out["error_category"] = mode
    # The wiki's own answers are local only; the SCIM error Entra quotes is read in the workspace.
    types = results["scim_types"]
    scim_type = pd.Series(pd.NA, index=out.index, dtype="str")
    if not types.empty:
        types = _times(types.copy(), "t").sort_values(["n", "t"], ascending=[False, True])
        scim_type = types.drop_duplicates("error_code").set_index("error_code")["scim_type"]
        scim_type = scim_type.reindex(out.index).astype("str")
    out["scim_type"] = scim_type
    for role in ("scim_status", "scim_detail"):
        f = results[role]
        values = (
            f.set_index("error_code")[role].reindex(out.index)
            if not f.empty
            else pd.Series(pd.NA, index=out.index)
        )
        out[role] = values.astype("str")
    out["scim_status"] = pd.to_numeric(out["scim_status"], errors="coerce").astype("Int64")
    for role, col in (("reasons", "error_reason"), ("actions", "recommended_action")):
        f = results[role]
        values = (
            f.set_index("error_code")[col].reindex(out.index)
            if not f.empty
            else pd.Series(pd.NA, index=out.index)
        )
        out["sample_reason" if col == "error_reason" else col] = values.astype("str")
    out = out[
        [
            "events",
            "objects",
            "first_seen",
            "last_seen",
            "error_category",
            "scim_type",
            "scim_status",
            "scim_detail",
            "sample_reason",
            "recommended_action",
        ]
    ]
    out.index.name = "_code"
    return finish_failures(out)
