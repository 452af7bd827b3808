"""Provisioning log records, in any of their shapes, to the events/steps/modified_properties frames.

One function, :func:`records_to_frames`, serves every source: Graph list responses and the admin
center's JSON download (camelCase), legacy beta records (``action``, ``statusInfo``), Azure Monitor
diagnostic-settings / Event Hub / storage envelopes (``time``, ``category``, ``properties{...}``,
PascalCase ``Id``/``Name``, integer enums, ``durationMs`` as a string), and Log Analytics
``AADProvisioningLogs`` rows (PascalCase columns whose object values are JSON text).

Every quirk in reference/graph/provisioning-object-summary.md section 5 is handled here: enum
casing and integers, ``servicePrincipal`` as object or array, the ``initiatingType`` typo, empty
strings for missing ids, 0-9 fractional-second digits and offsets, JSON-in-string values. Unknown
enum values become ``unknown`` with the raw value kept in the ``*_raw`` column.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson
import pandas as pd

from ingest import schema
from ingest.errors import BadInput

Frames = dict[str, pd.DataFrame]


def _enum_map(names: dict[str, str], ints: list[str]) -> dict[Any, str]:
    out: dict[Any, str] = {}
    for wire, canon in names.items():
        out[wire.lower().replace("_", "").replace(" ", "")] = canon
    for i, canon in enumerate(ints):
        out[i] = canon
        out[str(i)] = canon
    return out


ACTION = _enum_map(
    {
        "create": "create",
        "update": "update",
        "delete": "delete",
        "disable": "disable",
        "stagedDelete": "staged_delete",
        "other": "other",
    },
    ["other", "create", "delete", "disable", "update", "staged_delete", "unknown"],
)
STATUS = _enum_map(
    {"success": "success", "failure": "failure", "skipped": "skipped", "warning": "warning"},
    ["success", "failure", "skipped", "warning", "unknown"],
)
STEP_TYPE = _enum_map(
    {
        "import": "import",
        "scoping": "scoping",
        "matching": "matching",
        "processing": "processing",
        "referenceResolution": "reference_resolution",
        "export": "export",
    },
    ["import", "scoping", "matching", "processing", "reference_resolution", "export", "unknown"],
)
ERROR_CATEGORY = _enum_map(
    {"failure": "failure", "nonServiceFailure": "non_service_failure", "success": "success"},
    ["failure", "non_service_failure", "success", "unknown"],
)
INITIATOR = _enum_map(
    {"user": "user", "application": "application", "system": "system"},
    ["user", "application", "system", "unknown"],
)


def norm_enum(value: Any, mapping: Mapping[Any, str]) -> tuple[str, str | None]:
    """Return ``(canonical, raw)``: raw is None when recognised, else the value as text."""
    if value is None or value == "":
        return "unknown", None
    if isinstance(value, bool):
        return "unknown", str(value)
    if isinstance(value, int):
        hit = mapping.get(value)
    else:
        text = str(value)
        hit = mapping.get(text.strip().lower().replace("_", "").replace(" ", ""))
    if hit is None or (hit == "unknown"):
        return "unknown", str(value)
    return hit, None


def identity_type(value: Any) -> str | None:
    """Return user / group / other for Entra's free-text identity types (None when missing)."""
    if value is None or value == "":
        return None
    text = str(value).strip().lower()
    if text.endswith(":user") or text == "user":
        return "user"
    if text.endswith(":group") or text == "group":
        return "group"
    return "other"


def _json_value(value: Any) -> Any:
    """Parse JSON-in-a-string values (Log Analytics columns, some stream fields)."""
    if isinstance(value, str):
        s = value.strip()
        if s[:1] in ("{", "[") or s == "null":
            try:
                return orjson.loads(s)
            except orjson.JSONDecodeError:
                return value
    return value


def _obj(value: Any) -> dict[str, Any]:
    """Return a dict for an object-ish value (object, JSON text, one-element array), else {}."""
    value = _json_value(value)
    if isinstance(value, list):
        value = next((v for v in value if isinstance(v, dict)), None)
    return value if isinstance(value, dict) else {}


def _ci(d: Mapping[str, Any]) -> dict[str, Any]:
    """Lower-case the keys of ``d`` (the first spelling wins)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.setdefault(k.lower(), v)
    return out


def _text(value: Any) -> str | None:
    """Return a non-empty string or None (Entra writes "" for missing ids and names)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value if value != "" else None
    if isinstance(value, (dict, list)):
        return orjson.dumps(value).decode()
    return str(value)


