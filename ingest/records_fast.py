"""Columnar fast path for Graph-shaped provisioning records (camelCase, as Graph and the portal
download write them), on DuckDB's JSON reader.

:func:`graph_lines_to_frames` reads a chunk of records given as JSON Lines and returns the same
frames :func:`ingest.records.records_to_frames` would, or ``None`` when the chunk holds anything
this path does not reproduce exactly: legacy or Azure Monitor / Log Analytics shapes, keys in
another case (a struct whose every field reads null), ``servicePrincipal`` as an array,
JSON-in-string values, non-object steps, records without an id or a parsable time. The caller
then parses the chunk with the generic per-record parser, which also names the bad record.

Enumerations are normalised with the generic parser's own :func:`ingest.records.norm_enum`,
applied to each distinct raw value, so both paths agree by construction.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from ingest import schema
from ingest.records import (
    ACTION,
    ERROR_CATEGORY,
    INITIATOR,
    STATUS,
    STEP_TYPE,
    identity_type,
    norm_enum,
    parse_times,
)

Frames = dict[str, pd.DataFrame]

_IDENT = "STRUCT(id VARCHAR, displayName VARCHAR, name VARCHAR, identityType VARCHAR, details JSON)"
_SYSTEM = "STRUCT(id VARCHAR, displayName VARCHAR, name VARCHAR, details JSON)"
COLUMNS: dict[str, str] = {
    "id": "VARCHAR",
    "activityDateTime": "VARCHAR",
    "tenantId": "VARCHAR",
    "jobId": "VARCHAR",
    "cycleId": "VARCHAR",
    "changeId": "VARCHAR",
    "provisioningAction": "VARCHAR",
    "durationInMilliseconds": "VARCHAR",
    "servicePrincipal": "STRUCT(id VARCHAR, displayName VARCHAR, name VARCHAR)",
    "sourceSystem": _SYSTEM,
    "targetSystem": _SYSTEM,
    "initiatedBy": (
        "STRUCT(id VARCHAR, displayName VARCHAR, name VARCHAR, initiatorType VARCHAR,"
        " initiatingType VARCHAR, type VARCHAR)"
    ),
    "sourceIdentity": _IDENT,
    "targetIdentity": _IDENT,
    "provisioningStatusInfo": (
        "STRUCT(status VARCHAR, errorInformation STRUCT(errorCode VARCHAR, reason VARCHAR,"
        " additionalDetails VARCHAR, errorCategory VARCHAR, recommendedAction VARCHAR))"
    ),
    "provisioningSteps": (
        "STRUCT(name VARCHAR, provisioningStepType VARCHAR, status VARCHAR,"
        " description VARCHAR, details JSON)[]"
    ),
    "modifiedProperties": (
        "STRUCT(displayName VARCHAR, name VARCHAR, oldValue JSON, newValue JSON)[]"
    ),
}

_MACROS = """
CREATE OR REPLACE MACRO nz(x) AS NULLIF(x, '');
CREATE OR REPLACE MACRO en(x) AS lower(replace(replace(trim(x), '_', ''), ' ', ''));
CREATE OR REPLACE MACRO jtxt(j) AS CASE json_type(j)
    WHEN 'VARCHAR' THEN nz(j->>'$')
    WHEN 'NULL' THEN NULL
    WHEN 'BOOLEAN' THEN CASE WHEN j::VARCHAR = 'true' THEN 'True' ELSE 'False' END
    ELSE j::VARCHAR END;
CREATE OR REPLACE MACRO odd_json(j) AS j IS NOT NULL AND json_type(j) NOT IN ('OBJECT', 'NULL');
CREATE OR REPLACE MACRO dkey(j, a, b) AS CASE WHEN json_type(j) = 'OBJECT'
    THEN COALESCE(nz(j->>a), nz(j->>b)) END;
CREATE OR REPLACE MACRO nonempty(j) AS j IS NOT NULL AND json_type(j) = 'OBJECT'
    AND j::VARCHAR <> '{}';
