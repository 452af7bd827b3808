"""The canonical tables: one documented schema per frame.

Every source (Graph, portal downloads, Azure Monitor, Log Analytics, the wiki's SCIM side, the demo)
lands in these tables. Column names are a contract (DESIGN.md): reports, exports and outside tools
depend on them. Each column is declared once here with its dtype, allowed values and meaning; the
pandera schemas, the empty frames and :func:`conform` are all derived from these declarations.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import pandas as pd

if TYPE_CHECKING:
    import pandera.pandas as pa

# Logical column types and the pandas dtype each becomes.
TEXT: Final = "text"
TIME: Final = "time"
INT: Final = "int"
FLOAT: Final = "float"
BOOL: Final = "bool"

DTYPES: Final[dict[str, str]] = {
    TEXT: "str",
    TIME: "datetime64[us, UTC]",
    INT: "Int64",
    FLOAT: "Float64",
    BOOL: "boolean",
}

ACTIONS: Final = ("create", "update", "delete", "disable", "staged_delete", "other", "unknown")
STATUSES: Final = ("success", "failure", "skipped", "warning", "unknown")
STEP_TYPES: Final = (
    "import",
    "scoping",
    "matching",
    "processing",
    "reference_resolution",
    "export",
    "unknown",
)
ERROR_CATEGORIES: Final = ("failure", "non_service_failure", "success", "unknown")
INITIATOR_TYPES: Final = ("user", "application", "system", "unknown")
IDENTITY_TYPES: Final = ("user", "group", "other")
ORIGINS: Final = ("graph", "file", "log_analytics", "demo")
SCIM_OPERATIONS: Final = ("create", "read", "query", "replace", "patch", "delete", "other")
SEVERITIES: Final = ("info", "warning", "critical")
ALERT_STATES: Final = ("firing", "resolved")
MEMBERSHIP_CHANGE_KINDS: Final = ("added", "removed")
SCIM_RESOURCE_TYPES: Final = (
    "User",
    "Group",
    "Schemas",
    "ServiceProviderConfig",
    "ResourceTypes",
    "Bulk",
    "other",
)


@dataclass(frozen=True)
class Col:
    """One column of a canonical table."""

    name: str
    kind: str
    doc: str
    values: tuple[str, ...] | None = None
    required: bool = False  # never null


@dataclass(frozen=True)
class Table:
    """A canonical table: its columns, key and how a new batch replaces stored rows."""

    name: str
    doc: str
    columns: tuple[Col, ...]
    key: tuple[str, ...]
    # "row": a stored row is replaced by a new row with the same key (last write wins).
    # "group": all stored rows sharing a key value are replaced by the new batch's rows for it.
    # "child": rows follow their parent event (steps, modified properties).
    mode: str = "row"

    @property
    def names(self) -> list[str]:
        """Column names in order."""
        return [c.name for c in self.columns]

    @property
    def time_columns(self) -> list[str]:
        """Names of the timestamp columns."""
        return [c.name for c in self.columns if c.kind == TIME]

    def col(self, name: str) -> Col:
        """Return the declaration of column ``name``."""
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


EVENTS = Table(
    "events",
    "One row per provisioning log record (Graph provisioningObjectSummary and its other shapes).",
    (
        Col("id", TEXT, "Activity id of the record; the table's key.", required=True),
        Col("activity_at", TIME, "When the action happened (UTC).", required=True),
        Col("tenant_id", TEXT, "Entra tenant id."),
        Col("job_id", TEXT, "Synchronization job id, e.g. `scim.<guid>.<guid>`."),
        Col("cycle_id", TEXT, "Provisioning cycle (one run of the job)."),
        Col("change_id", TEXT, "Id of this change within the cycle; joins the portal CSV files."),
        Col("service_principal_id", TEXT, "Object id of the enterprise app running the job."),
        Col("service_principal_name", TEXT, "Display name of that enterprise app."),
        Col("action", TEXT, "What the service did to the object.", ACTIONS, required=True),
        Col("action_raw", TEXT, "The action as received when it was not recognised."),
        Col("status", TEXT, "Outcome of the record.", STATUSES, required=True),
        Col("status_raw", TEXT, "The status as received when it was not recognised."),
        Col("error_code", TEXT, "Error code, often app-prefixed (`TheOrgWikiEntryConflict`)."),
        Col("error_category", TEXT, "Entra's category of the error.", ERROR_CATEGORIES),
        Col("error_category_raw", TEXT, "The category as received when it was not recognised."),
        Col("error_reason", TEXT, "Entra's human-readable reason."),
        Col("error_additional_details", TEXT, "Additional details of the error."),
        Col("recommended_action", TEXT, "Entra's recommended action, when given."),
        Col("skip_reason", TEXT, "Why the object was skipped (`NotEffectivelyEntitled`, ...)."),
        Col("failed_step", TEXT, "Name of the first step whose status is failure."),
        Col("duration_ms", INT, "How long the action took, milliseconds."),
        Col("initiator_type", TEXT, "Who started it.", INITIATOR_TYPES),
        Col("initiator_type_raw", TEXT, "The initiator type as received when not recognised."),
        Col("initiator_name", TEXT, "Initiator display name (`Azure AD Provisioning Service`)."),
        Col("source_system", TEXT, "Source system display name."),
        Col("target_system", TEXT, "Target system display name."),
        Col("source_id", TEXT, "Object id in the source (the Entra object id)."),
        Col("source_name", TEXT, "Display name of the source object."),
        Col("source_upn", TEXT, "User principal name of the source object, when known."),
        Col("source_type", TEXT, "Kind of source object.", IDENTITY_TYPES),
        Col("target_id", TEXT, "Object id in the target (the wiki's SCIM id)."),
        Col("target_name", TEXT, "Display name of the target object."),
        Col("target_type", TEXT, "Kind of target object.", IDENTITY_TYPES),
        Col("origin", TEXT, "Where the row came from.", ORIGINS, required=True),
        Col(
            "envelope_result_type",
            TEXT,
            "The Azure Monitor / Log Analytics envelope's `resultType` as it arrived, lower snake"
            " case (`success`, `failure`, `skipped` ...); null without an envelope. It can"
            " disagree with `status`, which comes from the inner record.",
        ),
    ),
    key=("id",),
)

STEPS = Table(
    "steps",
    "The ordered steps of each provisioning record (import, scoping, matching, export ...).",
    (
        Col("event_id", TEXT, "The event this step belongs to.", required=True),
        Col("change_id", TEXT, "The event's change id."),
        Col("position", INT, "0-based order of the step within the event.", required=True),
        Col("name", TEXT, "Step name (`EntryImportAdd`, `EntryExportUpdate` ...)."),
        Col("step_type", TEXT, "Kind of step.", STEP_TYPES, required=True),
        Col("step_type_raw", TEXT, "The step type as received when it was not recognised."),
        Col("status", TEXT, "Outcome of the step.", STATUSES, required=True),
        Col("status_raw", TEXT, "The step status as received when it was not recognised."),
        Col("description", TEXT, "Human-readable description of the step."),
        Col("details", TEXT, "The step's details bag as JSON text (keys as received)."),
    ),
    key=("event_id",),
    mode="child",
)

MODIFIED_PROPERTIES = Table(
    "modified_properties",
    "Attributes an event changed on the target, old value to new value (both as text).",
    (
        Col("event_id", TEXT, "The event that changed the attribute.", required=True),
        Col("change_id", TEXT, "The event's change id."),
        Col("name", TEXT, "Target attribute name (`userName`, `active`, `name.givenName` ...)."),
        Col("old_value", TEXT, "Previous value (usually unknown, null)."),
        Col("new_value", TEXT, "New value as text (`True`, `False`, comma-joined lists)."),
    ),
    key=("event_id",),
    mode="child",
)

SYNC_JOBS = Table(
    "sync_jobs",
    "Snapshots of synchronization job status, one row per job per pull.",
    (
        Col("captured_at", TIME, "When this snapshot was taken.", required=True),
        Col("service_principal_id", TEXT, "Enterprise app the job belongs to."),
        Col("job_id", TEXT, "Synchronization job id.", required=True),
        Col("template_id", TEXT, "Job template (`scim`, `Azure2Azure` ...)."),
        Col("status_code", TEXT, "Job state (`Active`, `Paused`, `Quarantine`, `NotRun` ...)."),
        Col("schedule_state", TEXT, "Schedule state (`Active`, `Disabled`, `Paused`)."),
        Col("schedule_interval_s", INT, "Seconds between cycles; null = never runs by itself."),
        Col("last_execution_state", TEXT, "State of the last execution (`Succeeded` ...)."),
        Col("last_execution_began", TIME, "When the last execution began."),
        Col("last_execution_ended", TIME, "When the last execution ended."),
        Col("last_execution_activity_id", TEXT, "Activity id of the last execution."),
        Col("count_entitled", INT, "Objects entitled (in scope) in the last execution."),
        Col("count_escrowed", INT, "Objects escrowed (held for retry) in the last execution."),
        Col("count_exported", INT, "Objects exported in the last execution."),
        Col("count_imported", INT, "Objects imported in the last execution."),
        Col("quarantine_reason", TEXT, "Why the job is quarantined, when it is."),
        Col("quarantine_began", TIME, "When the current quarantine began."),
        Col("quarantine_next_attempt", TIME, "When the service next retries a quarantined job."),
        Col("quarantine_series_count", INT, "How many quarantines in a row."),
        Col("steady_state_first_at", TIME, "First time the job reached steady state."),
        Col("steady_state_last_at", TIME, "Last time the job was in steady state."),
    ),
    key=("captured_at", "service_principal_id", "job_id"),
)

ASSIGNMENTS = Table(
    "assignments",
    "App role assignments of the enterprise app (who is assigned, directly or as a group).",
    (
        Col("service_principal_id", TEXT, "Enterprise app.", required=True),
        Col("principal_id", TEXT, "Assigned user or group object id.", required=True),
        Col("principal_type", TEXT, "`user`, `group` or `other`.", IDENTITY_TYPES),
        Col("principal_name", TEXT, "Display name of the assigned principal."),
        Col("app_role_id", TEXT, "App role id (all zeros = Default Access)."),
        Col("default_access", BOOL, "True for Default Access, which Entra does not provision."),
        Col("created_at", TIME, "When the assignment was made."),
    ),
    key=("service_principal_id",),
    mode="group",
)

GROUP_MEMBERS = Table(
    "group_members",
    "Transitive members of assigned groups, marking whether membership is direct.",
    (
        Col("group_id", TEXT, "The assigned group.", required=True),
        Col("member_id", TEXT, "Member object id.", required=True),
        Col("member_type", TEXT, "`user`, `group` or `other`.", IDENTITY_TYPES),
        Col("member_upn", TEXT, "Member's user principal name, when a user."),
        Col("member_name", TEXT, "Member's display name."),
        Col("direct", BOOL, "True when a direct member (nested members are not provisioned)."),
        Col(
            "first_seen_at",
            TIME,
            "When a stored members snapshot first listed this member of this group: the pull's "
            "capture time (a file's ingest time), carried over while later snapshots keep "
            "listing the member; a member dropped and listed again starts anew. Null for rows "
            "stored before this column existed.",
        ),
    ),
    key=("group_id",),
    mode="group",
)

MEMBERSHIP_CHANGES = Table(
    "membership_changes",
    "Group membership changes from Entra's directory audit (`GET /auditLogs/directoryAudits`, "
    "activities `Add member to group` and `Remove member from group`).",
    (
        Col("audit_id", TEXT, "The directoryAudit record's id; the table's key.", required=True),
        Col(
            "changed_at", TIME, "When the change happened (`activityDateTime`, UTC).", required=True
        ),
        Col(
            "group_id",
            TEXT,
            "The group (`Group.ObjectID` of the user's modified properties).",
            required=True,
        ),
        Col("group_name", TEXT, "The group's display name (`Group.DisplayName`)."),
        Col("member_id", TEXT, "Object id of the member added or removed.", required=True),
        Col("member_type", TEXT, "`user`, `group` or `other`.", IDENTITY_TYPES),
        Col("member_upn", TEXT, "The member's user principal name, when a user."),
        Col(
            "change",
            TEXT,
            "Whether the member was added or removed.",
            MEMBERSHIP_CHANGE_KINDS,
            required=True,
        ),
        Col("result", TEXT, "The audit record's result (`success`, `failure` ...), lower case."),
        Col("initiated_by", TEXT, "Who made the change: a user's UPN or an app's display name."),
    ),
    key=("audit_id",),
)

SCIM_RESOURCES = Table(
    "scim_resources",
    "Snapshots of the wiki's SCIM state (`GET /Users`, `GET /Groups`).",
    (
        Col("captured_at", TIME, "When this snapshot was taken.", required=True),
        Col("resource_type", TEXT, "`User` or `Group`.", required=True),
        Col("id", TEXT, "The wiki's SCIM id.", required=True),
        Col("external_id", TEXT, "externalId (Entra object id when provisioned by Entra)."),
        Col("user_name", TEXT, "userName (users only)."),
        Col("display_name", TEXT, "displayName."),
        Col("active", BOOL, "Whether the account is active (users)."),
        Col("created_at", TIME, "meta.created."),
        Col("modified_at", TIME, "meta.lastModified."),
    ),
    key=("captured_at", "resource_type", "id"),
)

SCIM_REQUESTS = Table(
    "scim_requests",
    "One row per SCIM request the wiki received (its audit records or access logs).",
    (
        Col("request_id", TEXT, "Request id; the table's key.", required=True),
        Col("received_at", TIME, "When the wiki received the request (UTC).", required=True),
        Col("method", TEXT, "HTTP method."),
        Col("path", TEXT, "Request path with its query string as received."),
        Col("resource_type", TEXT, "SCIM resource type addressed.", SCIM_RESOURCE_TYPES),
        Col("resource_id", TEXT, "SCIM id in the path, when any."),
        Col("operation", TEXT, "What the request does.", SCIM_OPERATIONS),
        Col("user_name", TEXT, "userName sent or returned (null for groups)."),
        Col("external_id", TEXT, "externalId sent or returned."),
        Col("active_set", BOOL, "What a POST/PUT/PATCH set `active` to; null when untouched."),
        Col("status_code", INT, "HTTP status the wiki answered."),
        Col("scim_type", TEXT, "SCIM error scimType (`uniqueness`, `invalidValue` ...)."),
        Col("detail", TEXT, "SCIM error detail."),
        Col("latency_ms", FLOAT, "How long the wiki took, milliseconds."),
        Col("client", TEXT, "Client address."),
    ),
    key=("request_id",),
)

ALERTS = Table(
    "alerts",
    "Alerts provlens raised: one row per firing of a rule about a subject, kept as history.",
    (
        Col(
            "alert_id",
            TEXT,
            "`<rule>:<subject>`: the same for every firing of a rule about a subject.",
            required=True,
        ),
        Col(
            "rule", TEXT, "Rule name (`quarantine`, `stalled`, `failure_spike` ...).", required=True
        ),
        Col(
            "subject",
            TEXT,
            "What it is about: a job id, a service principal id, a user's object id or `wiki`.",
            required=True,
        ),
        Col("severity", TEXT, "How urgent.", SEVERITIES, required=True),
        Col(
            "state",
            TEXT,
            "`firing` until the condition clears, then `resolved`.",
            ALERT_STATES,
            required=True,
        ),
        Col(
            "raised_at",
            TIME,
            "When this firing was raised (the run's reference time).",
            required=True,
        ),
        Col("resolved_at", TIME, "When the condition was seen cleared; null while firing."),
        Col("summary", TEXT, "One line saying what is wrong (text, never markup)."),
        Col("detail", TEXT, "The figures behind it as JSON text (counts, thresholds, times)."),
        Col("link", TEXT, "Deep link into the dashboard (`users?user=...`, `events?cycle=...`)."),
        Col(
            "delivered_to",
            TEXT,
            "Targets (names, never URLs) that received the current state, comma-separated.",
        ),
        Col(
            "delivery_pending", BOOL, "True while a target still has to receive the current state."
        ),
    ),
    # alert_id alone would overwrite a resolved firing when the rule fires again: keep each firing.
    key=("alert_id", "raised_at"),
)

TABLES: Final[dict[str, Table]] = {
    t.name: t
    for t in (
        EVENTS,
        STEPS,
        MODIFIED_PROPERTIES,
        SYNC_JOBS,
        ASSIGNMENTS,
        GROUP_MEMBERS,
        SCIM_RESOURCES,
        SCIM_REQUESTS,
        ALERTS,
        MEMBERSHIP_CHANGES,
    )
}

# Child tables follow the events they belong to.
CHILD_TABLES: Final = ("steps", "modified_properties")


def empty_frame(table: str) -> pd.DataFrame:
    """Return an empty frame with the table's columns and dtypes."""
    spec = TABLES[table]
    return pd.DataFrame({c.name: pd.Series(dtype=DTYPES[c.kind]) for c in spec.columns})


