"""`provlens watch --every 40m`: each round ingest the configured sources, then alert; repeat.

The sources are the config file's ``[sources.graph]`` (``service_principal_ids``, ``graph_url``,
``days``) and ``[sources.scim]`` (``scim_url``); each runs exactly as its `provlens ingest`
command would, but for the derived model: the round's alerts build it once, of the version the
round ends with. SIGTERM or Ctrl-C stop the loop between steps: a step that has started finishes
(its batch commits or is discarded whole), so the store is never left mid-commit. Each round
prints one line; a source that fails is reported in that line and the round goes on.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import logging
import re
import signal
import sys
import threading
import time
from typing import Any

import pandas as pd

from ingest.errors import ProvlensError, UsageError

log = logging.getLogger(__name__)
_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
SOURCE_ORDER = ("graph", "scim")


def parse_duration(value: str) -> float:
    """Return seconds from ``40m``, ``1h``, ``1h30m``, ``90s`` (a bare number is minutes)."""
    text = value.strip().lower()
    if text.isdigit():
        seconds = int(text) * 60.0
    else:
        m = _DURATION.fullmatch(text)
        if not m or not any(m.groups()):
            raise argparse.ArgumentTypeError(
                f"not a duration: {value!r} (e.g. 40m, 1h, 1h30m, 90s)"
            )
        h, mi, s = (int(g or 0) for g in m.groups())
        seconds = h * 3600.0 + mi * 60.0 + s
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"the duration must be positive: {value!r}")
    return seconds


def configure(parser: argparse.ArgumentParser) -> None:
    """Add this command's options."""
    from provlens.commands.alert import add_config_argument

    parser.add_argument(
        "--every",
        required=True,
        type=parse_duration,
        metavar="DURATION",
        help="time between the starts of rounds, e.g. 40m (Entra's cycle interval), 1h, 90s",
    )
    add_config_argument(parser)
    parser.add_argument(
        "--rounds", type=int, metavar="N", help="stop after N rounds (default: run until stopped)"
    )


def _source_argv(name: str, options: dict[str, Any], config: Any) -> list[str]:
    """Return the `provlens ingest <name>` arguments a ``[sources.<name>]`` table asks for."""
    argv: list[str] = []
    where = f"{config.path or 'alert config'}: sources.{name}"
    known = {"graph": {"service_principal_ids", "graph_url", "days"}, "scim": {"scim_url"}}[name]
    for key in options:
        if key not in known:
            raise UsageError(f"{where}.{key}: unknown setting; known: {', '.join(sorted(known))}")
    if name == "graph":
        ids = options.get("service_principal_ids", [])
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise UsageError(f"{where}.service_principal_ids must be a list of object ids")
        for sp in ids:
            argv += ["--service-principal-id", sp]
        url = options.get("graph_url") or config.graph_url
        if url:
            argv += ["--graph-url", str(url)]
        if "days" in options:
            argv += ["--days", str(options["days"])]
    else:
        if options.get("scim_url"):
            argv += ["--scim-url", str(options["scim_url"])]
    return argv


def _commands(config: Any) -> list[tuple[str, Any, argparse.Namespace]]:
    """Return (name, command module, parsed arguments) for each configured source, checked now."""
    from provlens.commands import ingest_graph, ingest_scim

    modules = {"graph": ingest_graph, "scim": ingest_scim}
    out = []
    for name in SOURCE_ORDER:
        if name not in config.sources:
            continue
        mod = modules[name]
        parser = argparse.ArgumentParser(prog=f"provlens ingest {name}", exit_on_error=False)
        mod.configure(parser)
        # The round's alerts build the derived model once, of the version the round ends with
        # (each source building it after its own commit would build one nobody asks).
        argv = [*_source_argv(name, config.sources[name], config), "--no-model"]
        try:
            args = parser.parse_args(argv)
        except (argparse.ArgumentError, SystemExit) as exc:
            raise UsageError(f"{config.path}: sources.{name}: {exc}") from None
        out.append((name, mod, args))
    return out


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else "done"


def _unexpected(exc: Exception) -> str:
    return f"unexpected error: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}"


class _Stop:
    """Set by SIGTERM / SIGINT; checked between steps, waited on between rounds."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal: str | None = None

    def __call__(self, signum: int, frame: Any) -> None:
        self.signal = signal.Signals(signum).name
        self.event.set()

    def __bool__(self) -> bool:
        return self.event.is_set()


def run(args: argparse.Namespace, ctx: Any) -> int:
    """Run rounds until stopped (or ``--rounds``); exit 0 when stopped by a signal."""
    import alerts
    from alerts.config import load
    from alerts.delivery import resolve_targets

    config = load(args.config)
    targets = resolve_targets(config)
    steps = _commands(config)
    if args.rounds is not None and args.rounds < 1:
        raise UsageError(f"--rounds must be at least 1, got {args.rounds}")
    stop = _Stop()
    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    rounds = 0
    try:
        while not stop:
            rounds += 1
            started = time.monotonic()
            now = pd.Timestamp.now(tz="UTC").floor("s")
            round_ctx = dataclasses.replace(ctx, now=now, progress=False)
            parts: list[str] = []
            for name, mod, sargs in steps:
                if stop:
                    break
                buf = io.StringIO()
                try:
                    with contextlib.redirect_stdout(buf):
                        mod.run(sargs, round_ctx)
                    parts.append(f"{name}: {_first_line(buf.getvalue())}")
                except ProvlensError as exc:
                    parts.append(f"{name} failed: {' '.join(str(exc).split())}")
                except Exception as exc:  # a long-running loop reports and goes on
                    log.debug("%s failed", name, exc_info=True)
                    parts.append(f"{name} failed: {_unexpected(exc)}")
            if not stop:
                try:
                    result = alerts.run(ctx.store(), config, targets, now)
                    raised = int((result.changes["state"] == "firing").sum())
                    parts.append(
                        f"alerts: {raised} raised, {len(result.changes) - raised} resolved, "
                        f"{result.still_firing + raised} firing, {result.pending} pending"
                        + (f" ({'; '.join(result.errors)})" if result.errors else "")
                    )
                except ProvlensError as exc:
                    parts.append(f"alert failed: {' '.join(str(exc).split())}")
                except Exception as exc:
                    log.debug("alert failed", exc_info=True)
                    parts.append(f"alert failed: {_unexpected(exc)}")
            if stop:
                parts.append(f"stopped by {stop.signal}")
            stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
            print(f"{stamp} round {rounds}: {'; '.join(parts)}", flush=True)
            if args.rounds is not None and rounds >= args.rounds:
                break
            stop.event.wait(max(0.0, args.every - (time.monotonic() - started)))
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if stop:
        print(f"provlens: watch stopped by {stop.signal} after {rounds} round(s)", file=sys.stderr)
    return 0
