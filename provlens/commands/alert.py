"""`provlens alert`: evaluate the alert rules on the store, deliver what is new, record it."""

from __future__ import annotations

import argparse
import logging
import sys

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    """Add this command's options."""
    add_config_argument(parser)
    parser.add_argument(
        "--webhook",
        action="append",
        default=[],
        metavar="URL",
        help="POST alerts as JSON to this URL (repeatable; env PROVLENS_ALERT_WEBHOOK, "
        "comma-separated; prefer the environment: a URL carries its own secret)",
    )
    parser.add_argument(
        "--teams",
        action="append",
        default=[],
        metavar="URL",
        help="a Teams Workflows webhook URL (repeatable; env PROVLENS_ALERT_TEAMS)",
    )
    parser.add_argument(
        "--mail-to",
        action="append",
        default=[],
        metavar="ADDR",
        help="mail alerts to this address through Graph sendMail (repeatable; needs --mail-from)",
    )
    parser.add_argument(
        "--mail-from", metavar="UPN", help="the mailbox to send as (Mail.Send permission)"
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="show what would be raised or resolved; deliver and store nothing",
    )
    parser.add_argument("--format", choices=("table", "json"), default="table")


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--config FILE`` (shared with `provlens watch`)."""
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="alert config (TOML: [rules.<name>] thresholds, targets, sources); "
        "see docs/alerts.example.toml",
    )


def print_result(result, fmt: str, dry_run: bool) -> None:
    """Print the rows raised or resolved (json: the array; table: one line each + a summary)."""
    from reports.export import json_bytes

    if fmt == "json":
        sys.stdout.write(json_bytes(result.changes).decode() + "\n")
    else:
        from alerts.delivery import headline
        from reports.export import records

        for row in records(result.changes):
            print(headline(row) + (f"  {row['link']}" if row["link"] else ""))
        verb = "would raise" if dry_run else "raised"
        raised = int((result.changes["state"] == "firing").sum())
        resolved = len(result.changes) - raised
        print(
            f"{verb} {raised}, {'would resolve' if dry_run else 'resolved'} {resolved}; "
            f"{result.still_firing} still firing; {len(result.rules)} rules evaluated"
        )
        if len(result.retried):
            if dry_run:
                print(f"would retry {len(result.retried)} undelivered alert(s) from earlier runs")
            else:
                print(
                    f"retried {len(result.retried)} undelivered alert(s) from earlier runs; "
                    f"{result.pending} still pending"
                )
    for error in result.errors:
        print(
            f"provlens: alert delivery failed: {error}; kept pending for the next run",
            file=sys.stderr,
        )


def run(args: argparse.Namespace, ctx) -> int:
    """Run the rules, deliver, store; exit 4 when a target could not be reached."""
    import alerts
    from alerts.config import load
    from alerts.delivery import resolve_targets

    config = load(args.config)
    targets = resolve_targets(
        config,
        webhook=args.webhook,
        teams=args.teams,
        mail_to=args.mail_to,
        mail_from=args.mail_from,
    )
    result = alerts.run(ctx.store(), config, targets, ctx.now, dry_run=args.dry_run)
    print_result(result, args.format, args.dry_run)
    return 4 if result.errors else 0
