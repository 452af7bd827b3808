"""The `provlens` command line.

Global options go before the command. Each command lives in ``provlens/commands/<name>.py`` and
declares ``COMMAND`` (its words, e.g. ``("ingest", "file")``), ``HELP``, ``configure(parser)`` and
``run(args, ctx) -> int``. Errors are one line on stderr; exit codes follow DESIGN.md.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pandas as pd

from ingest.errors import ProvlensError

log = logging.getLogger("provlens")


@dataclass
class Context:
    """What every command gets: the chosen store path, the reference time and output options."""

    store_path: Path
    store_given: bool
    now: pd.Timestamp
    verbose: bool
    progress: bool  # draw progress bars (stderr is a terminal)

    def store(self):
        """Return the Store at ``store_path``."""
        from ingest.store import Store

        return Store(self.store_path)


def _commands() -> list[ModuleType]:
    from provlens import commands

    mods = []
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        mod = importlib.import_module(f"provlens.commands.{info.name}")
        if hasattr(mod, "COMMAND"):
            mods.append(mod)
    return mods


def parse_time(value: str) -> pd.Timestamp:
    """Parse an ISO 8601 time given on the command line (naive means UTC)."""
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise argparse.ArgumentTypeError(
            f"not an ISO 8601 time: {value!r} (e.g. 2026-11-20T10:00:00Z)"
        ) from None
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def build_parser() -> argparse.ArgumentParser:
    """Return the full argument parser."""
    parser = argparse.ArgumentParser(
        prog="provlens",
        description="Entra ID provisioning logs, job status, scope and the wiki's SCIM side, "
        "answered: how long, why it failed, what fixes it.",
    )
    parser.add_argument("--store", metavar="PATH", help="store directory (env PROVLENS_STORE)")
    parser.add_argument(
        "--now", metavar="ISO", type=parse_time, help="reference time for time-dependent reports"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="more detail on stderr")
    parser.add_argument("--log-file", metavar="PATH", help="also write the log to this file")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    groups: dict[str, argparse._SubParsersAction] = {}
    for mod in _commands():
        words: tuple[str, ...] = mod.COMMAND
        if len(words) == 1:
            p = sub.add_parser(words[0], help=mod.HELP, description=mod.HELP)
        else:
            if words[0] not in groups:
                gp = sub.add_parser(words[0], help=f"{words[0]} commands")
                groups[words[0]] = gp.add_subparsers(
                    dest="subcommand", metavar="SUBCOMMAND", required=True
                )
            p = groups[words[0]].add_parser(words[1], help=mod.HELP, description=mod.HELP)
        mod.configure(p)
        p.set_defaults(_run=mod.run)
    return parser


def _setup_logging(verbose: bool, log_file: str | None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    handlers[0].setLevel(logging.INFO if verbose else logging.WARNING)
    if log_file:
        fh = logging.FileHandler(log_file, encoding="utf-8")
        fh.setLevel(logging.DEBUG)
        handlers.append(fh)
    logging.basicConfig(
        level=logging.DEBUG if log_file else (logging.INFO if verbose else logging.WARNING),
        format="provlens: %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    # Client libraries log request URLs and headers at INFO/DEBUG; keep them quiet.
    for noisy in ("azure", "httpx", "httpcore", "msal", "kiota_http", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose, args.log_file)
    if args.store:
        store_path, given = Path(args.store).expanduser(), True
    elif os.environ.get("PROVLENS_STORE"):
        store_path, given = Path(os.environ["PROVLENS_STORE"]).expanduser(), True
    else:
        from ingest.store import Store

        store_path, given = Store.default_path(), False
    ctx = Context(
        store_path=store_path,
        store_given=given,
        now=args.now if args.now is not None else pd.Timestamp.now(tz="UTC"),
        verbose=args.verbose,
        progress=sys.stderr.isatty(),
    )
    try:
        return int(args._run(args, ctx) or 0)
    except ProvlensError as exc:
        # One line, whatever a library put in the message (pandas' CSV errors end in "\n").
        print(f"provlens: {' '.join(str(exc).split())}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("provlens: interrupted; the store keeps its last committed state", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # one line, not a traceback; -v shows the traceback
        log.debug("unexpected error", exc_info=True)
        if args.verbose:
            import traceback

            traceback.print_exc()
        text = " ".join(str(exc).split())
        print(
            f"provlens: unexpected error: {type(exc).__name__}: {text} (run with -v for details)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
