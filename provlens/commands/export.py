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


def run(args: argparse.Namespace, ctx) -> int:
    """Export the table."""
    from reports import service
    from reports.export import frame_bytes, write_output
    from reports.inputs import latest_per_resource

    if args.format == "parquet" and not args.out and sys.stdout.isatty():
        raise UsageError("parquet is binary: give --out PATH.parquet (or redirect stdout)")
    filters = filters_from_args(args)
    # One store version, the filters pushed down (reports.service); noise is never hidden here.
    frame = service.table(ctx.store(), args.table, filters)
    if args.table == "scim_resources" and not args.all_snapshots:
        frame = latest_per_resource(frame)
    write_output(frame_bytes(frame.reset_index(drop=True), args.format, args.table), args.out)
    if args.out:
        print(f"wrote {len(frame)} rows to {args.out}", file=sys.stderr)
    return 0