def conform(table: str, df: pd.DataFrame) -> pd.DataFrame:
    """Return ``df`` with exactly the table's columns, in order, cast to their dtypes.

    Missing columns are added as nulls; extra columns are dropped. Does not modify ``df``.
    """
    spec = TABLES[table]
    if _canonical(spec, df):
        return df.copy(deep=False)  # already canonical (a frame conformed before): no casts
    out: dict[str, pd.Series] = {}
    n = len(df)
    for c in spec.columns:
        dtype = DTYPES[c.kind]
        if c.name in df.columns:
            s = df[c.name]
            if str(s.dtype) != dtype:
                if c.kind == TIME:
                    s = pd.to_datetime(s, utc=True, format="ISO8601").astype(dtype)
                elif c.kind == TEXT:
                    s = s.astype("object").where(s.notna(), None).astype(dtype)
                else:
                    s = s.astype(dtype)
            out[c.name] = s.reset_index(drop=True)
        else:
            out[c.name] = pd.Series([None] * n, dtype=dtype)
    return pd.DataFrame(out)


def _canonical(spec: Table, df: pd.DataFrame) -> bool:
    """Whether ``df`` has exactly the table's columns, in order, of its dtypes, on a 0..n index."""
    names = [c.name for c in spec.columns]
    return (
        list(df.columns) == names
        and isinstance(df.index, pd.RangeIndex)
        and df.index.start == 0
        and df.index.step == 1
        and all(str(df[c.name].dtype) == DTYPES[c.kind] for c in spec.columns)
    )


@functools.cache
def pandera_schema(table: str) -> pa.DataFrameSchema:
    """Return the table's pandera schema (built on first use: pandera takes ~1 s to import)."""
    import pandera.pandas as pa

    spec = TABLES[table]
    columns = {}
    for c in spec.columns:
        checks = [pa.Check.isin(list(c.values))] if c.values else []
        columns[c.name] = pa.Column(
            DTYPES[c.kind],
            checks=checks,
            nullable=not c.required,
            description=c.doc,
        )
    return pa.DataFrameSchema(columns, strict=True, ordered=True, name=spec.name)


def validate(table: str, df: pd.DataFrame) -> pd.DataFrame:
    """Validate ``df`` against the table's pandera schema and return it (raises on mismatch)."""
    return pandera_schema(table).validate(df)
