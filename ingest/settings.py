"""The one place provlens reads settings and secrets.

Order: the environment variable ``NAME``; else a file named by ``NAME_FILE`` (Docker/Kubernetes
secrets style); else Streamlit's ``st.secrets`` when running inside the dashboard. Secrets are
never taken from command-line arguments and never logged.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ingest.errors import UsageError

# Names provlens reads. Values of the SECRET ones never appear in logs or errors.
GRAPH_TOKEN = "PROVLENS_GRAPH_TOKEN"  # noqa: S105 - a variable name, not a secret
SCIM_TOKEN = "PROVLENS_SCIM_TOKEN"  # noqa: S105 - a variable name, not a secret
SCIM_URL = "PROVLENS_SCIM_URL"
GRAPH_URL = "PROVLENS_GRAPH_URL"
STORE = "PROVLENS_STORE"
LA_TOKEN = "PROVLENS_LA_TOKEN"  # noqa: S105 - a variable name, not a secret
LA_URL = "PROVLENS_LA_URL"
LA_WORKSPACE = "PROVLENS_LA_WORKSPACE_ID"
SECRET_NAMES = frozenset(
    {GRAPH_TOKEN, SCIM_TOKEN, LA_TOKEN, "AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PASSWORD"}
)


def _from_streamlit(name: str) -> str | None:
    # Only inside the dashboard: importing streamlit costs seconds in a CLI run.
    if "streamlit" not in sys.modules:
        return None
    try:
        import streamlit as st
        from streamlit.runtime import exists
    except ImportError:  # pragma: no cover - streamlit is a dependency
        return None
    if not exists():
        return None
    try:
        value = st.secrets.get(name)
    except Exception:  # no secrets.toml: st.secrets raises on access
        return None
    return None if value is None else str(value)


def get(name: str, default: str | None = None) -> str | None:
    """Return setting ``name`` from env, ``NAME_FILE`` or st.secrets, else ``default``."""
    value = os.environ.get(name)
    if value:
        return value
    file_name = os.environ.get(f"{name}_FILE")
    if file_name:
        path = Path(file_name).expanduser()
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise UsageError(
                f"{name}_FILE points to {path}, which cannot be read ({exc.strerror}); "
                "fix the path or set the value another way"
            ) from None
    value = _from_streamlit(name)
    return value if value else default


def require(name: str, what: str) -> str:
    """Return setting ``name`` or raise a UsageError naming the missing key and how to set it."""
    value = get(name)
    if not value:
        raise UsageError(
            f"{what} is not configured: set the environment variable {name} "
            f"(or {name}_FILE naming a file that holds it)"
        )
    return value
