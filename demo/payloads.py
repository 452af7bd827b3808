"""Builders for the payloads Entra and the wiki produce, shaped like reference/examples.

Pure functions: plain dicts in, plain dicts out, built fresh per record (no deep copies); the
constant sub-objects (service principal, systems, initiator) are shared, which orjson serialises
as often as they are referenced.
"""

from __future__ import annotations

from typing import Any, Final

from demo.scenario import APP_NAME, SCIM_BASE, WIKI_HOST

SOURCE_SYSTEM_NAME: Final = "Azure Active Directory"
INITIATOR_NAME: Final = "Azure AD Provisioning Service"
CORE_USER: Final = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE_USER: Final = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
CORE_GROUP: Final = "urn:ietf:params:scim:schemas:core:2.0:Group"
MS_GROUP_EXT: Final = "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"
PATCH_OP: Final = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
LIST_RESPONSE: Final = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
ERROR: Final = "urn:ietf:params:scim:api:messages:2.0:Error"
SCOPING_FILTER_NAME: Final = "Exclude contractors"
SCOPING_CLAUSE: Final = f"{SCOPING_FILTER_NAME}.department NOT EQUALS 'Contractors'"
DEPARTMENT_PATH: Final = f"{ENTERPRISE_USER}:department"
MAIL_PATH: Final = 'emails[type eq "work"].value'

# Entra's error code, category and reason per failure kind (codes are app-prefixed).
FAILURES: Final[dict[str, dict[str, Any]]] = {
    "conflict": {
        "code": f"{APP_NAME}EntryConflict",
        "category": "nonServiceFailure",
        "status": 409,
        "reason": (
            f"Message: {APP_NAME} returned an error response with the HTTP status code 409. "
            "This response indicates that a user or a group already exists with the same name. "
            f"Identify and remove the conflicting user from {APP_NAME} via its administrative "
            "user interface, or remove the current user from the scope of provisioning by "
            f"removing their assignment to {APP_NAME} or adding a scoping filter to exclude them."
        ),
        "recommended": (
            f"Remove or rename the conflicting account in {APP_NAME}; the service retries the "
            "object in a later cycle."
        ),
    },
    "mandatory_missing": {
        "code": f"{APP_NAME}MandatoryFieldsMissing",
        "category": "nonServiceFailure",
        "status": None,
        "reason": (
            f"The user could not be provisioned to {APP_NAME} because the target attribute "
            f"'{MAIL_PATH}' is mandatory and its source attribute 'mail' has no value in "
            "Azure Active Directory."
        ),
        "recommended": "Populate the mail attribute of the user in Microsoft Entra ID.",
    },
    "throttled": {
        "code": f"{APP_NAME}TooManyRequests",
        "category": "failure",
        "status": 429,
        "reason": (
            f"{APP_NAME} returned HTTP status code 429 (Too Many Requests): the application is "
            "throttling the provisioning service. The operation is retried automatically."
        ),
        "recommended": None,
    },
    "server_error": {
        "code": f"{APP_NAME}InternalServerError",
        "category": "failure",
        "status": 500,
        "reason": (
            f"{APP_NAME} returned an unexpected error response with HTTP status code 500. "
            "The operation is retried in 40 minutes."
        ),
        "recommended": None,
    },
    "unauthorized": {
        "code": f"{APP_NAME}Unauthorized",
        "category": "nonServiceFailure",
        "status": 401,
        "reason": (
            f"{APP_NAME} returned HTTP status code 401 (Unauthorized): the secret token in the "
            "admin credentials is not valid. Update the credentials on the Provisioning page and "
            "test the connection."
        ),
        "recommended": "Enter a valid secret token for the application and test the connection.",
    },
}

SCIM_ERROR_DETAIL: Final[dict[int, tuple[str | None, str]]] = {
    401: (None, "The bearer token is invalid or has expired."),
    429: (None, "Rate limit exceeded: 600 requests per minute. Retry after 30 seconds."),
    500: (None, "An unexpected error occurred. Reference: wiki-backend-timeout."),
}


class Constants:
    """The shared, never-mutated sub-objects of every provisioning record."""

    def __init__(
        self, tenant_id: str, job_id: str, sp_id: str, app_id: str, src_sys_id: str, tgt_id: str
    ) -> None:
        self.tenant_id = tenant_id
        self.job_id = job_id
        self.service_principal = {"id": sp_id, "displayName": APP_NAME}
        self.source_system = {"id": src_sys_id, "displayName": SOURCE_SYSTEM_NAME, "details": {}}
        self.target_system = {
            "id": tgt_id,
            "displayName": APP_NAME,
            "details": {
                "ApplicationId": app_id,
                "ServicePrincipalId": sp_id,
                "ServicePrincipalDisplayName": APP_NAME,
            },
        }
        self.initiated_by = {"id": "", "displayName": INITIATOR_NAME, "initiatorType": "system"}


def step(name: str, kind: str, status: str, description: str, details: dict[str, str]) -> dict:
    """Return one provisioningStep."""
    return {
        "name": name,
        "provisioningStepType": kind,
        "status": status,
        "description": description,
        "details": details,
    }


def prop(name: str, old: str | None, new: str | None) -> dict[str, str | None]:
    """Return one modifiedProperty."""
    return {"displayName": name, "oldValue": old, "newValue": new}


