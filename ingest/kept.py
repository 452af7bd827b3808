"""What a store keeps derived from each version, named and read without pandas.

The derived model of a version lives in ``derived/v<version>.m<MODEL_FORMAT>`` beside the parts
(reports.query). Beside it, in ``cli/``, the whole output of ``provlens report NAME --format
json`` asked as :func:`unfiltered` says (no filter, parameter or noise shown), at one ``--now``,
by this very code: written by the normal path after it computed the answer
(provlens.commands.report), read back by a fresh process that has imported nothing heavy
(provlens.kept: no pandas, and pyarrow only for rows read from kept JSON text). A kept answer is
either the bytes themselves (at most KEPT_BYTES_MAX) or, for rows written from the JSON text the
model keeps (reports.export.keep_json_text), a note naming that text: the model's own file of
the rows the answer holds (all of a part's rows, or the subset kept for it when the model was
built: correlation without its noise rows). An answer that would need a mask over kept text is
not kept (it is computed again when asked).

Its name holds the report, the format, the ``--now`` instant and :func:`code_version` (the
source of provlens and the versions of the libraries that shape the output), so an answer is
never read for another reference time or by other code; it is gone with its version's model.
A report that reads no ``now`` (reports.ReportSpec.uses_now False) is kept under a name without
the instant, whether or not ``--now`` was given, and served at any ``--now`` or none: the
keeper (provlens.commands.report) writes the report's declaration into the name, so the
reader needs only to look for files.
This module imports the standard library only (pyarrow inside the functions that read text).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final

from ingest.errors import UsageError

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

DERIVED: Final = "derived"
# What the model holds and how (its parts, their columns and rules, the one-user copies): part of
# the kept model's directory name, so a model written by older code is never read. Bump it with
# any change to what the model holds.
MODEL_FORMAT: Final = 8
ANSWERS: Final = "cli"  # a version's kept CLI answers, under its model directory
KEPT_FORMATS: Final = ("json",)
# Answers of more bytes than this are not kept (rows from kept JSON text are kept as a note).
KEPT_BYTES_MAX: Final = 64 * 1024 * 1024
KEPT_TEXT_ROWS: Final = 16_384  # rows per row group of kept JSON text, and per batch read
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ROOT = Path(__file__).resolve().parents[1]
_SOURCES: Final = ("ingest", "reports", "provlens")
_LIBRARIES: Final = ("pandas", "numpy", "pyarrow", "duckdb", "orjson")


def model_dir(store: Path, version: int) -> Path:
    """Return where the derived model of ``version`` of the store at ``store`` is kept."""
    return store / DERIVED / f"v{version}.m{MODEL_FORMAT}"


def unfiltered(*, filtered: bool, include_noise: bool, params: Mapping[str, Any]) -> bool:
    """Return True for a question the model keeps whole answers of: no filter, no report
    parameter (user, query, access-time options, ``--param``), noise hidden. The service reads
    kept answers (reports.service.answer_with) and the CLI keeps its output by this rule."""
    return not filtered and not include_noise and not params


_code: list[str] = []


def code_version() -> str:
    """Return a digest of the code that writes an answer: every source file of provlens'
    packages and the versions of the libraries that format it (read once per process)."""
    if not _code:
        digest = hashlib.sha256()
        for package in _SOURCES:
            for path in sorted((_ROOT / package).rglob("*.py")):
                digest.update(str(path.relative_to(_ROOT)).encode() + b"\0")
                digest.update(path.read_bytes() + b"\0")
        for lib in _LIBRARIES:
            digest.update(f"{lib}={_installed(lib)}\0".encode())
        _code.append(digest.hexdigest())
    return _code[0]


def _installed(lib: str) -> str:
    """Return the name of ``lib``'s installed distribution directory (its version in it), ""
    when none is found: found without importing ``lib`` (importlib.metadata costs ~20 ms)."""
    from importlib.util import find_spec

    spec = find_spec(lib)
    if spec is None or not spec.origin:
        return ""
    site = Path(spec.origin).parent.parent
    wanted = lib.lower() + "-"
    names = sorted(
        n for n in os.listdir(site) if n.lower().startswith(wanted) and n.endswith(".dist-info")
    )
    return names[-1] if names else ""


def now_us(now: datetime) -> int | None:
    """Return ``now`` (tz-aware) as µs since the epoch, None when it is finer than that (a
    pandas Timestamp's nanoseconds): the instant a kept answer is named by."""
    if getattr(now, "nanosecond", 0):
        return None
    return (now - _EPOCH) // timedelta(microseconds=1)


def answer_stem(store: Path, version: int, report: str, fmt: str, now_us: int | None) -> Path:
    """Return where the kept answer of ``report`` in ``fmt`` at ``now_us`` (µs since the epoch,
    UTC) of ``version`` is kept, without suffix (``.out``: the bytes; ``.text``: a note).
    ``now_us`` None: the answer of a report that reads no ``now`` (reports.ReportSpec.uses_now
    False), kept at any time: its name says so, a fresh process looks it up first."""
    at = "any" if now_us is None else str(now_us)
    key = f"{report}\0{fmt}\0{at}\0{code_version()}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    return model_dir(store, version) / ANSWERS / f"{report}.{fmt}.{digest}"


# --- writing an answer's rows from kept JSON text ------------------------------------------------


def text_of(lines: pa.Array) -> memoryview:
    """Return the text of a string array's values end to end (its data buffer, no copy)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_string(lines.type) or pa.types.is_large_string(lines.type):
        _, offsets, data = lines.buffers()
        kind = np.int32 if pa.types.is_string(lines.type) else np.int64
        at = np.frombuffer(offsets, dtype=kind)
        start, end = int(at[lines.offset]), int(at[lines.offset + len(lines)])
        return memoryview(data)[start:end] if data is not None else memoryview(b"")
    offsets = pa.array([0, len(lines)], pa.int32())
    joined = pc.binary_join(pa.ListArray.from_arrays(offsets, lines.cast(pa.string())), "")[0]
    return memoryview(joined.as_buffer())


def text_chunks(
    path: str | Path | pq.ParquetFile, keep: pa.Array | None, rows: int
) -> Iterator[memoryview]:
    """Return the kept JSON text at ``path`` (column ``j``: each row's JSON after its ``,\\n``)
    of the rows ``keep`` marks (None: all), end to end without the first separator, in pieces
    of at most ``rows`` rows."""
    import pyarrow.parquet as pq

    text = path if isinstance(path, pq.ParquetFile) else pq.ParquetFile(path, memory_map=True)
    return _text_pieces(text, keep, rows)


def _text_pieces(text: pq.ParquetFile, keep: pa.Array | None, rows: int) -> Iterator[memoryview]:
    # Row group by row group (KEPT_TEXT_ROWS rows each, as keep_json_text writes them), on this
    # thread: a third less time than a batch reader over the same file.
    skip, at = 2, 0
    for group in range(text.metadata.num_row_groups):
        column = text.read_row_group(group, columns=["j"], use_threads=False).column(0)
        for chunk in column.chunks:
            for start in range(0, len(chunk), rows):
                lines = chunk.slice(start, rows)
                if keep is not None:
                    read = len(lines)
                    lines = lines.filter(keep.slice(at, read))
                    at += read
                if len(lines) == 0:
                    continue
                piece = text_of(lines)
                yield piece[skip:]
                skip = 0


def write_rows(fh: IO[bytes], chunks: Iterable[memoryview | bytes]) -> None:
    """Write rows' JSON pieces (joined by ``,\\n``) as the JSON array json_bytes writes."""
    started = False
    for chunk in chunks:
        if not started and len(chunk):
            fh.write(b"[\n")
            started = True
        fh.write(chunk)
    fh.write(b"\n]\n" if started else b"[]\n")  # no rows: as json_bytes writes them


# --- output files ----------------------------------------------------------------------------


def write_atomic(path: str | Path, data: bytes | Callable[[IO[bytes]], None]) -> Path:
    """Write ``data`` to ``path`` atomically, creating parent directories; return the path.

    ``data``: the bytes, or a function writing them to the open file (streamed output).
    An existing directory (or a path ending in a separator) is refused rather than written into.
    """

    def put(fh: IO[bytes]) -> None:
        if callable(data):
            data(fh)
        else:
            fh.write(data)

    text = str(path)
    target = Path(path).expanduser()
    if text.endswith((os.sep, "/")) or target.is_dir():
        raise UsageError(f"{target}: is a directory; give --out a file name")
    if target.exists() and not target.is_file():
        # A device or pipe (``--out /dev/null``, ``--out /dev/stdout``): written to in place;
        # renaming a temporary file over it would replace the device with a regular file.
        with open(target, "wb") as fh:
            put(fh)
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UsageError(
            f"{target.parent}: is not a directory; cannot write {target.name}"
        ) from None
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            put(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


# --- keeping an answer ---------------------------------------------------------------------------


class Keeper:
    """Keeps one answer's output as it is written (:meth:`tee`), or a note naming kept JSON
    text (:meth:`text`); nothing is kept unless :meth:`commit` runs after the output was
    written whole. The model directory of the version must exist (kept beside the parts)."""

    def __init__(self, stem: Path) -> None:
        self.stem = stem
        self._tmp = stem.parent / f".{stem.name}.{os.getpid()}.tmp"
        self._fh: IO[bytes] | None = None
        self._size = 0
        self._note: dict[str, Any] | None = None
        self._dropped = False

    def tee(self, fh: IO[bytes]) -> IO[bytes]:
        """Return a file object writing to ``fh`` and to the kept answer."""
        keeper = self

        class _Tee:
            def write(self, data: bytes | memoryview) -> int:
                keeper.write(data)
                return fh.write(data)

        return _Tee()  # type: ignore[return-value]

    def write(self, data: bytes | memoryview) -> None:
        """Add ``data`` to the kept bytes (beyond KEPT_BYTES_MAX: none are kept)."""
        if self._dropped or self._note is not None:
            return
        self._size += len(data)
        if self._size > KEPT_BYTES_MAX:
            self._drop()
            return
        try:
            if self._fh is None:
                self.stem.parent.mkdir(exist_ok=True)
                self._fh = open(self._tmp, "wb")  # noqa: SIM115 (closed by commit or drop)
            self._fh.write(data)
        except OSError:  # kept for speed only: a store we may not write keeps none
            self._drop()

    def text(self, path: str, keep: pa.Array | None) -> None:
        """Keep a note instead of bytes: the answer is the rows of the kept JSON text at
        ``path`` that ``keep`` marks (None: all), written by :func:`write_rows`. With a mask,
        nothing is kept: writing those rows' text at an ask cost correlation's first ask a
        second at 1M; the model keeps the subsets answers hold instead."""
        self._drop()
        if keep is None:
            self._note = {"text": os.path.relpath(path, self.stem.parent.parent)}

    def _drop(self) -> None:
        self._dropped = True
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        self._tmp.unlink(missing_ok=True)

    def commit(self) -> None:
        """Keep what was written (atomically): the bytes, or the note; the
        report's answers kept before (another --now, other code) are dropped: one per report
        and format, so asking at many times keeps no more."""
        if self._note is None and (self._dropped or self._fh is None):
            return
        report, fmt, _ = self.stem.name.split(".", 2)
        for old in self.stem.parent.glob(f"{report}.{fmt}.*"):
            if not old.name.startswith(self.stem.name + "."):
                old.unlink(missing_ok=True)
        if self._note is not None:
            self.stem.parent.mkdir(parents=False, exist_ok=True)
            note = self.stem.with_name(self.stem.name + ".text")
            tmp = note.with_name(f".{note.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(self._note))
            os.replace(tmp, note)
            return
        assert self._fh is not None
        self._fh.close()
        self._fh = None
        os.replace(self._tmp, self.stem.with_name(self.stem.name + ".out"))

    def abandon(self) -> None:
        """Keep nothing (the output failed)."""
        self._note = None
        self._drop()


# --- reading an answer back ----------------------------------------------------------------------


def kept_writer(stem: Path) -> Callable[[IO[bytes]], None] | None:
    """Return a function writing the answer kept at ``stem`` (answer_stem) to an open file,
    None when none is kept (or its kept text is gone)."""
    out = stem.with_name(stem.name + ".out")
    if out.exists():
        data = out.read_bytes()

        def put(fh: IO[bytes]) -> None:
            fh.write(data)

        return put
    note_path = stem.with_name(stem.name + ".text")
    if not note_path.exists():
        return None
    note = json.loads(note_path.read_text())
    text = stem.parent.parent / str(note["text"])
    if not text.exists():
        return None
    import pyarrow.parquet as pq

    # Opened now: a text gone since is no answer, before any output.
    opened = pq.ParquetFile(text, memory_map=True)

    def write(fh: IO[bytes]) -> None:
        write_rows(fh, text_chunks(opened, None, KEPT_TEXT_ROWS))

    return write
