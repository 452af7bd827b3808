"""The field map: where each canonical column of a provisioning record is found, in every shape.

One declaration per canonical column of ``events``, ``steps`` and ``modified_properties``: its
candidate paths, tried in order, the first non-empty value winning. Paths are spelled the way
Graph v1.0 writes them (camelCase), but every key is matched case-insensitively at every nesting
level, so the same path also reads Azure Monitor's PascalCase (``Id``, ``Name``), Log Analytics
columns (``ProvisioningAction``, ``ServicePrincipal`` holding JSON text) and any casing a
converter invents. Both engines read this map: the per-record reader (:mod:`ingest.records`)
walks the paths, and the columnar engine (:mod:`ingest.records_fast`) is generated from them.

Shapes, and how they reach the paths below:

- Graph v1.0 / the admin center's JSON download: the paths as written.
- Graph beta legacy: ``action``, ``statusInfo{status, errorCode, reason, ...}``.
- Azure Monitor diagnostic-settings / Event Hub / storage envelopes: the record is the
  envelope's ``properties`` (object or JSON text); the envelope itself is reachable under the
  ``@envelope`` prefix (``time``, ``resultType``, ``durationMs`` ...).
- Log Analytics ``AADProvisioningLogs`` rows: PascalCase columns at the top level (``Action`` or
  ``ProvisioningAction``, ``TimeGenerated``, ``ResultType``, ``ResultSignature`` ...); object
  columns are JSON text, parsed where a path goes through them.
- Portal CSV download: the normalised header aliases in ``csv`` (ingest.formats.portal_csv).

A value that is JSON text (``{...}`` / ``[...]``) is parsed when a path goes through it; an array
where an object is expected stands for its first object (``servicePrincipal`` as ``[{...}]``).
Keys inside ``details`` bags are free-form: they are looked up case-insensitively too, and the
bag itself is kept as JSON text with its keys as received.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Final

from ingest import schema

# The envelope of an Azure Monitor record, reachable from the inner record under this key.
ENVELOPE: Final = "@envelope"

# Value kinds: how the first non-empty value found is turned into the column's value.
TEXT: Final = "text"  # a non-empty string ("" is missing); objects/arrays as JSON text
ENUM: Final = "enum"  # normalised with the named enum table; unknown values keep a *_raw copy
IDENTITY: Final = "identity"  # Entra's free-text identity type -> user / group / other
DURATION: Final = "duration"  # integer milliseconds from a number or numeric text
TIME: Final = "time"  # ISO 8601 text (ingest.times.parse_times)
JSON: Final = "json"  # an object kept as JSON text (null when empty)
SNAKE: Final = "snake"  # text in lower snake case (`NotApplicable` -> `not_applicable`)


@dataclass(frozen=True)
class Field:
    """One canonical column: its candidate paths (first non-empty wins) and value kind."""

    column: str
    paths: tuple[str, ...]
    kind: str = TEXT
    enum: str | None = None
    # Normalised portal-CSV header spellings of this column (see portal_csv._norm_header).
    csv: tuple[str, ...] = field(default_factory=tuple)

    @property
    def keys(self) -> tuple[tuple[str, ...], ...]:
        """The paths as tuples of lower-case keys."""
        return tuple(tuple(p.lower().split(".")) for p in self.paths)


_ERR = "provisioningStatusInfo.errorInformation"
INNER_REASON: Final = "_inner_reason"

# Event columns read straight from paths. Derived columns (skip_reason, failed_step, the UPN
# from the import step, the envelope's tenant in its resource id) are rules in ingest.records
# and ingest.records_fast, documented in DERIVED below.
EVENT_FIELDS: Final[tuple[Field, ...]] = (
    Field("id", ("id", f"{ENVELOPE}.identity"), csv=("id", "activityid", "logid", "recordid")),
    Field(
        "activity_at",
        ("activityDateTime", f"{ENVELOPE}.time", "timeGenerated"),
        TIME,
        csv=(
            "date",
            "dateutc",
            "activitydatetime",
            "activitydate",
            "datetime",
            "timegenerated",
            "time",
            "timestamp",
        ),
    ),
    Field(
        "tenant_id",
        ("aadTenantId", "tenantId", f"{ENVELOPE}.tenantId"),
        csv=("tenantid", "tenant"),
    ),
    Field("job_id", ("jobId",), csv=("jobid", "job")),
    Field("cycle_id", ("cycleId",), csv=("cycleid", "cycle")),
    Field("change_id", ("changeId", f"{ENVELOPE}.correlationId"), csv=("changeid", "change")),
    Field(
        "service_principal_id",
        (
            "servicePrincipal.id",
            "targetSystem.details.servicePrincipalId",
            "sourceSystem.details.servicePrincipalId",
        ),
        csv=("serviceprincipalid", "applicationobjectid"),
    ),
    Field(
        "service_principal_name",
        (
            "servicePrincipal.displayName",
            "servicePrincipal.name",
            "targetSystem.details.servicePrincipalDisplayName",
            "sourceSystem.details.servicePrincipalDisplayName",
        ),
        csv=(
            "application",
            "applicationname",
            "appname",
            "serviceprincipal",
            "serviceprincipalname",
            "serviceprincipaldisplayname",
        ),
    ),
    Field(
        "action",
        ("provisioningAction", "action"),
        ENUM,
        "action",
        csv=("action", "provisioningaction"),
    ),
    Field(
        "status",
        (
            "provisioningStatusInfo.status",
            "statusInfo.status",
            f"{ENVELOPE}.resultType",
            "resultType",
        ),
        ENUM,
        "status",
        csv=("status", "result", "resulttype", "provisioningstatus"),
    ),
    Field(
        "error_code",
        (
            f"{_ERR}.errorCode",
            "statusInfo.errorCode",
            f"{ENVELOPE}.resultSignature",
            "resultSignature",
        ),
        csv=("errorcode", "statuserrorcode"),
    ),
    Field(
        "error_category",
        (f"{_ERR}.errorCategory", "statusInfo.errorCategory"),
        ENUM,
        "error_category",
        csv=("errorcategory",),
    ),
    Field(
        "error_reason",
        (
            f"{_ERR}.reason",
            "statusInfo.reason",
            f"{ENVELOPE}.resultDescription",
            "resultDescription",
        ),
        csv=(
            "reason",
            "errorreason",
            "statusreason",
            "failurereason",
            "errordescription",
            "troubleshootingreason",
        ),
    ),
    Field(
        "error_additional_details",
        (f"{_ERR}.additionalDetails", "statusInfo.additionalDetails"),
        csv=("additionaldetails", "erroradditionaldetails"),
    ),
    Field(
        "recommended_action",
        (f"{_ERR}.recommendedAction", "statusInfo.recommendedAction"),
        csv=("recommendedaction", "recommendation", "recommendations"),
    ),
    Field(
        "duration_ms",
        ("durationInMilliseconds", f"{ENVELOPE}.durationMs", "durationMs"),
        DURATION,
        csv=("durationms", "durationinmilliseconds", "durationmilliseconds", "duration"),
    ),
    Field(
        "initiator_type",
        ("initiatedBy.initiatorType", "initiatedBy.initiatingType", "initiatedBy.type"),
        ENUM,
        "initiator",
        csv=("initiatortype", "initiatedbytype"),
    ),
    Field(
        "initiator_name",
        ("initiatedBy.displayName", "initiatedBy.name"),
        csv=("initiatedby", "initiatedbydisplayname", "initiator", "initiatorname"),
    ),
    Field(
        "source_system",
        ("sourceSystem.displayName", "sourceSystem.name"),
        csv=("sourcesystem", "sourcesystemname", "sourcesystemdisplayname"),
    ),
    Field(
        "target_system",
        ("targetSystem.displayName", "targetSystem.name"),
        csv=("targetsystem", "targetsystemname", "targetsystemdisplayname"),
    ),
    Field(
        "source_id",
        ("sourceIdentity.id",),
        csv=("sourceid", "sourceidentityid", "sourceobjectid"),
    ),
    Field(
        "source_name",
        ("sourceIdentity.displayName", "sourceIdentity.name"),
        csv=(
            "identity",
            "sourcedisplayname",
            "sourcename",
            "sourceidentitydisplayname",
            "sourceidentityname",
            "displayname",
        ),
    ),
    Field(
        "source_upn",
        ("sourceIdentity.details.userPrincipalName",),
        csv=("userprincipalname", "sourceupn", "upn", "sourceuserprincipalname"),
    ),
    Field(
        "source_type",
        ("sourceIdentity.identityType",),
        IDENTITY,
        csv=("identitytype", "sourceidentitytype", "objecttype", "sourcetype"),
    ),
    Field(
        "target_id",
        ("targetIdentity.id",),
        csv=("targetid", "targetidentityid", "targetobjectid"),
    ),
    Field(
        "target_name",
        ("targetIdentity.displayName", "targetIdentity.name"),
        csv=(
            "targetdisplayname",
            "targetname",
            "targetidentitydisplayname",
            "targetidentityname",
        ),
    ),
    Field(
        "target_type",
        ("targetIdentity.identityType",),
        IDENTITY,
        csv=("targetidentitytype", "targettype"),
    ),
    Field(
        "envelope_result_type",
        (f"{ENVELOPE}.resultType", "resultType"),
        SNAKE,
    ),
    # Not a column: the inner record's own reason, the skip reason of a skipped record without
    # one in its steps (an envelope's resultDescription is not a skip reason).
    Field(INNER_REASON, (f"{_ERR}.reason", "statusInfo.reason")),
)

# Derived event columns: rules over the steps, the same in both engines.
DERIVED: Final[dict[str, str]] = {
    "skip_reason": (
        "the first step whose details hold `SkipReason` or `Skip Reason` (any casing); else, for"
        " a skipped record, the inner record's error reason"
    ),
    "failed_step": "the name of the first step whose status is failure and has a name",
    "source_upn": "when sourceIdentity.details has none: the first import step's details",
    "tenant_id": "for an envelope without tenantId: the `/tenants/<id>` part of its resourceId",
    "error_code": "`None` and `0` (how some exports write no error) are null",
}
SKIP_KEYS: Final = ("skipreason", "skip reason")
UPN_KEY: Final = "userprincipalname"
RESOURCE_ID: Final = f"{ENVELOPE}.resourceId"
NO_ERROR_CODES: Final = ("None", "0")

# Where the children of a record are, and their columns.
STEPS_PATH: Final = "provisioningSteps"
PROPERTIES_PATH: Final = "modifiedProperties"
STEP_FIELDS: Final[tuple[Field, ...]] = (
    Field("name", ("name",), csv=("stepname", "name", "provisioningstepname")),
    Field(
        "step_type",
        ("provisioningStepType",),
        ENUM,
        "step_type",
        csv=("steptype", "provisioningsteptype", "type"),
    ),
    Field("status", ("status",), ENUM, "status", csv=("stepstatus", "status", "result")),
    Field("description", ("description",), csv=("description", "stepdescription")),
    Field("details", ("details",), JSON, csv=("details", "stepdetails")),
)
STEP_CSV_ONLY: Final[dict[str, tuple[str, ...]]] = {
    "change_id": ("changeid", "change"),
    "position": ("position", "order", "stepnumber", "step", "index", "sequence"),
}
PROPERTY_FIELDS: Final[tuple[Field, ...]] = (
    Field(
        "name",
        ("displayName", "name"),
        csv=("displayname", "name", "propertyname", "attribute", "attributename", "property"),
    ),
    Field("old_value", ("oldValue",), csv=("oldvalue", "old", "previousvalue")),
    Field("new_value", ("newValue",), csv=("newvalue", "new", "value")),
)
PROPERTY_CSV_ONLY: Final[dict[str, tuple[str, ...]]] = {"change_id": ("changeid", "change")}
EVENT_CSV_ONLY: Final[dict[str, tuple[str, ...]]] = {"skip_reason": ("skipreason",)}

# Keys of an Azure Monitor envelope (any casing) that mark a record as one.
ENVELOPE_MARKERS: Final = ("category", "operationname")
# Keys whose values are free-form bags: lookups inside are case-insensitive, never structural.
BAGS: Final = ("details",)


def _enum_table(names: dict[str, str], ints: list[str]) -> dict[Any, str]:
    out: dict[Any, str] = {}
    for wire, canon in names.items():
        out[enum_key(wire)] = canon
    for i, canon in enumerate(ints):
        out[i] = canon
        out[str(i)] = canon
    return out


def enum_key(value: str) -> str:
    """The form enum text is compared in: lower case without `_` and spaces."""
    return value.strip().lower().replace("_", "").replace(" ", "")


ENUMS: Final[dict[str, dict[Any, str]]] = {
    "action": _enum_table(
        {
            "create": "create",
            "update": "update",
            "delete": "delete",
            "disable": "disable",
            "stagedDelete": "staged_delete",
            "other": "other",
        },
        ["other", "create", "delete", "disable", "update", "staged_delete", "unknown"],
    ),
    "status": _enum_table(
        {"success": "success", "failure": "failure", "skipped": "skipped", "warning": "warning"},
        list(schema.STATUSES),
    ),
    "step_type": _enum_table(
        {
            "import": "import",
            "scoping": "scoping",
            "matching": "matching",
            "processing": "processing",
            "referenceResolution": "reference_resolution",
            "export": "export",
        },
        list(schema.STEP_TYPES),  # Graph's integer values follow the same order
    ),
    "error_category": _enum_table(
        {"failure": "failure", "nonServiceFailure": "non_service_failure", "success": "success"},
        list(schema.ERROR_CATEGORIES),
    ),
    "initiator": _enum_table(
        {"user": "user", "application": "application", "system": "system"},
        list(schema.INITIATOR_TYPES),
    ),
}
# Enum columns whose value stays null when the record has none (action and status are required).
NULLABLE_ENUMS: Final = ("error_category", "initiator_type")


def norm_enum(value: Any, table: dict[Any, str]) -> tuple[str, str | None]:
    """Return ``(canonical, raw)``: raw is None when recognised, else the value as text."""
    if value is None or value == "":
        return "unknown", None
    if isinstance(value, bool):
        return "unknown", str(value)
    hit = table.get(value) if isinstance(value, int) else table.get(enum_key(str(value)))
    if hit is None or hit == "unknown":
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


_DURATION = re.compile(r"-?\d+(\.\d+)?")


def duration(value: Any) -> int | None:
    """Integer milliseconds from a number or numeric text (anything else is None)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value == value and abs(value) < 2**63 else None
    if isinstance(value, str):
        t = value.strip()
        return int(float(t)) if _DURATION.fullmatch(t) else None
    return None


_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def snake(value: Any) -> str | None:
    """Lower snake case of an envelope result type (`NotApplicable` -> `not_applicable`)."""
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    return re.sub(r"[\s\-]+", "_", _CAMEL.sub("_", text)).lower()


_TENANT_IN_RESOURCE = re.compile(r"/tenants/([^/]+)", re.IGNORECASE)


def tenant_in_resource(value: Any) -> str | None:
    """The tenant id in an envelope's resourceId (`/tenants/<id>/providers/...`)."""
    if not isinstance(value, str):
        return None
    m = _TENANT_IN_RESOURCE.search(value)
    return m.group(1) if m else None


def csv_aliases(
    fields: tuple[Field, ...], extra: dict[str, tuple[str, ...]] | None = None
) -> dict[str, tuple[str, ...]]:
    """Canonical column -> accepted normalised portal-CSV header spellings (first match wins)."""
    out = dict(extra or {})
    out.update({f.column: f.csv for f in fields if f.csv})
    return out