"""

# Chunk-level checks: any row counted here sends the chunk to the generic parser.
_CHECK = """
SELECT count(*) FILTER (WHERE
       nz(id) IS NULL OR nz(activityDateTime) IS NULL
    OR provisioningAction IS NULL OR provisioningStatusInfo IS NULL
    OR (servicePrincipal IS NOT NULL AND servicePrincipal.id IS NULL
        AND servicePrincipal.displayName IS NULL AND servicePrincipal.name IS NULL)
    OR (sourceIdentity IS NOT NULL AND sourceIdentity.id IS NULL
        AND sourceIdentity.displayName IS NULL AND sourceIdentity.name IS NULL)
    OR (targetIdentity IS NOT NULL AND targetIdentity.id IS NULL
        AND targetIdentity.displayName IS NULL AND targetIdentity.name IS NULL
        AND targetIdentity.identityType IS NULL)
    OR (initiatedBy IS NOT NULL AND initiatedBy.displayName IS NULL AND initiatedBy.name IS NULL
        AND initiatedBy.initiatorType IS NULL AND initiatedBy.initiatingType IS NULL
        AND initiatedBy.type IS NULL AND initiatedBy.id IS NULL)
    OR (provisioningStatusInfo.status IS NULL
        AND provisioningStatusInfo.errorInformation IS NULL)
    OR odd_json(sourceIdentity.details) OR odd_json(targetIdentity.details)
    OR odd_json(sourceSystem.details) OR odd_json(targetSystem.details)
    OR len(list_filter(provisioningSteps, lambda x: x IS NULL OR odd_json(x.details)
        OR (x.name IS NULL AND x.status IS NULL AND x.provisioningStepType IS NULL))) > 0
    OR len(list_filter(modifiedProperties, lambda x: x IS NULL
        OR (x.displayName IS NULL AND x.name IS NULL AND x.oldValue IS NULL
            AND x.newValue IS NULL))) > 0
) FROM r
"""

_EVENTS = """
SELECT
    id,
    activityDateTime AS ts,
    nz(tenantId) AS tenant_id,
    nz(jobId) AS job_id,
    nz(cycleId) AS cycle_id,
    nz(changeId) AS change_id,
    COALESCE(nz(servicePrincipal.id),
             dkey(CASE WHEN nonempty(targetSystem.details) THEN targetSystem.details
                       ELSE sourceSystem.details END, 'ServicePrincipalId', 'servicePrincipalId')
    ) AS service_principal_id,
    COALESCE(nz(servicePrincipal.displayName), nz(servicePrincipal.name),
             dkey(CASE WHEN nonempty(targetSystem.details) THEN targetSystem.details
                       ELSE sourceSystem.details END,
                  'ServicePrincipalDisplayName', 'servicePrincipalDisplayName')
    ) AS service_principal_name,
    provisioningAction AS action_in,
    provisioningStatusInfo.status AS status_in,
    provisioningStatusInfo.errorInformation.errorCode AS error_code,
    provisioningStatusInfo.errorInformation.errorCategory AS category_in,
    nz(provisioningStatusInfo.errorInformation.reason) AS error_reason,
    nz(provisioningStatusInfo.errorInformation.additionalDetails) AS error_additional_details,
    nz(provisioningStatusInfo.errorInformation.recommendedAction) AS recommended_action,
    list_filter(provisioningSteps, lambda x: CASE WHEN x.details::VARCHAR ILIKE '%skip%reason%'
        THEN COALESCE(dkey(x.details, 'SkipReason', 'skipReason'),
                      dkey(x.details, 'Skip Reason', 'skipreason')) IS NOT NULL
        ELSE false END)[1].details AS skip_details,
    list_filter(provisioningSteps, lambda x: en(x.status) IN ('failure', '1')
        AND nz(x.name) IS NOT NULL)[1].name AS failed_step,
    durationInMilliseconds AS duration_in,
    COALESCE(nz(initiatedBy.initiatorType), nz(initiatedBy.initiatingType), nz(initiatedBy.type))
        AS initiator_in,
    COALESCE(nz(initiatedBy.displayName), nz(initiatedBy.name)) AS initiator_name,
    COALESCE(nz(sourceSystem.displayName), nz(sourceSystem.name)) AS source_system,
    COALESCE(nz(targetSystem.displayName), nz(targetSystem.name)) AS target_system,
    nz(sourceIdentity.id) AS source_id,
    COALESCE(nz(sourceIdentity.displayName), nz(sourceIdentity.name)) AS source_name,
    COALESCE(
        dkey(sourceIdentity.details, 'userPrincipalName', 'UserPrincipalName'),
        dkey(list_filter(provisioningSteps, lambda x:
            CASE WHEN x.details::VARCHAR ILIKE '%principalname%'
                THEN en(x.provisioningStepType) IN ('import', '0')
                     AND dkey(x.details, 'userPrincipalName', 'UserPrincipalName') IS NOT NULL
                ELSE false END)[1].details,
            'userPrincipalName', 'UserPrincipalName')
    ) AS source_upn,
    sourceIdentity.identityType AS source_type_in,
    nz(targetIdentity.id) AS target_id,
    COALESCE(nz(targetIdentity.displayName), nz(targetIdentity.name)) AS target_name,
    targetIdentity.identityType AS target_type_in
