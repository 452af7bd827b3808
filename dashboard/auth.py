"""Optional sign-in: Entra ID through Streamlit's OIDC (`st.login`) plus an allow-list.

Configured in `.streamlit/secrets.toml` (see `.streamlit/secrets.example.toml`): an `[auth]`
section turns sign-in on; `[provlens] allowed_users` (emails, UPNs or object ids) and
`allowed_groups` (group object ids from the ID token's `groups` claim) say who may see data.
Without an `[auth]` section there is no sign-in and the server listens on localhost only
(`dashboard.launch` enforces that).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import streamlit as st

# ID-token claims that name the user: email, UPN-like name, object id.
USER_CLAIMS = ("email", "preferred_username", "upn", "oid", "sub")


def _secrets_section(name: str) -> Mapping[str, Any] | None:
    """Return secrets section ``name`` or None (also when there is no secrets file)."""
    try:
        section = st.secrets.get(name)
    except Exception:  # no secrets.toml: st.secrets raises on access
        return None
    return section if isinstance(section, Mapping) else None


def auth_configured() -> bool:
    """Return True when secrets hold an `[auth]` section (sign-in is on)."""
    return _secrets_section("auth") is not None


def _provider() -> str | None:
    """Return the named provider (`[auth.<name>]`) when exactly one is configured."""
    section = _secrets_section("auth") or {}
    named = [k for k, v in section.items() if isinstance(v, Mapping)]
    return named[0] if len(named) == 1 else None


def _lower_set(values: Iterable[Any] | None) -> set[str]:
    return {str(v).strip().lower() for v in (values or []) if str(v).strip()}


def is_allowed(
    user: Mapping[str, Any], allowed_users: Iterable[Any], allowed_groups: Iterable[Any]
) -> bool:
    """Return True when the signed-in ``user``'s claims match the allow-lists."""
    users = _lower_set(allowed_users)
    groups = _lower_set(allowed_groups)
    ids = {str(user.get(c)).strip().lower() for c in USER_CLAIMS if user.get(c)}
    if ids & users:
        return True
    claim = user.get("groups")
    member_of = _lower_set(claim if isinstance(claim, list | tuple) else [])
    return bool(member_of & groups)


def gate() -> bool:
    """Return True when this session may see data; otherwise draw why and return False."""
    if not auth_configured():
        return True
    if not st.user.is_logged_in:
        st.title("provlens")
        st.info("Sign in with your organisation account to see provisioning data.")
        provider = _provider()
        if st.button("Sign in with Microsoft", type="primary"):
            if provider:
                st.login(provider)
            else:
                st.login()
        return False
    settings = _secrets_section("provlens") or {}
    user = st.user.to_dict()
    if is_allowed(user, settings.get("allowed_users", []), settings.get("allowed_groups", [])):
        return True
    st.title("provlens")
    st.error(
        "You are signed in but not on this dashboard's allow-list, so no data is shown. "
        "Ask the dashboard's administrator to add your account or one of your groups to "
        "[provlens] allowed_users / allowed_groups in .streamlit/secrets.toml."
    )
    st.text(f"Signed in as: {user.get('email') or user.get('preferred_username') or 'unknown'}")
    if st.button("Sign out"):
        st.logout()
    return False


def signed_in_label() -> str | None:
    """Return who is signed in (for the sidebar), or None without sign-in."""
    if not auth_configured() or not st.user.is_logged_in:
        return None
    user = st.user.to_dict()
    return str(user.get("email") or user.get("preferred_username") or user.get("name") or "")
