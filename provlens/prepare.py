"""What every `provlens ingest` command does after its commit: build the new version's model.

The derived model (noise, cycles, request matches, objects, the one-user access path and the kept
answers; reports.query) is computed once per store version. Built here, right after the ingest
that made the version, the first `provlens report`, export or dashboard visit reads it instead of
building it (about 80 s at 1M events on the reference machine, while each later question takes
under 1.5 s). ``--no-model`` leaves it to the first question, as before.

The model is a cache of the committed data: when it cannot be built, the ingest still succeeded;
one warning line says so and the first question builds it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

log = logging.getLogger(__name__)


def add_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--no-model`` to an ingest command."""
    parser.add_argument(
        "--no-model",
        action="store_true",
        help="do not build the derived model of the new store version now (the first report "
        "or dashboard visit builds it instead: about a minute at 1M events)",
    )


def after_ingest(args: argparse.Namespace, ctx: Any) -> None:
    """Build the derived model of the store's current version unless ``--no-model``; print
    one line when it was built."""
    if args.no_model:
        return
    from reports import service

    if ctx.progress:
        print("building the derived model of the new store version…", file=sys.stderr)
    try:
        done = service.prepare(ctx.store_path)
    except Exception as exc:  # a cache: the committed data is safe, the first question retries
        log.debug("derived model not built", exc_info=True)
        text = " ".join(str(exc).split())
        print(
            f"provlens: warning: the derived model was not built ({type(exc).__name__}: {text}); "
            "the ingest is committed, and the first report builds the model",
            file=sys.stderr,
        )
        return
    if done.built and not done.kept:
        print(
            f"provlens: warning: the derived model of version {done.version} could not be kept "
            "beside the store's parts (not writable?); each question builds it again",
            file=sys.stderr,
        )
    elif done.built:
        print(
            f"derived model of version {done.version} built in {done.seconds:.1f} s "
            "(reports and the dashboard read it)"
        )
