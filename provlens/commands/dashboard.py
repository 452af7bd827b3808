"""`provlens dashboard [--port N] [--address HOST]`: the Streamlit dashboard on the store."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    """Add this command's options."""
    parser.add_argument("--port", type=int, default=8501, metavar="N", help="TCP port (8501)")
    parser.add_argument(
        "--address",
        default="localhost",
        metavar="HOST",
        help="address to listen on (localhost); another address needs sign-in configured in "
        ".streamlit/secrets.toml",
    )


def run(args: argparse.Namespace, ctx) -> int:
    """Serve the dashboard until interrupted."""
    from dashboard.launch import run as launch
    from dashboard.launch import validate

    validate(args.port, args.address)
    print(f"provlens dashboard: store {ctx.store_path}; http://{args.address}:{args.port}")
    return launch(ctx.store_path, port=args.port, address=args.address)
