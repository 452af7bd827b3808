"""`provlens report NAME`: run a report on the store and print or write it."""

from __future__ import annotations

import argparse
import logging
import sys

import pandas as pd

from ingest.errors import UsageError

USER_REPORTS = (
    "users",
    "timeline",
    "estimate",
    "correlation",
    "diagnosis",
    "events",
    "user-steps",
    "user-changes",
    "user-wiki-requests",
)

log = logging.getLogger(__name__)


def add_filter_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the filters shared by reports and exports."""
    from provlens.cli import parse_time

    parser.add_argument("--since", metavar="ISO", type=parse_time, help="from this time (UTC)")
    parser.add_argument("--until", metavar="ISO", type=parse_time, help="before this time (UTC)")
    parser.add_argument(
        "--service-principal-id",
        action="append",
        default=[],
        metavar="ID",
        help="only this enterprise app (repeatable)",
    )
    parser.add_argument(
        "--job-id", action="append", default=[], metavar="ID", help="only this job (repeatable)"
    )
    parser.add_argument(
        "--action", action="append", default=[], metavar="ACTION", help="only this event action"
    )
    parser.add_argument(
        "--status", action="append", default=[], metavar="STATUS", help="only this event status"
    )


def filters_from_args(args: argparse.Namespace):
    """Return the reports.Filters the arguments ask for."""
    from reports import Filters

    if args.since is not None and args.until is not None and args.since >= args.until:
        raise UsageError(f"--since {args.since} is not before --until {args.until}")
    return Filters(
        since=args.since,
        until=args.until,
        service_principal_ids=tuple(args.service_principal_id),
        job_ids=tuple(args.job_id),
        actions=tuple(a.casefold() for a in args.action),
        statuses=tuple(s.casefold() for s in args.status),
    )


def configure(parser: argparse.ArgumentParser) -> None:
    """Add this command's arguments."""
    from reports import REPORTS

    names = ", ".join(sorted(REPORTS))
    parser.add_argument("name", metavar="NAME", choices=sorted(REPORTS), help=f"one of: {names}")
    parser.add_argument(
        "--format", choices=("table", "csv", "json", "xlsx"), default="table", help="output format"
    )
    parser.add_argument(
        "--out",
        metavar="PATH",
        help="write to this file (xlsx needs it); `timeline --user X` as xlsx or to a .zip "
        "writes that user's support pack",
    )
    parser.add_argument(
        "--include-noise",
        action="store_true",
        help="show out-of-scope skips and no-op accountDisabled updates (hidden by default)",
    )
    parser.add_argument(
        "--user",
        metavar="X",
        help="a user's object id, UPN or name (users, timeline, estimate: when will X be ready)",
    )
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a report parameter, e.g. `events --param change=<change id>` or "
        "`--param cycle=<cycle id>` (repeatable)",
    )
    access = parser.add_argument_group("access-time, access-time-summary")
    access.add_argument(
        "--slo-minutes",
        type=float,
        metavar="N",
        help="the time-to-access SLO in minutes (default 60)",
    )
    access.add_argument(
        "--by", choices=("week", "app"), help="access-time-summary: per week (default) or per app"
    )
    access.add_argument(
        "--waiting",
        action="store_true",
        help="access-time: also list users in scope still waiting (timed to --now)",
    )
    add_filter_arguments(parser)
    from provlens.commands.ingest_log_analytics import add_workspace_arguments

    parser.add_argument(
        "--engine",
        choices=("local", "log-analytics"),
        default="local",
        help="where the aggregation runs: the local store (default) or, for summary, cycles, "
        "failures and skips, the Log Analytics workspace (only results travel)",
    )
    add_workspace_arguments(parser)


def _run_in_workspace(args: argparse.Namespace, ctx, filters):
    """Return the report computed in the Log Analytics workspace (KQL push-down)."""
    from ingest import log_analytics as la
    from ingest.log_analytics.engine import run_report as run_pushed_down

    session = la.open_session(args.workspace_id, args.la_url)
    store = ctx.store()
    # cycle kinds read job snapshots, which only the local store holds (none: kind unknown)
    jobs = store.read("sync_jobs") if args.name == "cycles" and store.exists() else None
    run = run_pushed_down(
        session, args.name, filters, include_noise=args.include_noise, sync_jobs=jobs
    )
    log.info("%s: %d KQL queries, %d result rows", args.name, run.queries, run.rows)
    return run.result


def _access_params(args: argparse.Namespace) -> dict[str, object]:
    """Return the access-time parameters given; UsageError when given to another report."""
    params: dict[str, object] = {}
    if args.slo_minutes is not None:
        if args.slo_minutes <= 0:
            raise UsageError(f"--slo-minutes must be positive, got {args.slo_minutes:g}")
        params["slo_minutes"] = args.slo_minutes
    if args.by is not None:
        params["by"] = args.by
    if args.waiting:
        params["include_waiting"] = True
    if params and not args.name.startswith("access-time"):
        raise UsageError(
            f"--slo-minutes, --by and --waiting apply to access-time reports, not {args.name}"
        )
    if "by" in params and args.name != "access-time-summary":
        raise UsageError("--by applies to access-time-summary")
    if "include_waiting" in params and args.name != "access-time":
        raise UsageError("--waiting applies to access-time")
    return params


