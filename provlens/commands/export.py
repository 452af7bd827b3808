"""`provlens export TABLE`: a canonical table, noise included, as CSV, JSON or parquet."""

from __future__ import annotations

import argparse
import sys

from ingest.errors import UsageError
from provlens.commands.report import add_filter_arguments, filters_from_args

FLAT = "events_flat"


def configure(parser: argparse.ArgumentParser) -> None:
    """Add this command's arguments."""
    from ingest.schema import TABLES

    parser.add_argument(
        "table", metavar="TABLE", choices=[*TABLES, FLAT], help=", ".join([*TABLES, FLAT])
    )
    parser.add_argument("--format", choices=("csv", "json", "parquet"), default="csv")
    parser.add_argument("--out", metavar="PATH", help="write to this file instead of stdout")
    parser.add_argument(
        "--all-snapshots",
        action="store_true",
        help="scim_resources: every snapshot, not only the latest per resource",
    )
    add_filter_arguments(parser)


def _needed(table: str, filters) -> list[str]:
    """Return the tables to read to export ``table`` under ``filters``."""
    if table == FLAT:
        return ["events", "steps", "modified_properties"]
    need = [table]
    event_filters = any(
        (
            filters.since,
            filters.until,
            filters.service_principal_ids,
            filters.job_ids,
            filters.actions,
            filters.statuses,
        )
    )
    if table in ("steps", "modified_properties") and event_filters:
        need.append("events")
    if table == "group_members" and filters.service_principal_ids:
        need.append("assignments")
    return need


def run(args: argparse.Namespace, ctx) -> int:
    """Export the table."""
    from provlens.commands.report import load_inputs
    from reports.export import flat_events, frame_bytes, write_output
    from reports.inputs import latest_per_resource

    if args.format == "parquet" and not args.out and sys.stdout.isatty():
        raise UsageError("parquet is binary: give --out PATH.parquet (or redirect stdout)")
    filters = filters_from_args(args)
    inputs = filters.apply_inputs(load_inputs(ctx.store(), _needed(args.table, filters), filters))
    if args.table == FLAT:
        frame = flat_events(inputs)
    else:
        frame = getattr(inputs, args.table)
        if args.table == "scim_resources" and not args.all_snapshots:
            frame = latest_per_resource(frame)
    write_output(frame_bytes(frame.reset_index(drop=True), args.format, args.table), args.out)
    if args.out:
        print(f"wrote {len(frame)} rows to {args.out}", file=sys.stderr)
    return 0
