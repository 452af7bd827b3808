"""`provlens ingest file PATH ...`."""

from __future__ import annotations

import argparse
import sys

from provlens import prepare

# The names --kind accepts: the format registry's (ingest.files.kinds()), listed here so that
# `ingest file --help` does not import every format and pandas; tests/test_cli_lazy.py fails
# when the two differ.
KINDS = (
    "access_log",
    "assignments",
    "azure_monitor",
    "directory_audit",
    "graph",
    "group_members",
    "log_analytics",
    "portal_csv",
    "portal_json",
    "scim_audit",
    "scim_list",
    "sync_jobs",
)


def configure(parser: argparse.ArgumentParser) -> None:
    """Add this command's arguments."""
    parser.add_argument("paths", nargs="+", metavar="PATH", help="files to ingest, as one batch")
    parser.add_argument("--kind", choices=KINDS, help="force the format instead of detecting it")
    parser.add_argument(
        "--service-principal-id", help="enterprise app the files belong to (jobs, assignments)"
    )
    parser.add_argument("--group-id", help="group a members file belongs to")
    prepare.add_argument(parser)


def run(args: argparse.Namespace, ctx) -> int:
    """Ingest the files and print what changed."""
    from ingest.files import ingest_files
    from ingest.formats import Options

    options = Options(
        service_principal_id=args.service_principal_id,
        group_id=args.group_id,
        origin="file",
        captured_at=None,
    )
    result = ingest_files(
        ctx.store(), args.paths, kind=args.kind, options=options, progress=ctx.progress
    )
    read = result.read
    new = result.new
    for f in result.files:
        counts = ", ".join(f"{n} {t}" for t, n in f.rows.items()) or "no rows"
        print(f"{f.path}: {f.kind}: {counts}")
    parts = [f"{t} {read[t]} read, {new.get(t, 0)} new" for t in read]
    print(f"store {ctx.store_path} (version {result.version}): " + "; ".join(parts))
    sys.stdout.flush()
    prepare.after_ingest(args, ctx)
    return 0
