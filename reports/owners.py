"""Who owns the fix of a provisioning failure, and what the documentation says to do.

Codes are usually app-prefixed (``TheOrgWikiEntryConflict``), so they are matched on their
suffix, longest first. Descriptions are the error-code tables of Microsoft's "Analyze provisioning
logs" page (reference/graph/provisioning_error_codes_and_download_format.json). Owners:
``identity_admin`` (the Entra side: mappings, scoping, the provisioning service), ``app_admin``
(the wiki's SCIM service, its token, licences, rate limits, its own user records) and
``data_owner`` (attribute values of the person in the source directory).
"""

from __future__ import annotations

from typing import Final

import pandas as pd

IDENTITY_ADMIN: Final = "identity_admin"
APP_ADMIN: Final = "app_admin"
DATA_OWNER: Final = "data_owner"
UNKNOWN: Final = "unknown"
OWNERS: Final = (IDENTITY_ADMIN, APP_ADMIN, DATA_OWNER, UNKNOWN)

# suffix -> (owner, documented description / what to do). Generic owners (the wiki answered
# something unexpected) may be refined by the wiki's scimType, see GENERIC_SUFFIXES.
ERROR_CODES: Final[dict[str, tuple[str, str]]] = {
    "Conflict": (
        DATA_OWNER,
        "Correct the conflicting attribute values in either Microsoft Entra ID or the "
        "application, or review matching attribute configuration.",
    ),
    "EntryConflict": (
        DATA_OWNER,
        "Correct the conflicting attribute values in either Microsoft Entra ID or the "
        "application, or review matching attribute configuration.",
    ),
    "TooManyRequests": (APP_ADMIN, "Target app overloaded; automatically retried."),
    "InternalServerError": (
        APP_ADMIN,
        "Target app returned an unexpected error; retried in 40 minutes.",
    ),
    "InsufficientRights": (
        APP_ADMIN,
        "Authenticated but not authorized to perform the update: give the provisioning "
        "account the rights it needs in the application.",
    ),
    "MethodNotAllowed": (APP_ADMIN, "Same as InsufficientRights."),
    "NotPermitted": (APP_ADMIN, "Same as InsufficientRights."),
    "Unauthorized": (APP_ADMIN, "Same as InsufficientRights."),
    "InvalidCredentials": (
        APP_ADMIN,
        "The application rejected the admin credentials: issue a new token and update it in "
        "the provisioning configuration.",
    ),
    "UnprocessableEntity": (APP_ADMIN, "Target application returned an unexpected response."),
    "WebExceptionProtocolError": (
        APP_ADMIN,
        "HTTP protocol error connecting to target; retried in 40 minutes.",
    ),
    "InvalidAnchor": (
        APP_ADMIN,
        "A user previously created/matched no longer exists in the application.",
    ),
    "NotImplemented": (APP_ADMIN, "Target app returned an unexpected response."),
    "MandatoryFieldsMissing": (DATA_OWNER, "Required values missing."),
    "MissingValues": (DATA_OWNER, "Required values missing."),
    "SchemaAttributeNotFound": (
        IDENTITY_ADMIN,
        "Attribute does not exist in the target application: fix the attribute mappings.",
    ),
    "InternalError": (
        IDENTITY_ADMIN,
        "Internal Entra provisioning service error; retried in 40 minutes.",
    ),
    "InvalidDomain": (DATA_OWNER, "Attribute value contains an invalid domain name."),
    "Timeout": (APP_ADMIN, "Target application took too long; retried in 40 minutes."),
    "LicenseLimitExceeded": (APP_ADMIN, "No available licenses in the target application."),
    "DuplicateTargetEntries": (APP_ADMIN, "More than one target user matched."),
    "DuplicateSourceEntries": (DATA_OWNER, "More than one source user matched."),
    "ImportSkipped": (DATA_OWNER, "User missing the matching property; import skipped."),
    "EntrySynchronizationSkipped": (
        IDENTITY_ADMIN,
        "Queried and identified; skipped (out of scope or no change needed).",
    ),
    "SystemForCrossDomainIdentityManagementMultipleEntriesInResponse": (
        APP_ADMIN,
        "GET returned multiple users/groups where one expected.",
    ),
    "SystemForCrossDomainIdentityManagementServiceIncompatible": (
        APP_ADMIN,
        "Provisioning service cannot parse the SCIM app's response.",
    ),
    "SchemaPropertyCanOnlyAcceptValue": (
        IDENTITY_ADMIN,
        "Target property single-valued, source multi-valued: fix the attribute mapping.",
    ),
    "CannotUpdateObjectsOriginatedInExternalService": (
        IDENTITY_ADMIN,
        "SOA enforcement; properties e.g. Mail, showInAddressList.",
    ),
    "B2BManagementPolicyCheckFailure": (
        IDENTITY_ADMIN,
        "Cross-tenant sync automatic-redemption policy check failed.",
    ),
    "QuotaLimitExceeded": (IDENTITY_ADMIN, "Directory object quota exceeded."),
    "InvitationCreationFailure": (IDENTITY_ADMIN, "Invitation of user in target tenant failed."),
    "InvitationCreationFailureInvalidPropertyValue": (
        DATA_OWNER,
        "Invalid primary SMTP, userType, or group email.",
    ),
    "InvitationCreationFailureAmbiguousUser": (
        DATA_OWNER,
        "Proxy address matches internal user in target tenant.",
    ),
    "CannotUpdateObjectsMasteredOnPremises": (
        IDENTITY_ADMIN,
        "User mastered on-premises in target tenant.",
    ),
}

