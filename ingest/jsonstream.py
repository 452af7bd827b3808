"""Streaming record splitter for large JSON files of provisioning records.

A 1M-record Graph export is one multi-gigabyte JSON document; parsing it whole would hold every
record as Python objects at once. Instead this module scans the bytes (memory-mapped, in blocks,
with numpy: quotes, escapes and bracket depth, the way simdjson's first stage does) and yields the
records in chunks, each chunk as JSON Lines bytes (one record per line) plus the line each record
starts on, so a parser only ever holds one chunk.

Layouts streamed (decided by :func:`plan` from the first bytes):

- ``pages``: one or more objects (concatenated, or one per line) whose ``value`` / ``records``
  member is the array of records (Graph list responses, Azure Monitor ``{"records": [...]}``);
  an object without such a member is itself a record;
- ``array``: a bare array of records (the admin center's download);
- ``lines``: JSON Lines / concatenated objects, one record each.

Anything else (Log Analytics tables, arrays of pages, UTF-16 text) is left to the whole-document
reader. The splitter checks the structure between records (commas, whitespace, page framing) and
that the file is complete; the records' own syntax is checked by whoever parses them.
"""

from __future__ import annotations

import contextlib
import mmap
import re
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from ingest.errors import BadInput

BLOCK = 8 << 20
HEAD_BYTES = 64 * 1024
# Set by ingest.files around a file's parse: called with the offset read so far (progress bars).
PROGRESS: ContextVar[Callable[[int], None] | None] = ContextVar("PROGRESS", default=None)
_NOTHING = "nothing was stored"
_QUOTE, _BSLASH, _NL = 34, 92, 10
_OPEN_OBJ, _CLOSE_OBJ, _OPEN_ARR, _CLOSE_ARR, _COMMA = 123, 125, 91, 93, 44
_WS = b" \t\r\n"
_CONTAINER_KEY = re.compile(rb'"(?:value|records)"\s*:\s*$')
_HEAD_PAGE = re.compile(rb'^\s*\{[^{\[]*?"(?:value|records)"\s*:\s*\[')
_LA_HINT = re.compile(rb'"(?:timegenerated|tables)"\s*:', re.IGNORECASE)


@dataclass
class Chunk:
    """Records of one chunk as JSON Lines, with where each came from."""

    data: bytearray  # one record per line, newline-separated (no trailing newline)
    starts: np.ndarray  # file offset of each record
    ends: np.ndarray  # file offset just past each record
    lines: np.ndarray  # 1-based line each record starts on
    index: np.ndarray  # 1-based position of the record in its array (0: a whole document)
    consumed: int  # file offset up to which the file has been read


def plan(head: bytes) -> str | None:
    """Return the streamable layout of a file starting with ``head``, or None."""
    text = head.lstrip(_WS)
    if _LA_HINT.search(head):
        return None
    if text[:1] == b"[":
        rest = text[1:].lstrip(_WS)
        if rest[:1] not in (b"{", b"]"):
            return None
        if _HEAD_PAGE.match(rest):  # an array of pages: the whole-document reader handles it
            return None
        return "array"
    if text[:1] == b"{":
        return "pages" if _HEAD_PAGE.match(text) else "lines"
    return None


_LUT = np.zeros(256, np.uint8)
for _code in (_QUOTE, _BSLASH, _NL, _OPEN_OBJ, _CLOSE_OBJ, _OPEN_ARR, _CLOSE_ARR):
    _LUT[_code] = _code
_TABLE = _LUT.tobytes()


