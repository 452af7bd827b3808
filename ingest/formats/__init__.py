"""File formats provlens reads, detected by content.

Each format module registers a :class:`FileFormat`: a cheap ``sniff`` on the first part of the
decoded text and a ``parse`` that yields canonical frames in chunks (so large files stream).
``ingest.files`` decodes the file, asks every format to sniff it (or takes ``--kind``), and
collects the chunks into one all-or-nothing store batch.
"""

from __future__ import annotations

import codecs
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ingest.errors import BadInput

HEAD_CHARS = 64 * 1024
# Leading bytes of archive formats (refused by name rather than as undecodable text).
ARCHIVES = (
    (b"PK\x03\x04", "zip"),
    (b"PK\x05\x06", "zip"),
    (b"\x1f\x8b", "gzip"),
    *((b"BZh" + str(level).encode() + b"1AY&", "bzip2") for level in range(1, 10)),
    (b"\xfd7zXZ\x00", "xz"),
    (b"7z\xbc\xaf\x27\x1c", "7z"),
    (b"Rar!\x1a\x07", "rar"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
)

Frames = dict[str, pd.DataFrame]


@dataclass
class Options:
    """What the caller knows that a file may not carry."""

    service_principal_id: str | None = None
    group_id: str | None = None
    origin: str = "file"
    captured_at: pd.Timestamp | None = None  # snapshot time for state files; default: file mtime
    # Chunks of provisioning records at least this long go to the columnar engine (when it can
    # read them exactly); smaller ones to the per-record engine. Both give the same rows.
    columnar_min_records: int = 500


class Source:
    """A decoded input file: UTF-8 (BOM or not) or UTF-16 with BOM; anything else is bad."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.name = str(path)
        with self.path.open("rb") as fh:
            start = fh.read(8)
        for magic, what in ARCHIVES:
            if start.startswith(magic):
                raise BadInput(
                    f"{self.name}:1",
                    f"a {what} archive; provlens reads no archives",
                    "extract it and ingest the files inside; nothing was stored",
                )
        if start.startswith(codecs.BOM_UTF8):
            self.encoding, self._skip = "utf-8", 3
        elif start.startswith(codecs.BOM_UTF16_LE) or start.startswith(codecs.BOM_UTF16_BE):
            self.encoding, self._skip = "utf-16", 0
        else:
            self.encoding, self._skip = "utf-8", 0
        self._text: str | None = None
        self._head: str | None = None

    @property
    def size(self) -> int:
        """File size in bytes."""
        return self.path.stat().st_size

    def _decode_error(self, exc: UnicodeDecodeError, base: int = 0) -> BadInput:
        offset = base + exc.start + self._skip
        line = 1
        with self.path.open("rb") as fh:
            line += fh.read(offset).count(b"\n")
        return BadInput(
            f"{self.name}:{line}",
            f"not valid {self.encoding.upper()} text (byte {offset})",
            "save the file as UTF-8 (or UTF-16 with BOM) and try again; nothing was stored",
        )

    def head(self) -> str:
        """Return up to the first 64 KiB of decoded text (a partial last character is dropped)."""
        if self._head is None:
            if self._text is not None:
                self._head = self._text[:HEAD_CHARS]
            else:
                with self.path.open("rb") as fh:
                    raw = fh.read(HEAD_CHARS * 2 + self._skip)
                dec = codecs.getincrementaldecoder(self.encoding)()
                try:
                    self._head = dec.decode(raw[self._skip :], final=False)[:HEAD_CHARS]
                except UnicodeDecodeError as exc:
                    raise self._decode_error(exc) from None
                self._head = self._head.lstrip("\ufeff")
        return self._head

    def text(self) -> str:
        """Return the whole decoded text (cached)."""
        if self._text is None:
            raw = self.path.read_bytes()[self._skip :]
            try:
                text = raw.decode(self.encoding)
            except UnicodeDecodeError as exc:
                raise self._decode_error(exc) from None
            self._text = text.lstrip("\ufeff")
        return self._text

    def lines(self) -> Iterator[tuple[int, str]]:
        """Yield ``(line_number, line)`` pairs, decoding as it streams (1-based numbers)."""
        if self._text is not None:
            yield from enumerate(io.StringIO(self._text), start=1)
            return
        with self.path.open("rb") as fh:
            fh.seek(self._skip)
            # TextIOWrapper, not codecs.getreader: the latter is quadratic on a long line (20 MB
            # took minutes) and splits at U+2028/U+0085, which JSON strings may hold raw.
            # newline="" splits at \n, \r\n and \r only, and keeps the line ends.
            reader = io.TextIOWrapper(fh, encoding=self.encoding, errors="strict", newline="")
            n = 0
            try:
                for n, line in enumerate(reader, start=1):
                    yield n, line.lstrip("\ufeff") if n == 1 else line
            except UnicodeDecodeError:
                raise BadInput(
                    f"{self.name}:{n + 1}",
                    f"not valid {self.encoding.upper()} text",
                    "save the file as UTF-8 (or UTF-16 with BOM) and try again; nothing was stored",
                ) from None


@dataclass
class FileFormat:
    """A readable format: ``sniff(source)`` says whether it is this one; ``parse`` yields frames."""

    kind: str
    description: str
    sniff: Callable[[Source], bool]
    parse: Callable[[Source, Options], Iterator[Frames]]
    # Lower runs first; specific formats sniff before generic ones.
    priority: int = 50
    tables: tuple[str, ...] = field(default_factory=tuple)


REGISTRY: dict[str, FileFormat] = {}


def register(fmt: FileFormat) -> FileFormat:
    """Add ``fmt`` to the registry (a later registration of the same kind replaces it)."""
    REGISTRY[fmt.kind] = fmt
    return fmt


def load_all() -> dict[str, FileFormat]:
    """Import every format module so each registers itself; return the registry."""
    import importlib
    import pkgutil

    for mod in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{mod.name}")
    return REGISTRY


def detect(source: Source) -> FileFormat:
    """Return the format of ``source`` by content, or raise BadInput naming what it looks like."""
    formats = sorted(load_all().values(), key=lambda f: (f.priority, f.kind))
    head = source.head()
    if not head.strip():
        raise BadInput(f"{source.name}:1", "the file is empty", "nothing was stored")
    for fmt in formats:
        if fmt.sniff(source):
            return fmt
    first = head.strip().splitlines()[0][:60] if head.strip() else ""
    kinds = ", ".join(sorted(REGISTRY))
    raise BadInput(
        f"{source.name}:1",
        f"not a format provlens recognises (starts with {first!r})",
        f"pass --kind with one of: {kinds}; nothing was stored",
    )
