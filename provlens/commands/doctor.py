"""`provlens doctor`: the portal's "Test Connection", for Graph, the wiki and Log Analytics."""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from typing import Any

from ingest import settings
from ingest.errors import ProvlensError
from ingest.net import Unreachable

log = logging.getLogger(__name__)
OK, FAIL, SKIP = "ok", "FAIL", "skipped"


@dataclass
class Check:
    """One line of the doctor's table."""

    name: str
    result: str
    detail: str


def configure(parser: argparse.ArgumentParser) -> None:
    """Add this command's options."""
    parser.add_argument(
        "--service-principal-id",
        metavar="ID",
        help="enterprise app to test job status and scope on (default: the app of the newest "
        "provisioning record)",
    )
    parser.add_argument(
        "--graph-url",
        metavar="URL",
        help="Graph host root (env PROVLENS_GRAPH_URL; default https://graph.microsoft.com)",
    )
    from provlens.commands.ingest_log_analytics import add_workspace_arguments

    add_workspace_arguments(parser)  # checked when given here or in PROVLENS_LA_WORKSPACE_ID


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:240]


def _graph_checks(args: argparse.Namespace, checks: list[Check]) -> None:
    from ingest import graph

    try:
        root = graph.graph_root(args.graph_url)
    except ProvlensError as exc:
        checks.append(Check("Graph URL", FAIL, _short(exc)))
        return
    checks.append(Check("Graph URL", OK, f"{root}/{graph.API_VERSION}"))
    source = graph.credential_source()
    if settings.get(settings.GRAPH_TOKEN):
        checks.append(Check("credential", OK, f"{source}; checked by the calls below"))
    else:
        try:
            token = graph.build_credential().get_token(f"{root}/.default")
        except Exception as exc:  # azure-identity raises several types; report any as one line
            checks.append(Check("credential", FAIL, f"{source}: {_short(exc)}"))
            return
        import datetime as dt

        expires = dt.datetime.fromtimestamp(token.expires_on, tz=dt.UTC)
        checks.append(
            Check("credential", OK, f"{source}: token issued, expires {expires:%H:%M:%SZ}")
        )
    # Doctor should answer quickly: few retries, short waits.
    config = graph.PullConfig.from_settings()
    config.give_up_after_s, config.max_attempts, config.timeout_s = 20.0, 3, 30.0
    graph.run(lambda: _calls(args, root, config, checks))


async def _calls(args: argparse.Namespace, root: str, config: Any, checks: list[Check]) -> None:
    from ingest import graph

    client, http = graph.build_client(root, config)
    base = f"{root}/{graph.API_VERSION}"
    session = graph.GraphSession(client, config, base_url=base)
    down: list[str] = []  # set when Graph cannot be reached at all: the other calls are skipped

    async def call(
        name: str, need: str, builder: Any, url: str, *, paced: bool = False, **query: Any
    ) -> dict[str, Any] | None:
        if down:
            checks.append(Check(name, SKIP, "not tried: Graph cannot be reached"))
            return None
        try:
            q = graph.query_config(builder, **query) if query else None
            doc = await session.get_json(builder, url, need, paced=paced, query=q)
        except graph.GraphHTTPError as exc:
            if exc.status in (401, 403):
                detail = f"HTTP {exc.status}: needs {graph.PERMISSIONS[need]}"
            else:
                detail = _short(exc)
            checks.append(Check(name, FAIL, detail))
            return None
        except Unreachable as exc:
            down.append(exc.url)
            checks.append(Check(name, FAIL, _short(exc)))
            return None
        except ProvlensError as exc:
            checks.append(Check(name, FAIL, _short(exc)))
            return None
        n = len(doc.get("value") or []) if "value" in doc else 1
        checks.append(Check(name, OK, f"GET {url} -> {n} item(s)"))
        return doc

    try:
        logs = await call(
            "provisioning logs",
            "logs",
            client.audit_logs.provisioning,
            f"{base}/auditLogs/provisioning?$top=1",
            paced=True,
            top=1,
        )
        sp = args.service_principal_id
        if not sp and logs and logs.get("value"):
            principal = logs["value"][0].get("servicePrincipal")
            if isinstance(principal, list):  # the array shape (provisioning-object-summary.md)
                principal = principal[0] if principal else None
            sp = (principal or {}).get("id") or None
        if not sp:
            for name in ("service principal", "job status", "assignments", "group members"):
                checks.append(Check(name, SKIP, "no app known: pass --service-principal-id ID"))
            return
        sp_builder = client.service_principals.by_service_principal_id(sp)
        await call(
            "service principal",
            "service_principals",
            sp_builder,
            f"{base}/servicePrincipals/{sp}",
        )
        await call(
            "job status",
            "jobs",
            sp_builder.synchronization.jobs,
            f"{base}/servicePrincipals/{sp}/synchronization/jobs",
        )
        assigned = await call(
            "assignments",
            "assignments",
            sp_builder.app_role_assigned_to,
            f"{base}/servicePrincipals/{sp}/appRoleAssignedTo?$top=999",
            top=999,
        )
        groups = [
            a.get("principalId")
            for a in (assigned or {}).get("value", [])
            if str(a.get("principalType", "")).lower() == "group"
        ]
        if not groups:
            checks.append(Check("group members", SKIP, "no group is assigned to the app"))
        else:
            g_builder = client.groups.by_group_id(str(groups[0])).transitive_members
            await call(
                "group members",
                "members",
                g_builder,
                f"{base}/groups/{groups[0]}/transitiveMembers?$top=1",
                top=1,
            )
    finally:
        await http.aclose()