# Codes that only say "the wiki answered oddly": the wiki's own scimType says more.
GENERIC_SUFFIXES: Final = frozenset(
    {"UnprocessableEntity", "NotImplemented", "InternalServerError", "Conflict", "EntryConflict"}
)

# RFC 7644 section 3.12 scimType values -> owner.
SCIM_TYPE_OWNERS: Final[dict[str, str]] = {
    "uniqueness": DATA_OWNER,
    "invalidvalue": DATA_OWNER,
    "mutability": IDENTITY_ADMIN,
    "invalidsyntax": APP_ADMIN,
    "invalidfilter": APP_ADMIN,
    "toomany": APP_ADMIN,
    "invalidpath": APP_ADMIN,
    "notarget": APP_ADMIN,
    "invalidvers": APP_ADMIN,
    "sensitive": APP_ADMIN,
}

# errorCategory alone: "nonServiceFailure" means the provisioning service itself did not fail,
# i.e. the target answered with an error; "failure" says nothing about who.
CATEGORY_OWNERS: Final[dict[str, str]] = {"non_service_failure": APP_ADMIN}

_SUFFIXES_LONGEST_FIRST: Final = sorted(ERROR_CODES, key=len, reverse=True)


def code_suffix(codes: pd.Series) -> pd.Series:
    """Return the documented suffix each error code ends with (case-insensitive), else null."""
    folded = codes.astype("str").str.lower()
    out = pd.Series(pd.NA, index=codes.index, dtype="str")
    # Only the suffixes some code ends with (a pass per documented suffix costs the same for
    # one code as for a million).
    values = [v for v in folded.dropna().unique() if isinstance(v, str)]
    present = [s for s in _SUFFIXES_LONGEST_FIRST if any(v.endswith(s.lower()) for v in values)]
    for suffix in present:
        hit = out.isna() & folded.str.endswith(suffix.lower()).fillna(False).astype(bool)
        out[hit] = suffix
    return out


def owners(
    codes: pd.Series, categories: pd.Series, scim_types: pd.Series | None = None
) -> pd.Series:
    """Return the owner of each failure from its code, the wiki's scimType and errorCategory.

    Order: a specific documented code; else the wiki's scimType when matched; else a generic
    documented code; else the category; else ``unknown``.
    """
    suffix = code_suffix(codes)
    by_code = suffix.map({k: v[0] for k, v in ERROR_CODES.items()}).astype("str")
    generic = suffix.isin(GENERIC_SUFFIXES).fillna(False).astype(bool)
    if scim_types is None:
        scim_types = pd.Series(pd.NA, index=codes.index, dtype="str")
    by_scim = scim_types.astype("str").str.lower().map(SCIM_TYPE_OWNERS).astype("str")
    by_category = categories.astype("str").map(CATEGORY_OWNERS).astype("str")
    out = by_code.where(~generic | by_scim.isna(), by_scim)
    out = out.fillna(by_scim).fillna(by_category).fillna(UNKNOWN)
    return out.astype("str")


def documented_action(codes: pd.Series) -> pd.Series:
    """Return the documented description of each error code (by suffix), else null."""
    return code_suffix(codes).map({k: v[1] for k, v in ERROR_CODES.items()}).astype("str")


# Entra quotes the wiki's SCIM error body inside its reason or additional details, as JSON text
# (sometimes with escaped quotes): ..."status":"409","scimType":"uniqueness","detail":"..."...
EMBEDDED_STATUS: Final = r'"status"\s*:\s*"?(\d{3})"?'
EMBEDDED_TYPE: Final = r'"scimType"\s*:\s*"([^"]*)"'
EMBEDDED_DETAIL: Final = r'"detail"\s*:\s*"((?:[^"\\]|\\.)*)"'


def embedded_scim_error(texts: pd.Series) -> pd.DataFrame:
    """Return the SCIM error quoted in each text: ``scim_status``, ``scim_type``, ``scim_detail``.

    Parsed once per distinct text (reasons repeat across thousands of events); nulls where the
    text quotes no SCIM error.
    """
    distinct = pd.Series(texts.dropna().unique(), dtype="str")
    plain = distinct.str.replace('\\"', '"', regex=False)
    found = pd.DataFrame(
        {
            "scim_status": pd.to_numeric(
                plain.str.extract(EMBEDDED_STATUS, expand=False), errors="coerce"
            ).astype("Int64"),
            "scim_type": plain.str.extract(EMBEDDED_TYPE, expand=False).astype("str"),
            "scim_detail": plain.str.extract(EMBEDDED_DETAIL, expand=False).astype("str"),
        }
    )
    found.index = distinct.to_numpy()
    found = found.loc[~found.index.duplicated()]
    out = found.reindex(texts.to_numpy())
    out.index = texts.index
    return out