FROM r ORDER BY rowid
"""

_STEPS = """
SELECT id AS event_id, nz(changeId) AS change_id, pos - 1 AS position, nz(st.name) AS name,
       st.provisioningStepType AS step_type_in, st.status AS status_in,
       nz(st.description) AS description,
       CASE WHEN nonempty(st.details) THEN st.details::VARCHAR END AS details
FROM (SELECT rowid AS rn, id, changeId, unnest(provisioningSteps) AS st,
             generate_subscripts(provisioningSteps, 1) AS pos FROM r)
ORDER BY rn, pos
"""

_PROPS = """
SELECT id AS event_id, nz(changeId) AS change_id,
       COALESCE(nz(p.displayName), nz(p.name)) AS name,
       jtxt(p.oldValue) AS old_value, jtxt(p.newValue) AS new_value
FROM (SELECT rowid AS rn, id, changeId, unnest(modifiedProperties) AS p,
             generate_subscripts(modifiedProperties, 1) AS pos FROM r)
ORDER BY rn, pos
"""

_local = threading.local()


def _connection() -> Any:
    con = getattr(_local, "con", None)
    if con is None:
        import duckdb

        con = duckdb.connect(config={"preserve_insertion_order": True})
        con.execute(_MACROS)
        _local.con = con
    return con


def _columns_sql() -> str:
    items = ", ".join(f"'{k}': '{v}'" for k, v in COLUMNS.items())
    return "{" + items + "}"


_COLUMNS_SQL = _columns_sql()
# Built from the constant COLUMNS above; no outside text reaches this SQL.
_READ = (
    "CREATE OR REPLACE TEMP TABLE r AS SELECT * FROM read_json(?, format='newline_delimited', "  # noqa: S608
    "columns=" + _COLUMNS_SQL + ", maximum_object_size=268435456)"
)


def _enum(values: pd.Series, mapping: dict[Any, str]) -> tuple[pd.Series, pd.Series]:
    """Normalise raw enum text with the generic parser's rule, one call per distinct value."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    pairs = [norm_enum(v, mapping) for v in uniques] + [("unknown", None)]
    canon = np.array([p[0] for p in pairs], dtype=object)
    raw = np.array([p[1] for p in pairs], dtype=object)
    return (
        pd.Series(canon[codes], index=values.index, dtype="str"),
        pd.Series(raw[codes], index=values.index, dtype="str"),
    )