def _scim_check(checks: list[Check]) -> None:
    url = settings.get(settings.SCIM_URL)
    if not url:
        checks.append(Check("wiki SCIM", SKIP, f"{settings.SCIM_URL} is not set"))
        return
    token = settings.get(settings.SCIM_TOKEN)
    if not token:
        checks.append(Check("wiki SCIM", FAIL, f"{settings.SCIM_TOKEN} is not set"))
        return
    from ingest.scim import build_client, probe

    try:
        with build_client(url, token) as client:
            info = probe(client)  # /ServiceProviderConfig, then /Users?count=1 (checks the token)
    except ProvlensError as exc:
        checks.append(Check("wiki SCIM", FAIL, _short(exc)))
        return
    except Exception as exc:  # a transport problem the SCIM client did not map
        checks.append(Check("wiki SCIM", FAIL, f"{url}: {_short(exc)}"))
        return
    users = info.get("users")
    checks.append(
        Check(
            "wiki SCIM",
            OK,
            f"{url.rstrip('/')}: /ServiceProviderConfig (PATCH supported: "
            f"{info.get('patch_supported')}), /Users ({'?' if users is None else users} users)",
        )
    )


def _workspace_checks(args: argparse.Namespace, checks: list[Check]) -> None:
    """Log Analytics: reachable, permitted, table present, latest row (when a workspace is set)."""
    if not (args.workspace_id or settings.get(settings.LA_WORKSPACE)):
        checks.append(
            Check("Log Analytics", SKIP, f"no --workspace-id and {settings.LA_WORKSPACE} unset")
        )
        return
    from ingest import log_analytics as la

    # Doctor answers quickly: few retries, a short server timeout.
    config = la.LaConfig(max_attempts=2, give_up_after_s=20.0, server_timeout_s=30)
    config.read_timeout_s = 40.0
    try:
        session = la.open_session(args.workspace_id, args.la_url, config)
    except ProvlensError as exc:
        checks.append(Check("Log Analytics", FAIL, _short(exc)))
        return
    source = la.credential_source()
    try:
        session.query("print ok = 1")
    except la.LaHTTPError as exc:
        if exc.status in (401, 403):
            checks.append(Check("LA reachable", OK, session.url))
            checks.append(Check("LA permission", FAIL, f"HTTP {exc.status}: needs {la.ROLE}"))
        else:
            checks.append(Check("LA reachable", FAIL, _short(exc)))
        return
    except ProvlensError as exc:
        checks.append(Check("LA reachable", FAIL, _short(exc)))
        return
    checks.append(Check("LA reachable", OK, session.url))
    checks.append(Check("LA permission", OK, f"{source}: query allowed"))
    try:
        answer = session.query(
            f"{la.TABLE} | summarize rows = count(), latest = max(TimeGenerated)"
        )
    except ProvlensError as exc:
        # A workspace without the table answers 400 (unknown table name).
        checks.append(
            Check(
                "LA table",
                FAIL,
                f"{la.TABLE} cannot be queried ({_short(exc)}); enable the ProvisioningLogs "
                "diagnostic setting to this workspace (first rows can take hours)",
            )
        )
        return
    rows, latest = (answer.rows[0] if answer.rows else [0, None])[:2]
    if not rows:
        checks.append(
            Check("LA table", FAIL, f"{la.TABLE} is empty; first rows can take hours to appear")
        )
        return
    checks.append(Check("LA table", OK, f"{la.TABLE}: {rows} rows"))
    checks.append(Check("LA latest row", OK, f"TimeGenerated {latest}"))


def run(args: argparse.Namespace, ctx: Any) -> int:
    """Run every check, print the table; exit 0 when nothing failed, else 4."""
    checks: list[Check] = []
    try:
        _graph_checks(args, checks)
    except ProvlensError as exc:
        checks.append(Check("Graph", FAIL, _short(exc)))
    _scim_check(checks)
    _workspace_checks(args, checks)
    width = max(len(c.name) for c in checks)
    print(f"{'CHECK':<{width}}  {'RESULT':<7}  DETAIL")
    for c in checks:
        print(f"{c.name:<{width}}  {c.result:<7}  {c.detail}")
    failed = [c for c in checks if c.result == FAIL]
    if failed:
        print(f"{len(failed)} check(s) failed")
        return 4
    return 0
