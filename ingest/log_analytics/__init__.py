"""Live ingest from an Azure Monitor Log Analytics workspace (``AADProvisioningLogs``).

``client.py`` is the one place that builds the credential (``PROVLENS_LA_TOKEN`` or azure-identity)
and azure-monitor-query's ``LogsQueryClient``, with provlens' own retry loop (429 + Retry-After,
5xx, timeouts), ``Prefer: wait`` and a longer read timeout, and one-line errors naming the role a
401/403 means is missing. ``pull.py`` walks time slices, halves a slice whose answer is the
service's too-large PartialError, and commits rows with the ``la:<workspace id>`` watermark in
the same store batch. Rows go through ``ingest.records.records_to_frames`` like every other
source (origin ``log_analytics``).
"""

from ingest.log_analytics.client import (
    DEFAULT_ROOT,
    ROLE,
    TABLE,
    LaConfig,
    LaHTTPError,
    LaSession,
    QueryResult,
    StaticTokenCredential,
    build_client,
    build_credential,
    credential_source,
    la_root,
    workspace_id,
)
from ingest.log_analytics.pull import LaPull, kql_time, pull, slice_query, watermark_key

__all__ = [
    "DEFAULT_ROOT",
    "ROLE",
    "TABLE",
    "LaConfig",
    "LaHTTPError",
    "LaPull",
    "LaSession",
    "QueryResult",
    "StaticTokenCredential",
    "build_client",
    "build_credential",
    "credential_source",
    "kql_time",
    "la_root",
    "pull",
    "slice_query",
    "watermark_key",
    "workspace_id",
]


def open_session(
    workspace: str | None, url: str | None, config: LaConfig | None = None
) -> LaSession:
    """Return a session on the workspace named by the arguments or settings."""
    cfg = config or LaConfig()
    root = la_root(url)
    ws = workspace_id(workspace)
    return LaSession(build_client(root, cfg), cfg, root=root, workspace=ws)
