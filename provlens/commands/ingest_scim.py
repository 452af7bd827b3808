"""`provlens ingest scim`: snapshot the wiki's SCIM users and groups into ``scim_resources``."""

from __future__ import annotations

import argparse

from ingest import settings
from ingest.errors import UsageError
from provlens import prepare


def configure(parser: argparse.ArgumentParser) -> None:
    """Add this command's options."""
    parser.add_argument(
        "--scim-url",
        metavar="URL",
        help="the wiki's SCIM base URL, e.g. https://<subdomain>.theorgwiki.com/api/v2/scim/v2 "
        "(env PROVLENS_SCIM_URL)",
    )
    parser.add_argument(
        "--page-size",
        type=int,
        default=100,
        metavar="N",
        help="resources asked for per page (`count`); default 100",
    )
    prepare.add_argument(parser)


def run(args: argparse.Namespace, ctx) -> int:
    """Pull the snapshot and store it in one batch; print a one-line summary."""
    from ingest.scim import ingest_scim

    url = args.scim_url or settings.get(settings.SCIM_URL)
    if not url:
        raise UsageError(
            "no SCIM URL: pass --scim-url URL (the wiki's SCIM base URL) "
            f"or set {settings.SCIM_URL}"
        )
    if args.page_size < 1:
        raise UsageError(f"--page-size must be at least 1, got {args.page_size}")
    token = settings.require(settings.SCIM_TOKEN, "the wiki's SCIM token")
    snap = ingest_scim(ctx.store(), url, token, ctx.now, page_size=args.page_size)
    print(
        f"stored a SCIM snapshot of {snap.users} users ({snap.inactive_users} inactive) and "
        f"{snap.groups} groups from {snap.base_url} at {ctx.now.strftime('%Y-%m-%dT%H:%M:%SZ')}"
    )
    prepare.after_ingest(args, ctx)
    return 0
