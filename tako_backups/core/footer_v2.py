"""The format-2 footer's plaintext: JSON lines (members, chunks, totals) in one zstd frame.

Lines, each a compact JSON array ending in ``\\n`` (docs/FORMAT-V2.md, "Footer"):

- ``["m", name, type, size, mtime, offset]`` per tar member, in tar order;
- ``["c", sealed_length]`` per chunk, in chunk order;
- ``["end", chunk_count, plain_size, member_count]`` once, last.

The writer compresses member lines as they arrive, so its memory grows with the compressed
table (a few tens of bytes per member), never with the data. Readers parse only a footer whose
AES-GCM tag verified, but still check its shape: a malformed footer is refused.
"""

from __future__ import annotations

import io
import json
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import zstandard

from ..errors import IntegrityError
from .format_v2 import TAG_BYTES, chunk_count_for, max_sealed_length

FOOTER_ZSTD_LEVEL = 3
FLUSH_AT = 256 << 10
_dumps = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), allow_nan=False).encode


@dataclass(frozen=True)
class Member:
    """One tar member as the footer lists it; ``end`` is where the next member starts.

    ``offset`` is the tar-stream offset of the member's first header block (a PAX extended
    header when it has one). The member's bytes are ``offset`` up to ``end``: for the last
    member, ``end`` is the end of the tar stream (its end-of-archive blocks included).
    """

    name: str
    kind: str
    size: int
    mtime: float
    offset: int
    end: int

    def chunks(self, chunk_size: int) -> range:
        """The chunk numbers that hold this member's header and body."""
        return range(self.offset // chunk_size, (self.end - 1) // chunk_size + 1)


class FooterWriter:
    """Collects member lines (compressed as they come) and ends with chunk lines and totals."""

    def __init__(self) -> None:
        self._z = zstandard.ZstdCompressor(level=FOOTER_ZSTD_LEVEL).compressobj()
        self._out: list[bytes] = []
        self._lines: list[str] = []
        self._pending = 0
        self._last_offset = -1
        self.members = 0

    def member(self, name: str, kind: str, size: int, mtime: float, offset: int) -> None:
        """Add a member whose first header block starts at tar offset ``offset``.

        Raises ValueError when offsets do not strictly increase or a field is impossible.
        """
        if offset <= self._last_offset or size < 0 or len(kind) != 1 or not name:
            raise ValueError(f"Member '{name}' at offset {offset} cannot follow offset "
                             f"{self._last_offset} (offsets must increase; size >= 0; one-letter type).")
        self._last_offset = offset
        self.members += 1
        self._line(["m", name, kind, size, mtime, offset])

    def finish(self, sealed_lengths: array[int], plain_size: int) -> list[bytes]:
        """Chunk lines and the end line; returns the compressed footer plaintext in pieces.

        Raises ValueError when a member starts at or after ``plain_size``.
        """
        if self._last_offset >= plain_size:
            raise ValueError(f"A member starts at offset {self._last_offset}, past the tar stream's "
                             f"{plain_size} bytes.")
        for length in sealed_lengths:
            self._line(["c", length])
        self._line(["end", len(sealed_lengths), plain_size, self.members])
        self._flush()
        self._out.append(self._z.flush())
        return self._out

    def _line(self, record: list[Any]) -> None:
        line = _dumps(record) + "\n"
        self._lines.append(line)
        self._pending += len(line)
        if self._pending >= FLUSH_AT:
            self._flush()

    def _flush(self) -> None:
        data = "".join(self._lines).encode("ascii")
        self._lines, self._pending = [], 0
        if out := self._z.compress(data):
            self._out.append(out)


@dataclass(frozen=True)
class Footer:
    """A parsed footer: each chunk's sealed length, the tar stream's size, and the members."""

    chunk_size: int
    sealed_lengths: array[int]
    plain_size: int
    member_count: int
    compressed: bytes

    def members(self) -> Iterator[Member]:
        """Every member in tar order (decoded again from the footer at each call)."""
        previous: list[Any] | None = None
        for record in _records(self.compressed):
            if record[0] != "m":
                continue
            if previous is not None:
                yield _member(previous, record[5])
            previous = record
        if previous is not None:
            yield _member(previous, self.plain_size)

    def plain_length(self, index: int) -> int:
        """How many tar bytes chunk ``index`` holds."""
        return min(self.chunk_size, self.plain_size - index * self.chunk_size)


def parse_footer(compressed: bytes, chunk_count: int, chunk_size: int, what: str) -> Footer:
    """Check the shape of an authenticated footer and read its chunk table and totals.

    Raises IntegrityError (naming ``what``) when it is not a well-formed footer for
    ``chunk_count`` chunks of ``chunk_size``.
    """
    def bad(detail: str) -> IntegrityError:
        return IntegrityError(f"{what} footer is malformed: {detail}.")

    lengths: array[int] = array("Q")
    end: list[Any] | None = None
    members, last_offset = 0, -1
    ceiling = max_sealed_length(chunk_size)
    try:
        for record in _records(compressed):
            if end is not None:
                raise bad("a line follows the end line")
            tag = record[0]
            if tag == "m":
                if lengths or not _member_ok(record) or record[5] <= last_offset:
                    raise bad(f"member line {members + 1} is out of place or has wrong fields")
                members, last_offset = members + 1, record[5]
            elif tag == "c":
                if len(record) < 2 or not _int(record[1]) or not TAG_BYTES < record[1] <= ceiling:
                    raise bad(f"chunk line {len(lengths) + 1} has a wrong sealed length")
                lengths.append(record[1])
            elif tag == "end":
                end = record
    except (ValueError, zstandard.ZstdError):  # bad JSON, bad UTF-8, bad zstd
        raise bad("it is not JSON lines in one zstd frame") from None
    if end is None or len(end) < 4 or not all(_int(v) for v in end[1:4]):
        raise bad("the end line is missing or wrong")
    plain_size = end[2]
    if (end[1] != chunk_count or len(lengths) != chunk_count or end[3] != members
            or chunk_count_for(plain_size, chunk_size) != chunk_count or last_offset >= plain_size):
        raise bad("its counts do not match the chunks, the members or the trailer")
    return Footer(chunk_size, lengths, plain_size, members, compressed)


def _records(compressed: bytes) -> Iterator[list[Any]]:
    reader = zstandard.ZstdDecompressor().stream_reader(compressed)
    for line in io.BufferedReader(reader, 1 << 16):  # type: ignore[arg-type]
        record = json.loads(line)
        if not isinstance(record, list) or not record or not isinstance(record[0], str):
            raise ValueError("not a tagged line")
        yield record


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _member_ok(record: list[Any]) -> bool:
    return (len(record) >= 6 and isinstance(record[1], str) and bool(record[1])
            and isinstance(record[2], str) and len(record[2]) == 1 and _int(record[3])
            and isinstance(record[4], int | float) and not isinstance(record[4], bool)
            and _int(record[5]))


def _member(record: list[Any], end: int) -> Member:
    return Member(name=record[1], kind=record[2], size=record[3], mtime=record[4],
                  offset=record[5], end=end)