def _name(obj: Mapping[str, Any]) -> str | None:
    """Display name of a lower-cased identity object (Graph `displayName`, stream `Name`)."""
    return _text(_first(obj.get("displayname"), obj.get("name")))


def _first(*values: Any) -> Any:
    for v in values:
        if v is not None and v != "":
            return v
    return None


_TENANT_IN_RESOURCE = re.compile(r"/tenants/([^/]+)", re.IGNORECASE)
_SKIP_KEYS = ("skipreason", "skip reason")


def _details_text(details: Any) -> str | None:
    details = _json_value(details)
    if details is None or details == {} or details == "":
        return None
    if isinstance(details, str):
        return details
    return orjson.dumps(details).decode()


class _Columns:
    """Column lists being filled record by record."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.data: dict[str, list[Any]] = {n: [] for n in names}

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.data, columns=self.names)


EVENT_COLUMNS = [c for c in schema.EVENTS.names]
STEP_COLUMNS = [c for c in schema.STEPS.names]
MP_COLUMNS = [c for c in schema.MODIFIED_PROPERTIES.names]


def _unwrap(rec: Mapping[str, Any]) -> dict[str, Any]:
    """Return a record with lower-cased keys, flattening diagnostic envelopes and LA rows."""
    top = _ci(rec)
    props = top.get("properties")
    if isinstance(props, (dict, str)) and ("category" in top or "operationname" in top):
        inner = _ci(_obj(props))
        # Envelope fields fill what properties lack.
        if inner.get("id") in (None, ""):
            inner["id"] = top.get("identity")
        if inner.get("activitydatetime") in (None, ""):
            inner["activitydatetime"] = top.get("time")
        if inner.get("tenantid") in (None, ""):
            tenant = top.get("tenantid")
            if not tenant and isinstance(top.get("resourceid"), str):
                m = _TENANT_IN_RESOURCE.search(top["resourceid"])
                tenant = m.group(1) if m else None
            inner["tenantid"] = tenant
        if inner.get("durationinmilliseconds") in (None, ""):
            inner["durationinmilliseconds"] = top.get("durationms")
        if inner.get("changeid") in (None, ""):
            inner["changeid"] = top.get("correlationid")
        inner["_resulttype"] = top.get("resulttype")
        inner["_resultsignature"] = top.get("resultsignature")
        inner["_resultdescription"] = top.get("resultdescription")
        return inner
    if "timegenerated" in top and "activitydatetime" not in top:
        # Log Analytics AADProvisioningLogs row.
        la = dict(top)
        la["activitydatetime"] = top.get("timegenerated")
        la["tenantid"] = _first(top.get("aadtenantid"), None)
        la["durationinmilliseconds"] = top.get("durationms")
        la["_resulttype"] = top.get("resulttype")
        la["_resultsignature"] = top.get("resultsignature")
        la["_resultdescription"] = top.get("resultdescription")
        return la
    return top


def records_to_frames(
    records: Iterable[Mapping[str, Any]],
    origin: str,
    locate: Callable[[int], str] | None = None,
) -> Frames:
    """Return events, steps and modified_properties frames for provisioning log ``records``.

    ``locate(i)`` names the place of record ``i`` for error messages (default ``record i+1``).
    Raises BadInput for a record that is not an object, has no id or no usable timestamp.
    """
    where = locate or (lambda i: f"record {i + 1}")
    ev = _Columns(EVENT_COLUMNS)
    st = _Columns(STEP_COLUMNS)
    mp = _Columns(MP_COLUMNS)
    times_raw: list[Any] = []
    e = ev.data
    s = st.data
    m = mp.data
    for i, rec in enumerate(records):
        if not isinstance(rec, Mapping):
            raise BadInput(
                where(i),
                f"expected a provisioning record (a JSON object), found {type(rec).__name__}",
                "check that the file is a provisioning log export; nothing was stored",
            )
        r = _unwrap(rec)
        if isinstance(r.get("id"), (dict, list, bool, float)):
            raise BadInput(
                where(i),
                f"record id is not a string ({type(r.get('id')).__name__})",
                "provisioning records need an `id`; nothing was stored",
            )
        event_id = _text(r.get("id"))
        if event_id is None:
            raise BadInput(
                where(i),
                "record has no id",
                "provisioning records need an `id`; nothing was stored",
            )
        if not isinstance(event_id, str):
            event_id = str(event_id)
        ts = r.get("activitydatetime")
        if not isinstance(ts, str) or not ts:
            raise BadInput(
                where(i),
                f"record {event_id!r} has no activityDateTime (found {ts!r})",
                "nothing was stored",
            )
        times_raw.append(ts)
        change_id = _text(r.get("changeid"))

        # Status and error: provisioningStatusInfo, legacy statusInfo, envelope resultType.
        psi = _ci(_obj(r.get("provisioningstatusinfo")))
        legacy = _ci(_obj(r.get("statusinfo")))
        err = _ci(_obj(psi.get("errorinformation")))
        if not err and legacy:
            err = {
                k: legacy.get(k)
                for k in (
                    "errorcode",
                    "reason",
                    "additionaldetails",
                    "errorcategory",
                    "recommendedaction",
                )
            }
        status_value = _first(psi.get("status"), legacy.get("status"), r.get("_resulttype"))
        status, status_raw = norm_enum(status_value, STATUS)
        action, action_raw = norm_enum(_first(r.get("provisioningaction"), r.get("action")), ACTION)
        category_value = err.get("errorcategory")
        if category_value in (None, ""):
            category, category_raw = None, None
        else:
            category, category_raw = norm_enum(category_value, ERROR_CATEGORY)

        initiator = _ci(_obj(r.get("initiatedby")))
        init_value = _first(
            initiator.get("initiatortype"), initiator.get("initiatingtype"), initiator.get("type")
        )
        if init_value is None:
            init_type, init_raw = None, None
        else:
            init_type, init_raw = norm_enum(init_value, INITIATOR)

        sp = _ci(_obj(r.get("serviceprincipal")))
        source_sys = _ci(_obj(r.get("sourcesystem")))
        target_sys = _ci(_obj(r.get("targetsystem")))
        sys_details = _ci(_obj(target_sys.get("details"))) or _ci(_obj(source_sys.get("details")))
        src = _ci(_obj(r.get("sourceidentity")))
        tgt = _ci(_obj(r.get("targetidentity")))
        src_details = _ci(_obj(src.get("details")))

        # Steps.
        steps = _json_value(r.get("provisioningsteps"))
        skip_reason: str | None = None
        failed_step: str | None = None
        upn = _text(src_details.get("userprincipalname"))
        if isinstance(steps, list):
            for pos, step in enumerate(steps):
                if not isinstance(step, Mapping):
                    continue
                sd = _ci(step)
                step_type, step_type_raw = norm_enum(sd.get("provisioningsteptype"), STEP_TYPE)
                step_status, step_status_raw = norm_enum(sd.get("status"), STATUS)
                details = _json_value(sd.get("details"))
                name = _text(sd.get("name"))
                if isinstance(details, Mapping) and details:
                    dd = _ci(details)
                    if skip_reason is None:
                        for key in _SKIP_KEYS:
                            if dd.get(key):
                                skip_reason = str(dd[key])
                                break
                    if upn is None and step_type == "import":
                        upn = _text(dd.get("userprincipalname"))
                if failed_step is None and step_status == "failure":
                    failed_step = name
                s["event_id"].append(event_id)
                s["change_id"].append(change_id)
                s["position"].append(pos)
                s["name"].append(name)
                s["step_type"].append(step_type)
                s["step_type_raw"].append(step_type_raw)
                s["status"].append(step_status)
                s["status_raw"].append(step_status_raw)
                s["description"].append(_text(sd.get("description")))
                s["details"].append(_details_text(details))

        props = _json_value(r.get("modifiedproperties"))
        if isinstance(props, list):
            for prop in props:
                if not isinstance(prop, Mapping):
                    continue
                pd_ = _ci(prop)
                m["event_id"].append(event_id)
                m["change_id"].append(change_id)
                m["name"].append(_name(pd_))
                m["old_value"].append(_text(pd_.get("oldvalue")))
                m["new_value"].append(_text(pd_.get("newvalue")))

        duration = r.get("durationinmilliseconds")
        if isinstance(duration, str):
            duration = duration.strip()
            duration = int(float(duration)) if re.fullmatch(r"-?\d+(\.\d+)?", duration) else None
        elif isinstance(duration, float):
            duration = int(duration)
        elif not isinstance(duration, int) or isinstance(duration, bool):
            duration = None

        error_code = _text(_first(err.get("errorcode"), r.get("_resultsignature")))
        if error_code in ("None", "0"):
            error_code = None
        if status == "skipped" and skip_reason is None:
            skip_reason = _text(err.get("reason")) if err else None

        e["id"].append(event_id)
        e["activity_at"].append(None)
        e["tenant_id"].append(_text(r.get("tenantid")))
        e["job_id"].append(_text(r.get("jobid")))
        e["cycle_id"].append(_text(r.get("cycleid")))
        e["change_id"].append(change_id)
        e["service_principal_id"].append(
            _text(_first(sp.get("id"), sys_details.get("serviceprincipalid")))
        )
        e["service_principal_name"].append(
            _text(
                _first(
                    sp.get("displayname"),
                    sp.get("name"),
                    sys_details.get("serviceprincipaldisplayname"),
                )
            )
        )
        e["action"].append(action)
        e["action_raw"].append(action_raw)
        e["status"].append(status)
        e["status_raw"].append(status_raw)
        e["error_code"].append(error_code)
        e["error_category"].append(category)
        e["error_category_raw"].append(category_raw)
        e["error_reason"].append(_text(_first(err.get("reason"), r.get("_resultdescription"))))
        e["error_additional_details"].append(_text(err.get("additionaldetails")))
        e["recommended_action"].append(_text(err.get("recommendedaction")))
        e["skip_reason"].append(skip_reason)
        e["failed_step"].append(failed_step)
        e["duration_ms"].append(duration)
        e["initiator_type"].append(init_type)
        e["initiator_type_raw"].append(init_raw)
        e["initiator_name"].append(_name(initiator))
        e["source_system"].append(_name(source_sys))
        e["target_system"].append(_name(target_sys))
        e["source_id"].append(_text(src.get("id")))
        e["source_name"].append(_name(src))
        e["source_upn"].append(upn)
        e["source_type"].append(identity_type(src.get("identitytype")))
        e["target_id"].append(_text(tgt.get("id")))
        e["target_name"].append(_name(tgt))
        e["target_type"].append(identity_type(tgt.get("identitytype")))
        e["origin"].append(origin)

    events = ev.frame()
    if len(events):
        parsed = parse_times(pd.Series(times_raw, dtype="object"))
        bad = parsed.isna()
        if bad.any():
            i = int(bad.to_numpy().nonzero()[0][0])
            raise BadInput(
                where(i),
                f"activityDateTime {times_raw[i]!r} is not an ISO 8601 time in range",
                "nothing was stored",
            )
        events["activity_at"] = parsed
    return {
        "events": schema.conform("events", events),
        "steps": schema.conform("steps", st.frame()),
        "modified_properties": schema.conform("modified_properties", mp.frame()),
    }


def parse_times(values: pd.Series) -> pd.Series:
    """Parse ISO 8601 strings (0-9 fractional digits, Z or offsets) to UTC; bad ones become NaT."""
    out = pd.to_datetime(values, utc=True, format="ISO8601", errors="coerce").astype(
        "datetime64[us, UTC]"
    )
    missing = out.isna() & values.notna()
    if missing.any():
        # Years outside the nanosecond range (0001 sentinels, 9999): parse those one by one.
        fixed = [_parse_one(values.loc[i]) for i in out.index[missing]]
        repaired = pd.Series(
            [pd.NaT if t is None else t for t in fixed], index=out.index[missing], dtype=object
        )
        out = out.astype(object)
        out.loc[repaired.index] = repaired
        out = pd.Series(
            pd.array(
                [
                    pd.NaT if v is None or v is pd.NaT else pd.Timestamp(v).as_unit("us")
                    for v in out
                ],
                dtype="datetime64[us, UTC]",
            ),
            index=values.index,
        )
    # Years outside 1..9999 (pandas accepts year 0) cannot become Python datetimes, which every
    # report, export and `store info` needs: treat them as not a time rather than store them.
    out = out.where((out.dt.year >= 1) & (out.dt.year <= 9999))
    return out


_FRACTION = re.compile(r"(\.\d{6})\d+")


def _parse_one(value: Any) -> pd.Timestamp | None:
    if not isinstance(value, str):
        return None
    try:
        ts = pd.Timestamp(_FRACTION.sub(r"\1", value.strip()))
    except (ValueError, OverflowError):
        return None
    if ts is pd.NaT:
        return None
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    return ts.tz_convert("UTC")