def _fast_map(values: pd.Series, fn: Any) -> pd.Series:
    """Apply ``fn`` once per distinct non-null value (null stays null)."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    table = np.array([fn(v) for v in uniques] + [None], dtype=object)
    return pd.Series(table[codes], index=values.index, dtype=object)


def graph_lines_to_frames(data: bytes | bytearray, origin: str) -> Frames | None:
    """Return frames for the JSON Lines records in ``data``, or None (see module doc)."""
    import duckdb

    con = _connection()
    fd, tmp = tempfile.mkstemp(prefix="provlens-", suffix=".jsonl")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        try:
            con.execute(_READ, [tmp])
            if con.execute(_CHECK).fetchall()[0][0]:
                return None
            ev = con.sql(_EVENTS).to_arrow_table()
            st = con.sql(_STEPS).to_arrow_table()
            mp = con.sql(_PROPS).to_arrow_table()
        except duckdb.Error:
            return None
        finally:
            with contextlib.suppress(duckdb.Error):
                con.execute("DROP TABLE IF EXISTS r")
    finally:
        with contextlib.suppress(FileNotFoundError):
            Path(tmp).unlink()
    return _frames(ev, st, mp, origin)


def _frames(ev: pa.Table, st: pa.Table, mp: pa.Table, origin: str) -> Frames | None:
    e = ev.to_pandas()
    times = parse_times(e["ts"].astype(object))
    if times.isna().any():
        return None
    out = pd.DataFrame({"id": e["id"], "activity_at": times})
    for col in ("tenant_id", "job_id", "cycle_id", "change_id"):
        out[col] = e[col]
    out["service_principal_id"] = e["service_principal_id"]
    out["service_principal_name"] = e["service_principal_name"]
    out["action"], out["action_raw"] = _enum(e["action_in"], ACTION)
    out["status"], out["status_raw"] = _enum(e["status_in"], STATUS)
    code = e["error_code"].where(~e["error_code"].isin(["", "None", "0"]), None)
    out["error_code"] = code
    cat = e["category_in"].where(e["category_in"] != "", None)
    cat_canon, cat_raw = _enum(cat, ERROR_CATEGORY)
    out["error_category"] = cat_canon.where(cat.notna(), None)
    out["error_category_raw"] = cat_raw.where(cat.notna(), None)
    out["error_reason"] = e["error_reason"]
    out["error_additional_details"] = e["error_additional_details"]
    out["recommended_action"] = e["recommended_action"]
    skip = _fast_map(e["skip_details"], _skip_reason)
    skipped_reason = e["error_reason"].where(out["status"] == "skipped", None)
    out["skip_reason"] = skip.where(skip.notna(), skipped_reason)
    out["failed_step"] = e["failed_step"]
    out["duration_ms"] = _fast_map(e["duration_in"], _duration).astype("Int64")
    init = e["initiator_in"]
    init_canon, init_raw = _enum(init, INITIATOR)
    out["initiator_type"] = init_canon.where(init.notna(), None)
    out["initiator_type_raw"] = init_raw.where(init.notna(), None)
    for col in ("initiator_name", "source_system", "target_system", "source_id", "source_name"):
        out[col] = e[col]
    out["source_upn"] = e["source_upn"]
    out["source_type"] = _fast_map(e["source_type_in"], identity_type)
    out["target_id"] = e["target_id"]
    out["target_name"] = e["target_name"]
    out["target_type"] = _fast_map(e["target_type_in"], identity_type)
    out["origin"] = origin

    s = st.to_pandas()
    steps = pd.DataFrame(
        {"event_id": s["event_id"], "change_id": s["change_id"], "position": s["position"]}
    )
    steps["name"] = s["name"]
    steps["step_type"], steps["step_type_raw"] = _enum(s["step_type_in"], STEP_TYPE)
    steps["status"], steps["status_raw"] = _enum(s["status_in"], STATUS)
    steps["description"] = s["description"]
    steps["details"] = s["details"]
    return {
        "events": schema.conform("events", out),
        "steps": schema.conform("steps", steps),
        "modified_properties": schema.conform("modified_properties", mp.to_pandas()),
    }


def _skip_reason(details: str) -> str | None:
    import orjson

    from ingest.records import _SKIP_KEYS

    d = {k.lower(): v for k, v in reversed(list(orjson.loads(details).items()))}
    for key in _SKIP_KEYS:
        if d.get(key):
            return str(d[key])
    return None


def _duration(text: str) -> int | None:
    import re

    t = text.strip()
    return int(float(t)) if re.fullmatch(r"-?\d+(\.\d+)?", t) else None
