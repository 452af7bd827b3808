"""Live ingest from Microsoft Graph: provisioning logs, synchronization job status and scope.

The one place that builds the Graph credential and the ``GraphServiceClient`` (msgraph-sdk over
azure-identity). Responses are taken as raw JSON through kiota's ``NativeResponseHandler``: the
SDK's typed models silently lose the ``import`` step type, ``stagedDelete`` and array service
principals (reference/graph/msgraph-sdk.md section 5), so every record goes through
``ingest.records.records_to_frames`` exactly as a file would.

Reliability, in one place (:class:`GraphSession`):

* a sliding-window pacer keeps the reporting endpoints (``/auditLogs``) under 5 requests per
  10 s, so a healthy run provokes no 429 and still runs close to that floor;
* ``Retry-After`` is honoured on 429/503/504; other 5xx, dropped connections and timeouts back
  off exponentially; a request gives up after ``give_up_after_s`` with one clear message.
  kiota's own RetryHandler is switched off per request because it neither retries dropped
  connections nor lets the pacer see its attempts;
* 401 is retried once (a fresh token), then 401/403 name the permission the call needs.

Incremental and resumable (:func:`pull_logs`): the window is cut into time slices (a day by
default), pages are committed in batches of ``pages_per_batch`` pages, and the watermark
(``graph:<spId>`` or ``graph:*``) moves to a slice's end only once that slice and every slice
before it are stored. The next run starts at the watermark minus ``overlap`` (records can arrive
up to two hours late); the store keeps the last write per ``events.id``, so a run killed at any
point and run again ends with every record exactly once.
"""

from ingest.graph.client import (
    API_VERSION,
    AZURE_CLI_CLIENT_ID,
    DEFAULT_ROOT,
    DEVICE_CODE,
    PERMISSIONS,
    RATE,
    RETRYABLE,
    GraphHTTPError,
    GraphSession,
    MalformedPage,
    PullConfig,
    SlidingWindowPacer,
    StaticTokenProvider,
    Stats,
    build_auth_provider,
    build_client,
    build_credential,
    credential_source,
    graph_root,
    query_config,
)
from ingest.graph.logs import (
    LogPull,
    LogSource,
    log_filter,
    log_window_start,
    pull_logs,
    time_slices,
    watermark_key,
)
from ingest.graph.pull import GraphIngest, ingest_graph, ingest_graph_async
from ingest.graph.state import (
    StatePull,
    discover_service_principals,
    fetch_state,
    pull_state,
    run,
    state_items,
)

__all__ = [
    "API_VERSION",
    "AZURE_CLI_CLIENT_ID",
    "DEFAULT_ROOT",
    "DEVICE_CODE",
    "PERMISSIONS",
    "RATE",
    "RETRYABLE",
    "GraphHTTPError",
    "GraphIngest",
    "GraphSession",
    "LogPull",
    "LogSource",
    "MalformedPage",
    "PullConfig",
    "SlidingWindowPacer",
    "StatePull",
    "StaticTokenProvider",
    "Stats",
    "build_auth_provider",
    "build_client",
    "build_credential",
    "credential_source",
    "discover_service_principals",
    "fetch_state",
    "graph_root",
    "ingest_graph",
    "ingest_graph_async",
    "log_filter",
    "log_window_start",
    "pull_logs",
    "pull_state",
    "query_config",
    "run",
    "state_items",
    "time_slices",
    "watermark_key",
]