def _print_table(name: str, result, shape: str) -> None:
    from reports.export import flatten, jsonable

    if result.frame is not None and shape == "rows":
        if result.frame.empty:
            print(f"{name}: no rows")
        else:
            with pd.option_context(
                "display.max_rows",
                None,
                "display.max_columns",
                None,
                "display.width",
                250,
                "display.max_colwidth",
                60,
            ):
                print(result.frame.to_string(index=False, max_colwidth=60))
    if result.data:
        for key, value in flatten(result.data).items():
            print(f"{key}: {'' if jsonable(value) is None else jsonable(value)}")
    if result.hidden_noise:
        print(
            f"({result.hidden_noise} noise rows hidden: out-of-scope skips and no-op "
            "accountDisabled updates; --include-noise shows them)"
        )


def _support_pack(args: argparse.Namespace, ctx, filters) -> int:
    """Write one user's support pack (XLSX, or a zip of CSV+JSON when --out ends in .zip)."""
    from reports import service
    from reports.export import support_pack_zip, write_atomic, xlsx_bytes

    pack = service.support_pack(ctx.store(), args.user, filters, ctx.now)
    if pack["events"].empty:
        raise UsageError(f"no events for user {args.user!r} (try an object id, UPN or name)")
    zipped = str(args.out).lower().endswith(".zip")
    write_atomic(args.out, support_pack_zip(pack) if zipped else xlsx_bytes(pack))
    print(f"wrote support pack for {args.user} to {args.out}", file=sys.stderr)
    return 0


def _keeper(args: argparse.Namespace, ctx, filters, params: dict[str, object], version: int):
    """Return an ingest.kept.Keeper for this answer when a fresh process may read it back (the
    question ingest.kept.unfiltered keeps, in a kept format, on a version whose model is kept
    beside the parts; a report that reads ``now`` only at a given --now), else None. A report
    that reads no ``now`` (reports.ReportSpec.uses_now) is kept under a name without the
    instant: served with or without --now."""
    from ingest import kept
    from reports import REPORTS, Filters

    if args.format not in kept.KEPT_FORMATS:
        return None
    if not kept.unfiltered(
        filtered=filters != Filters(), include_noise=args.include_noise, params=params
    ):
        return None
    at = kept.now_us(ctx.now) if REPORTS[args.name].uses_now else None
    if REPORTS[args.name].uses_now and (not ctx.now_given or at is None):
        return None  # the clock's now is never asked twice
    if not (kept.model_dir(ctx.store_path, version) / "complete").exists():
        return None
    return kept.Keeper(kept.answer_stem(ctx.store_path, version, args.name, args.format, at))


def run(args: argparse.Namespace, ctx) -> int:
    """Run the report and print or write it."""
    from reports import REPORTS, service
    from reports.export import render, write_json_rows, write_output

    spec = REPORTS[args.name]
    if args.format == "xlsx" and not args.out:
        raise UsageError("--format xlsx writes a file: give --out PATH.xlsx")
    if args.user and args.name not in USER_REPORTS:
        raise UsageError(f"--user applies to {', '.join(USER_REPORTS)}, not {args.name}")
    if args.name == "timeline" and not args.user:
        raise UsageError("report timeline needs --user ID, UPN or name")
    filters = filters_from_args(args)
    access = _access_params(args)
    try:
        spec.load()
    except ImportError as exc:
        raise UsageError(f"report {args.name} is not available in this build ({exc})") from None
    if args.name == "timeline" and (
        args.format == "xlsx" or str(args.out or "").lower().endswith(".zip")
    ):
        return _support_pack(args, ctx, filters)
    keeper = None
    if args.engine == "log-analytics":
        result = _run_in_workspace(args, ctx, filters)
    else:
        params: dict[str, object] = {"user": args.user} if args.user else {}
        params.update(access)
        for item in getattr(args, "param", None) or []:
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise UsageError(f"--param {item!r}: expected KEY=VALUE, e.g. change=<change id>")
            params[key.strip()] = value.strip()
        # The service reads only the tables the report declares, from one store version, with
        # the filters pushed down, and gives the report that version's derived model.
        answer = service.ask(
            ctx.store(), args.name, filters, include_noise=args.include_noise, now=ctx.now, **params
        )
        result = answer.result
        keeper = _keeper(args, ctx, filters, params, answer.version)
    if args.format == "table" and not args.out:
        _print_table(args.name, result, spec.shape)
        return 0
    fmt = "csv" if args.format == "table" else args.format
    # Rows as JSON to a file: written batch by batch (a million rows never sit whole in memory),
    # from the rows as the report gave them (Arrow, or kept in a file: no frame is made).
    given = result.rows_source()
    has_rows = given is not None or result.frame is not None
    rows = fmt == "json" and spec.shape == "rows" and has_rows
    source = given if given is not None else result.frame
    try:
        # Rows to a file or to stdout (a plain `report NAME --format json > file`) batch by batch.
        if not (rows and write_json_rows(source, args.out, keeper)):
            data = render(args.name, result, fmt, spec.shape)
            write_output(data, args.out)
            if keeper is not None:
                keeper.write(data)
    except BaseException:
        if keeper is not None:
            keeper.abandon()
        raise
    if keeper is not None:
        try:
            keeper.commit()
        except OSError as exc:  # kept for speed only
            log.info("answer not kept with the model: %s", exc)
    if args.out:
        print(f"wrote {args.out}", file=sys.stderr)
    if result.hidden_noise:
        log.info("%d noise rows hidden; --include-noise shows them", result.hidden_noise)
    return 0