def scoping_step(kind: str, assigned: bool, has_role: bool, filter_passed: bool) -> dict:
    """Return the scoping step: success when in scope, skipped otherwise."""
    in_scope = assigned and has_role and filter_passed
    verdict = "true" if filter_passed else "false"
    return step(
        "EntrySynchronizationScoping",
        "scoping",
        "success" if in_scope else "skipped",
        f"Determine if {kind} in scope by evaluating against each scoping filter",
        {
            "Active in the source system": "True",
            "Assigned to the application": "True" if assigned else "False",
            f"{kind} has the required role": "True" if has_role else "False",
            "Scoping filter evaluation passed": "True" if filter_passed else "False",
            "ScopeEvaluationResult": f'{{"{SCOPING_CLAUSE}":{verdict}}}',
        },
    )


def skip_step(kind: str, label: str, scoping_filter: bool) -> dict:
    """Return the processing step of an object the service skips as not entitled."""
    if scoping_filter:
        why = (
            f"1) This object is not in scope of the scoping filter '{SCOPING_FILTER_NAME}' "
            "configured for this application. If you did not expect the object to be skipped, "
            "review the scoping filter."
        )
    else:
        why = (
            "1) This object does not have the required entitlement for provisioning. If you did "
            "not expect the object to be skipped, assign it to the application with a role "
            "that is not Default Access, or change the provisioning scope."
        )
    return step(
        "EntrySynchronizationSkip",
        "processing",
        "skipped",
        f"The {kind} '{label}' will be skipped due to the following reasons: {why}",
        {
            "SkipReason": "NotEffectivelyEntitled",
            "IsActive": "True",
            "IsAssigned": "False" if not scoping_filter else "True",
            "IsInScope": "False",
        },
    )


def error_info(kind: str, web_response: bytes | None) -> dict[str, Any]:
    """Return provisioningErrorInfo for a failure kind (``web_response``: the wiki's body)."""
    f = FAILURES[kind]
    details = None
    if web_response is not None:
        details = f"Web Response: {web_response.decode()}"
    return {
        "errorCode": f["code"],
        "reason": f["reason"],
        "additionalDetails": details,
        "errorCategory": f["category"],
        "recommendedAction": f["recommended"],
    }


def scim_error(status: int, scim_type: str | None, detail: str) -> dict[str, Any]:
    """Return a SCIM error body (RFC 7644 §3.12)."""
    body: dict[str, Any] = {"schemas": [ERROR], "status": str(status), "detail": detail}
    if scim_type:
        body["scimType"] = scim_type
    return body


def user_path(scim_id: str | None = None) -> str:
    """Return the wiki's SCIM path of the Users endpoint or of one user."""
    return f"{SCIM_BASE}/Users" if scim_id is None else f"{SCIM_BASE}/Users/{scim_id}"


def group_path(scim_id: str | None = None) -> str:
    """Return the wiki's SCIM path of the Groups endpoint or of one group."""
    return f"{SCIM_BASE}/Groups" if scim_id is None else f"{SCIM_BASE}/Groups/{scim_id}"


def location(path: str) -> str:
    """Return the absolute URL of a SCIM path on the demo wiki."""
    return f"https://{WIKI_HOST}{path}"


def empty_list_response() -> dict[str, Any]:
    """Return the ListResponse of a filter query that matched nothing."""
    return {
        "schemas": [LIST_RESPONSE],
        "totalResults": 0,
        "Resources": [],
        "startIndex": 1,
        "itemsPerPage": 20,
    }


def patch_body(ops: list[tuple[str, str, Any]]) -> dict[str, Any]:
    """Return a PatchOp body; ``ops`` are (op, path, value) as Entra sends them."""
    return {
        "schemas": [PATCH_OP],
        "Operations": [{"op": op, "path": path, "value": value} for op, path, value in ops],
    }


def directory_audit(
    audit_id: str,
    when: str,
    group_id: str,
    group_name: str,
    member_id: str,
    upn: str | None,
    *,
    added: bool,
    correlation_id: str,
    initiator_id: str,
    initiator_upn: str,
) -> dict[str, Any]:
    """Return an "Add member to group" / "Remove member from group" directoryAudit (v1.0 shape).

    The member is the first target resource; the group is named in its modified properties
    (JSON string literals: ``newValue`` for an add, ``oldValue`` for a remove) and is the second.
    """
    key, other = ("newValue", "oldValue") if added else ("oldValue", "newValue")
    return {
        "id": audit_id,
        "category": "GroupManagement",
        "correlationId": correlation_id,
        "result": "success",
        "resultReason": "",
        "activityDisplayName": "Add member to group" if added else "Remove member from group",
        "activityDateTime": when,
        "loggedByService": "Core Directory",
        "operationType": "Assign" if added else "Unassign",
        "initiatedBy": {
            "app": None,
            "user": {"id": initiator_id, "userPrincipalName": initiator_upn},
        },
        "targetResources": [
            {
                "id": member_id,
                "displayName": None,
                "type": "User",
                "userPrincipalName": upn,
                "modifiedProperties": [
                    {"displayName": "Group.ObjectID", key: f'"{group_id}"', other: None},
                    {"displayName": "Group.DisplayName", key: f'"{group_name}"', other: None},
                ],
            },
            {"id": group_id, "displayName": None, "type": "Group", "modifiedProperties": []},
        ],
        "additionalDetails": [],
    }
