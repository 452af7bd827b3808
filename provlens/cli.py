"""The `provlens` command line.

Global options go before the command. Each command lives in ``provlens/commands/<name>.py`` with
``configure(parser)`` and ``run(args, ctx) -> int``, and has one line (words, module, help) in the
registry ``provlens/commands/__init__.py``; a command's module is imported only when it runs or its
own ``--help`` is asked. Errors are one line on stderr; exit codes follow DESIGN.md.
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
from typing import TYPE_CHECKING, Any, cast

from ingest.errors import ProvlensError

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("provlens")


@dataclass
class Context:
    """What every command gets: the chosen store path, the reference time and output options."""

    store_path: Path
    store_given: bool
    now: pd.Timestamp
    now_given: bool  # --now was given (else now is the clock's)
    verbose: bool
    progress: bool  # draw progress bars (stderr is a terminal)

    def store(self):
        """Return the Store at ``store_path``."""
        from ingest.store import Store

        return Store(self.store_path)


class _LazySubcommands(argparse._SubParsersAction):
    """Subcommands whose module is imported and configured only when that command is chosen."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.modules: dict[str, str] = {}  # command word -> module not configured yet

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        name = values[0] if values else None
        if isinstance(name, str) and name in self.modules:
            module = importlib.import_module(self.modules.pop(name))
            _configure(self._name_parser_map[name], module)
        super().__call__(parser, namespace, values, option_string)


def _configure(parser: argparse.ArgumentParser, mod: ModuleType) -> None:
    mod.configure(parser)
    parser.set_defaults(_run=mod.run)


def _unregistered() -> list[ModuleType]:
    """Command modules missing from the registry (imported eagerly, by their COMMAND/HELP)."""
    from provlens import commands

    known = {c.module for c in commands.COMMANDS}
    mods = []
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name in known:
            continue
        mod = importlib.import_module(f"provlens.commands.{info.name}")
        if hasattr(mod, "COMMAND"):
            log.debug("command module %s is not in provlens/commands/__init__.py", info.name)
            mods.append(mod)
    return mods


def parse_time(value: str) -> pd.Timestamp:
    """Parse an ISO 8601 time given on the command line (naive means UTC)."""
    import pandas as pd

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
    from provlens import commands

    sub = cast(
        _LazySubcommands,
        parser.add_subparsers(
            dest="command", metavar="COMMAND", required=True, action=_LazySubcommands
        ),
    )
    groups: dict[str, _LazySubcommands] = {}

    def add(
        words: tuple[str, ...], help_text: str
    ) -> tuple[_LazySubcommands, argparse.ArgumentParser]:
        if len(words) == 1:
            return sub, sub.add_parser(words[0], help=help_text, description=help_text)
        if words[0] not in groups:
            group_help = commands.GROUPS.get(words[0], f"{words[0]} commands")
            gp = sub.add_parser(words[0], help=group_help, description=group_help)
            groups[words[0]] = cast(
                _LazySubcommands,
                gp.add_subparsers(
                    dest="subcommand", metavar="SUBCOMMAND", required=True, action=_LazySubcommands
                ),
            )
        action = groups[words[0]]
        return action, action.add_parser(words[1], help=help_text, description=help_text)

    for cmd in commands.COMMANDS:
        action, _ = add(cmd.words, cmd.help)
        action.modules[cmd.words[-1]] = f"provlens.commands.{cmd.module}"
    for mod in _unregistered():
        _configure(add(tuple(mod.COMMAND), mod.HELP)[1], mod)
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
    from provlens import kept

    # An unfiltered report the store version keeps the answer of: written before anything heavy
    # is imported (pandas, DuckDB, the reports); None: not such a question, the parser's turn.
    served = kept.answer(sys.argv[1:] if argv is None else argv)
    if served is not None:
        return served
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
    import pandas as pd

    ctx = Context(
        store_path=store_path,
        store_given=given,
        now=args.now if args.now is not None else pd.Timestamp.now(tz="UTC"),
        now_given=args.now is not None,
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