class _Scan:
    """Block-wise structural scan: the braces and brackets outside strings, with their lines."""

    def __init__(self, arr: np.ndarray, start: int) -> None:
        self.arr = arr
        self.pos = start
        self.in_str = False
        self.depth = 0
        self.line = 1
        self.size = len(arr)

    def next_block(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
        """Return (positions, chars, depth_before, line) of the next block's brackets, or None."""
        if self.pos >= self.size:
            return None
        a = self.pos
        b = min(a + BLOCK, self.size)
        # Never end a block inside a run of backslashes (its parity decides the next quote).
        while b < self.size and self.arr[b - 1] == _BSLASH and b > a + 1:
            b -= 1
        # bytes.translate and a boolean nonzero: a third of the time of _LUT[buf] and
        # flatnonzero of the bytes themselves.
        cls = np.frombuffer(self.arr[a:b].tobytes().translate(_TABLE), np.uint8)
        p = np.flatnonzero(cls != 0)
        c = cls[p]
        bs = p[c == _BSLASH]
        if len(bs):
            # A character after an odd run of backslashes is escaped: drop it.
            brk = np.flatnonzero(np.diff(bs) != 1)
            run_start = np.concatenate((bs[:1], bs[brk + 1]))
            run_end = np.concatenate((bs[brk], bs[-1:]))
            escaped = run_end[(run_end - run_start) % 2 == 0] + 1
            keep = c != _BSLASH
            if len(escaped):
                at = np.searchsorted(p, escaped)
                valid = at < len(p)
                at = at[valid]
                keep[at[p[at] == escaped[valid]]] = False
            p, c = p[keep], c[keep]
        is_q = c == _QUOTE
        is_nl = c == _NL
        quotes_before = np.cumsum(is_q) - is_q + int(self.in_str)
        lines = self.line + np.cumsum(is_nl) - is_nl
        struct = ~is_q & ~is_nl & (quotes_before % 2 == 0)
        pos, ch, line = p[struct], c[struct], lines[struct]
        delta = np.where((ch == _OPEN_OBJ) | (ch == _OPEN_ARR), 1, -1)
        after = self.depth + np.cumsum(delta)
        before = after - delta
        if len(after):
            if int(after.min()) < 0:
                bad = int(pos[int(np.argmax(after < 0))]) + a
                raise _Malformed(bad, "a closing bracket has no opening one")
            self.depth = int(after[-1])
        self.in_str = (int(self.in_str) + int(is_q.sum())) % 2 == 1
        self.line += int(is_nl.sum())
        self.pos = b
        return pos + a, ch, before, line


class _Malformed(Exception):
    def __init__(self, offset: int, problem: str) -> None:
        super().__init__(problem)
        self.offset = offset
        self.problem = problem


def iter_chunks(
    path: Path,
    skip: int,
    layout: str,
    name: str,
    max_records: int = 20_000,
    max_bytes: int = 64 << 20,
) -> Iterator[Chunk]:
    """Yield the records of ``path`` (after ``skip`` BOM bytes) in chunks (see module doc)."""
    with path.open("rb") as fh:
        size = fh.seek(0, 2)
        if size <= skip:
            return
        mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        splitter = _Splitter(mm, skip, layout, name, max_records, max_bytes)
        try:
            yield from splitter.run()
        finally:
            splitter.release()
            with contextlib.suppress(BufferError):  # a view may outlive us; GC closes it then
                mm.close()


class _Splitter:
    def __init__(
        self, mm: mmap.mmap, skip: int, layout: str, name: str, max_records: int, max_bytes: int
    ) -> None:
        self.mm = mm
        self.arr = np.frombuffer(mm, dtype=np.uint8)
        self.skip = skip
        self.layout = layout
        self.name = name
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.depth = {"lines": 0, "array": 1, "pages": 2}[layout]
        # Lines before the current block; newline positions of the current block.
        # Pending state across blocks.
        self.open_rec: tuple[int, int, int] | None = None  # (offset, line, index)
        self.last_end: int | None = None  # end of the previous record in the same array
        self.last_container = -1
        self.containers: list[list[int]] = []  # pages/array: [open, close or -1, records]
        self.doc_open: int | None = None
        self.doc_line = 0
        self.doc_frame: list[tuple[int, int]] = []
        self.frame_from = 0
        self.doc_has_container = False
        self.prev_doc_end = skip
        self.pending: list[tuple[np.ndarray, ...]] = []
        self.pending_n = 0
        self.pending_bytes = 0
        self.consumed = skip
        self.dropped = 0  # pages before this offset were dropped from the mapping

    def forget(self, offset: int) -> None:
        """Drop the mapped pages before ``offset`` from this process (the file stays in the page
        cache; a later read, as an error message's line count, maps them again), so a
        multi-gigabyte file does not count in the process's memory as it is read."""
        end = offset - offset % mmap.PAGESIZE
        if end > self.dropped and hasattr(mmap, "MADV_DONTNEED"):
            with contextlib.suppress(OSError, ValueError):
                self.mm.madvise(mmap.MADV_DONTNEED, self.dropped, end - self.dropped)
            self.dropped = end

    def release(self) -> None:
        self.arr = np.empty(0, np.uint8)

    # ---- helpers -----------------------------------------------------------------------

    def line_at(self, offset: int) -> int:
        """Line of an offset anywhere in the file (slow path, for errors)."""
        n = 1
        for a in range(0, max(offset, 0), BLOCK):
            n += int(np.count_nonzero(self.arr[a : min(a + BLOCK, offset)] == _NL))
        return n

    def fail(self, offset: int, problem: str) -> BadInput:
        return BadInput(f"{self.name}:{self.line_at(offset)}", problem, _NOTHING)

    def gap_ok(self, start: int, end: int, sep: bytes) -> bool:
        return bytes(self.mm[start:end]).strip(_WS) == sep

    # ---- main loop ---------------------------------------------------------------------

    def run(self) -> Iterator[Chunk]:
        scan = _Scan(self.arr, self.skip)
        try:
            while True:
                block = scan.next_block()
                if block is None:
                    break
                start = self.consumed
                self.records_in_block(*block)
                self.consumed = scan.pos
                while self.pending_n >= self.max_records or self.pending_bytes >= self.max_bytes:
                    yield self.emit(self.max_records)
                # Keep the records not yet emitted mapped; drop what lies before them.
                keep = [start]
                if self.pending:
                    keep.append(int(self.pending[0][0][0]))
                if self.open_rec is not None:
                    keep.append(self.open_rec[0])
                self.forget(min(keep))
            if scan.in_str or scan.depth != 0 or self.open_rec is not None:
                raise _Malformed(len(self.arr), "unexpected end of JSON (the file looks truncated)")
            self.finish_top()
        except _Malformed as exc:
            raise self.fail(exc.offset, exc.problem) from None
        while self.pending_n:
            yield self.emit(self.max_records)

    def records_in_block(
        self, pos: np.ndarray, ch: np.ndarray, before: np.ndarray, line: np.ndarray
    ) -> None:
        d = self.depth
        is_open = (ch == _OPEN_OBJ) | (ch == _OPEN_ARR)
        after = before + np.where(is_open, 1, -1)
        # Tokens above record depth frame the records: handle them one by one (few per page).
        frame = (is_open & (before < d)) | (~is_open & (after < d))
        rec_open = (ch == _OPEN_OBJ) & (before == d)
        rec_close = (ch == _CLOSE_OBJ) & (after == d)
        elem_arr = (ch == _OPEN_ARR) & (before == d)
        if elem_arr.any() and self.layout != "pages":
            off = int(pos[int(np.argmax(elem_arr))])
            raise _Malformed(off, "expected a provisioning record (a JSON object), found a list")
        f_idx = np.flatnonzero(frame)
        o_idx = np.flatnonzero(rec_open)
        c_idx = np.flatnonzero(rec_close)
        # Walk frame tokens and record tokens in file order, handing runs of records to numpy.
        cursor_o = cursor_c = 0
        for fi in [*f_idx.tolist(), len(pos)]:
            # Records between the previous frame token and this one.
            o_hi = int(np.searchsorted(o_idx, fi))
            c_hi = int(np.searchsorted(c_idx, fi))
            if o_hi > cursor_o or c_hi > cursor_c:
                sel = o_idx[cursor_o:o_hi]
                self.take_records(pos[sel], pos[c_idx[cursor_c:c_hi]], line[sel])
                cursor_o, cursor_c = o_hi, c_hi
            if fi < len(pos):
                self.frame_token(int(pos[fi]), int(ch[fi]), int(before[fi]), int(line[fi]))

    def in_container(self) -> bool:
        if self.layout == "lines":
            return True
        return bool(self.containers) and self.containers[-1][1] == -1

    def take_records(self, opens: np.ndarray, closes: np.ndarray, lines: np.ndarray) -> None:
        """Pair record opens and closes (in order, none nested), check gaps, queue spans."""
        if not self.in_container():
            # Objects at record depth outside a records array (pages layout): sub-objects of a
            # page member or of a record document, not records.
            return
        starts = opens
        ends = closes + 1
        carried = self.open_rec
        if carried is not None:
            if not len(ends):
                return
            starts = np.concatenate(([carried[0]], starts))
        if len(ends) not in (len(starts), len(starts) - 1):
            raise _Malformed(int(starts[0]) if len(starts) else 0, "unbalanced braces")
        complete = len(ends)
        base = self.containers[-1][2] + 1 if self.layout != "lines" else 0
        if carried is not None:
            lines = np.concatenate(([carried[1]], lines))
        idx = np.arange(base, base + len(starts))
        if complete < len(starts):
            self.open_rec = (int(starts[-1]), int(lines[-1]), int(idx[-1]))
        else:
            self.open_rec = None
        s, e = starts[:complete], ends[:complete]
        if not complete:
            return
        self.check_gaps(s, e)
        self.last_end = int(e[-1])
        if self.layout != "lines":
            self.containers[-1][2] += complete
        if self.layout == "lines":
            idx_out = np.zeros(complete, np.int64)
        else:
            idx_out = idx[:complete].astype(np.int64)
        self.pending.append((s.astype(np.int64), e.astype(np.int64), lines[:complete], idx_out))
        self.pending_n += complete
        self.pending_bytes += int(e[-1] - s[0])

    def check_gaps(self, s: np.ndarray, e: np.ndarray) -> None:
        sep = b"" if self.layout == "lines" else b","
        gs = np.concatenate(([self.last_end if self.last_end is not None else -1], e[:-1]))
        ge = s
        if gs[0] < 0:
            gs, ge = gs[1:], ge[1:]
            first = int(s[0])
            opener = self.prev_doc_end if self.layout == "lines" else self.containers[-1][0] + 1
            if not self.gap_ok(opener, first, b""):
                raise _Malformed(opener, "unexpected text before a record")
        if not len(gs):
            return
        short = (ge - gs) == 1
        if short.any():
            b = self.arr[gs[short]]
            ok = np.isin(b, np.frombuffer(_WS, np.uint8)) if not sep else b == _COMMA
            if not ok.all():
                bad = int(gs[short][int(np.argmin(ok))])
                raise _Malformed(bad, f"expected {'a comma' if sep else 'a new line'} here")
        for a, b2 in zip(gs[~short].tolist(), ge[~short].tolist(), strict=True):
            if not self.gap_ok(a, b2, sep):
                raise _Malformed(a, "unexpected text between records")

    def frame_token(self, off: int, ch: int, before: int, line: int) -> None:
        """A bracket above record depth: documents, pages and their records arrays."""
        if self.layout == "lines":
            return  # cannot happen: record depth is 0
        is_open = ch in (_OPEN_OBJ, _OPEN_ARR)
        if self.layout == "array":
            if before == 0 and ch == _OPEN_ARR:
                if not self.gap_ok(self.prev_doc_end, off, b""):
                    raise _Malformed(self.prev_doc_end, "unexpected text between documents")
                self.containers.append([off, -1, 0])
                self.last_end = None
            elif before == 1 and ch == _CLOSE_ARR:
                self.close_container(off)
                self.prev_doc_end = off + 1
            else:
                raise _Malformed(off, "expected an array of provisioning records")
            return
        # pages
        if before == 0 and is_open:
            if ch != _OPEN_OBJ:
                raise _Malformed(off, "expected a Graph page (a JSON object)")
            if not self.gap_ok(self.prev_doc_end, off, b""):
                raise _Malformed(self.prev_doc_end, "unexpected text between documents")
            self.doc_open = off
            self.doc_line = line
            self.doc_has_container = False
            self.doc_frame = []
            self.frame_from = off
        elif before == 1 and is_open and ch == _OPEN_ARR and self.doc_open is not None:
            head = bytes(self.mm[max(self.doc_open, off - 64) : off])
            if _CONTAINER_KEY.search(head):
                self.doc_frame.append((self.frame_from, off + 1))
                self.containers.append([off, -1, 0])
                self.last_end = None
                self.doc_has_container = True
        elif before == 2 and not is_open and ch == _CLOSE_ARR and self.in_container():
            self.close_container(off)
            self.frame_from = off
        elif before == 1 and not is_open and self.doc_open is not None:
            # End of a top-level document.
            end = off + 1
            if self.doc_has_container:
                self.doc_frame.append((self.frame_from, end))
                framing = b"".join(bytes(self.mm[a:b]) for a, b in self.doc_frame)
                try:
                    orjson.loads(framing)
                except orjson.JSONDecodeError as exc:
                    raise _Malformed(self.doc_open, f"invalid JSON in the page ({exc})") from None
            else:
                # A whole record as a document among pages.
                line = self.doc_line
                self.pending.append(
                    (
                        np.array([self.doc_open], np.int64),
                        np.array([end], np.int64),
                        np.array([line], np.int64),
                        np.zeros(1, np.int64),
                    )
                )
                self.pending_n += 1
                self.pending_bytes += end - self.doc_open
            self.doc_open = None
            self.prev_doc_end = end

    def close_container(self, off: int) -> None:
        c = self.containers[-1]
        c[1] = off
        start = self.last_end if c[2] and self.last_end is not None else c[0] + 1
        if self.open_rec is not None:
            raise _Malformed(self.open_rec[0], "unbalanced braces in a record")
        if not self.gap_ok(start, off, b""):
            raise _Malformed(start, "unexpected text in the records array")
        self.last_end = None

    def finish_top(self) -> None:
        tail_from = self.prev_doc_end if self.layout != "lines" else (self.last_end or self.skip)
        if not self.gap_ok(tail_from, len(self.arr), b""):
            raise _Malformed(tail_from, "unexpected text after the last document")
        if self.layout == "lines":
            return

    # ---- output ------------------------------------------------------------------------

    def emit(self, limit: int) -> Chunk:
        s = np.concatenate([p[0] for p in self.pending])
        e = np.concatenate([p[1] for p in self.pending])
        ln = np.concatenate([p[2] for p in self.pending])
        ix = np.concatenate([p[3] for p in self.pending])
        take = min(limit, len(s))
        rest = (s[take:], e[take:], ln[take:], ix[take:])
        s, e, ln, ix = s[:take], e[:take], ln[:take], ix[:take]
        if len(rest[0]):
            self.pending = [rest]
            self.pending_n = len(rest[0])
            self.pending_bytes = int(rest[1][-1] - rest[0][0])
        else:
            self.pending, self.pending_n, self.pending_bytes = [], 0, 0
        data = _join_lines(self.arr, s, e)
        consumed = self.consumed if not self.pending_n else int(e[-1])
        return Chunk(data, s, e, ln, ix, consumed)


def _join_lines(arr: np.ndarray, s: np.ndarray, e: np.ndarray) -> bytearray:
    """Return the records ``[s, e)`` as JSON Lines (raw line breaks inside a record -> spaces)."""
    lo, hi = int(s[0]), int(e[-1])
    lens = e - s
    if (s[1:] - e[:-1] == 1).all():
        # Records one separator byte apart (compact pages, JSON Lines): one copy.
        data = bytearray(hi - lo)
        out = np.frombuffer(data, np.uint8)
        out[:] = arr[lo:hi]
    else:
        parts = [
            x for a, b in zip(s.tolist(), e.tolist(), strict=True) for x in (arr[a:b], _NL_ARR)
        ]
        data = bytearray(np.concatenate(parts)[:-1].tobytes())
        out = np.frombuffer(data, np.uint8)
    if data.find(b"\n") >= 0 or data.find(b"\r") >= 0:
        out[(out == _NL) | (out == 13)] = 32
    out[np.cumsum(lens + 1)[:-1] - 1] = _NL
    return data


_NL_ARR = np.array([_NL], np.uint8)
