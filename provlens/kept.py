"""`provlens report NAME --format json` answered from what the store version keeps.

A fresh process asked an unfiltered question (ingest.kept.unfiltered: no filter, parameter or
noise shown) writes the answer the normal path kept for that very question on the store's
current version (ingest.kept: the bytes, or rows of the model's kept JSON text): the answer
kept at any time (a report that reads no ``now``), with or without ``--now``; else the one kept
at the very ``--now`` given. It does so before the CLI imports pandas, DuckDB or the reports.
Any other command line, a store without such an answer, or anything unexpected takes the
normal path, which computes (and keeps) it.

Only this form is read here: global ``--store``/``--now`` (``PROVLENS_STORE`` for the store),
then ``report NAME`` with ``--format json`` and optionally ``--out PATH``, each at most once.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

from ingest import kept
from ingest.errors import ProvlensError

# ISO 8601 as `--now` is usually written; other spellings take the normal path (pandas parses).
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})?")


class Question(NamedTuple):
    """The command line's question, as far as a kept answer can answer it."""

    store: Path
    now_us: int | None  # None: no --now given (the clock's)
    report: str
    fmt: str
    out: str | None
    filtered: bool


def _instant(text: str) -> int | None:
    """Return ``text`` (an ISO time; naive means UTC, as provlens.cli.parse_time) in µs."""
    if not _TIME.fullmatch(text):
        return None
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return kept.now_us(at)


def question(argv: Sequence[str]) -> Question | None:
    """Return the question of ``argv`` when it has the one form read here, else None."""
    given: dict[str, str] = {}
    words: list[str] = []
    rest = list(argv)
    extra = False
    while rest:
        arg = rest.pop(0)
        name, eq, value = arg.partition("=")
        known = ("--store", "--now") if not words else ("--format", "--out")
        if name in known and words[:1] in ([], ["report"]):
            if not eq:
                if not rest:
                    return None
                value = rest.pop(0)
            if name in given:
                return None
            given[name] = value
        elif arg.startswith("-"):
            extra = True  # an option this form does not know: a filter, a parameter, ...
            break
        else:
            words.append(arg)
    if extra or len(words) != 2 or words[0] != "report" or given.get("--format") != "json":
        return None
    store = given.get("--store") or os.environ.get("PROVLENS_STORE")
    at = _instant(given["--now"]) if "--now" in given else None
    if not store or ("--now" in given and at is None) or given.get("--out") == "":
        return None
    return Question(Path(store).expanduser(), at, words[1], "json", given.get("--out"), False)


def answer(argv: Sequence[str]) -> int | None:
    """Write the kept answer of ``argv``'s question and return the exit code; None when the
    normal path must answer (no such kept answer, or not such a question)."""
    asked = question(argv)
    if asked is None or not kept.unfiltered(
        filtered=asked.filtered, include_noise=False, params={}
    ):
        return None
    try:
        manifest = json.loads((asked.store / "manifest.json").read_bytes())
        version = manifest["version"]
        if not isinstance(version, int):
            return None
        # A report that reads no now is kept at any time; else at the very --now asked.
        writer = None
        for at in (None, asked.now_us) if asked.now_us is not None else (None,):
            stem = kept.answer_stem(asked.store, version, asked.report, asked.fmt, at)
            writer = kept.kept_writer(stem)
            if writer is not None:
                break
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if writer is None:
        return None
    try:
        if asked.out is not None:
            kept.write_atomic(asked.out, writer)
            print(f"wrote {asked.out}", file=sys.stderr)
        else:
            writer(sys.stdout.buffer)
            sys.stdout.buffer.flush()
    except ProvlensError as exc:  # as provlens.cli.main reports it
        print(f"provlens: {' '.join(str(exc).split())}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        return 0
    return 0
