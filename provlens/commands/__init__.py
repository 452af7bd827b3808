"""The command registry: which words run which module, and the help line ``provlens --help`` shows.

The CLI reads only this table to build ``provlens --help`` and ``provlens ingest --help``; a
command's module (``provlens/commands/<module>.py``, with ``configure(parser)`` and
``run(args, ctx) -> int``) is imported only when that command runs or its own ``--help`` is asked,
so listing the commands never imports pandas, msgraph or streamlit.

To add a command: write the module, then add one ``Command`` line here. A module left out of the
table still works (it is found by name and imported eagerly, using its own ``COMMAND`` and
``HELP``), but slows every start; tests/test_cli_lazy.py fails until it has its line.
"""

from __future__ import annotations

from typing import NamedTuple


class Command(NamedTuple):
    """One CLI command: its words, its module under provlens.commands, its one-line help."""

    words: tuple[str, ...]  # ("report",) or ("ingest", "graph"): at most two words
    module: str
    help: str


COMMANDS: tuple[Command, ...] = (
    Command(
        ("alert",),
        "alert",
        "evaluate the alert rules (quarantine, stalled jobs, failure spikes, ...) and send new or "
        "resolved alerts to Teams, a webhook or mail",
    ),
    Command(
        ("dashboard",),
        "dashboard",
        "open the Streamlit dashboard on the store (localhost only unless sign-in is configured)",
    ),
    Command(
        ("demo",),
        "demo",
        "simulate a demo tenant (Contoso (demo) -> TheOrgWiki), ingest it and open the dashboard",
    ),
    Command(
        ("doctor",),
        "doctor",
        "check settings, get a Graph token and make one small call to each endpoint provlens "
        "uses; print what works and which permission is missing",
    ),
    Command(
        ("export",),
        "export",
        "export a canonical table (or events_flat: events with steps and modified properties)",
    ),
    Command(
        ("ingest", "file"),
        "ingest_file",
        "ingest provisioning logs, job status, scope or SCIM files (format detected by content)",
    ),
    Command(
        ("ingest", "graph"),
        "ingest_graph",
        "pull provisioning logs (incremental from the last run, minus a 2 h overlap), job status "
        "and assignment scope from Microsoft Graph",
    ),
    Command(
        ("ingest", "log-analytics"),
        "ingest_log_analytics",
        "pull AADProvisioningLogs rows from a Log Analytics workspace (incremental from the "
        "last run, minus a 6 h overlap)",
    ),
    Command(
        ("ingest", "scim"),
        "ingest_scim",
        "list the wiki's SCIM /Users and /Groups into the store as one snapshot "
        "(token from PROVLENS_SCIM_TOKEN)",
    ),
    Command(
        ("watch",),
        "watch",
        "every DURATION: ingest the configured sources (Graph, the wiki), then alert",
    ),
    Command(
        ("report",),
        "report",
        "run a report (summary, cycles, users, failures, coverage, estimate ...) on the store",
    ),
    Command(
        ("store", "info"),
        "store_info",
        "show the store's path, row counts, time range, last ingest per source and size",
    ),
)

# Help lines of the command groups (first words shared by several commands).
GROUPS: dict[str, str] = {
    "ingest": "ingest commands (files, Microsoft Graph, the wiki's SCIM endpoint, Log Analytics)",
    "store": "store commands",
}
