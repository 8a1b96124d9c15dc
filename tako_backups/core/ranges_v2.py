"""Random access to a format-2 object: the footer's member table, then only the chunks needed.

:class:`ChunkedRangeReader` is built on a ``read_range(offset, length) -> bytes`` callable (a
ranged GET). It loads the trailer and the footer with one or two reads, lists the members, and
reads, verifies and decompresses only the chunks asked for, counting the bytes it fetched. Every
failure is an IntegrityError naming the archive and the chunk or part at fault.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterator
from typing import Any

from ..errors import IntegrityError
from ..models import BackupKey
from .chunk_reader import ChunkReader
from .crypto import CHECKSUM_MISMATCH
from .footer_v2 import Footer, Member
from .format_v2 import HEADER_SIZE, PREFIX_SIZE, TRAILER_SIZE, Expected, Trailer, decode_prefix
from .unseal_v2 import ChunkOpener

__all__ = ["ChunkedRangeReader"]

TAIL_READ = 64 << 10
ReadRange = Callable[[int, int], bytes]


class ChunkedRangeReader:
    """Random access to a format-2 object through ``read_range(offset, length) -> bytes``.

    Build it with :meth:`open`. ``bytes_fetched`` and ``requests`` count what was read.
    """

    def __init__(self, read_range: ReadRange, size: int, opener: ChunkOpener, footer: Footer,
                 offsets: array[int], fetched: int, requests: int) -> None:
        self._read_range = read_range
        self._size = size
        self._opener = opener
        self.footer = footer
        self._offsets = offsets
        self.bytes_fetched = fetched
        self.requests = requests

    @classmethod
    def open(cls, read_range: ReadRange, size: int, key: BackupKey, *,
             expect: Expected | None = None, name: str = "Archive",
             footer_at: tuple[int, int] | None = None) -> ChunkedRangeReader:
        """Read the trailer and the footer (one ranged read when the footer is in the last
        64 KiB or ``footer_at`` = (offset, length) from the manifest, else two) and check them.

        Raises IntegrityError when they are damaged, swapped, sealed under another key or do
        not match ``expect``; StorageError from ``read_range``.
        """
        expect = expect or Expected()
        if expect.size is not None and expect.size != size:
            raise IntegrityError(CHECKSUM_MISMATCH)
        counter = _Counter(read_range, name)
        start = footer_at[0] if footer_at else max(0, size - TAIL_READ)
        if not 0 <= start <= size - TRAILER_SIZE:
            raise IntegrityError(f"{name} is too short to be a format-2 archive.")
        tail = counter.fetch(start, size - start)
        trailer = Trailer.decode(tail[-TRAILER_SIZE:], size, name)
        if footer_at and footer_at != (trailer.footer_offset, trailer.footer_length):
            raise IntegrityError(f"{name} trailer does not match its manifest (footer position).")
        if trailer.footer_offset >= start:
            at = trailer.footer_offset - start
            sealed = tail[at:at + trailer.footer_length]
        else:
            sealed = counter.fetch(trailer.footer_offset, trailer.footer_length)
        opener = ChunkOpener(trailer.header, key, expect, name)
        footer = opener.open_footer(sealed, trailer.chunk_count, trailer.footer_offset)
        offsets: array[int] = array("Q")
        at = HEADER_SIZE
        for length in footer.sealed_lengths:
            offsets.append(at)
            at += PREFIX_SIZE + length
        if at != trailer.footer_offset:
            raise IntegrityError(f"{name} footer's chunk table does not end where the footer starts.")
        return cls(read_range, size, opener, footer, offsets, counter.bytes, counter.requests)

    @property
    def chunk_size(self) -> int:
        return self.footer.chunk_size

    @property
    def chunk_count(self) -> int:
        return len(self._offsets)

    def members(self) -> Iterator[Member]:
        """Every member in tar order, from the footer (no further reads)."""
        return self.footer.members()

    def read_chunk(self, index: int) -> bytes:
        """The verified tar bytes of chunk ``index`` (one ranged read). Raises IntegrityError."""
        if not 0 <= index < self.chunk_count:
            raise IndexError(f"chunk {index} is outside 0..{self.chunk_count - 1}")
        length = self.footer.sealed_lengths[index]
        counter = _Counter(self._read_range, self._opener.name)
        record = counter.fetch(self._offsets[index], PREFIX_SIZE + length)
        self.bytes_fetched += counter.bytes
        self.requests += counter.requests
        last = index == self.chunk_count - 1
        if decode_prefix(record[:PREFIX_SIZE]) != (length, last):
            raise IntegrityError(f"{self._opener.name} chunk {index} is framed differently from what "
                                 "its footer says: the archive is damaged.")
        return self._opener.open_chunk(index, last, record[PREFIX_SIZE:], self.footer.plain_length(index))

    def stream_from(self, offset: int) -> ChunkReader:
        """The tar stream from tar offset ``offset`` on, fetching chunks only as they are read.

        Give it a member's ``offset`` and read that member with :mod:`tarfile` (``r|``).
        """
        if not 0 <= offset <= self.footer.plain_size:
            raise IndexError(f"offset {offset} is outside the tar stream")
        index, skip = divmod(offset, self.chunk_size)
        chunks = iter(range(index, self.chunk_count))

        def next_chunk() -> bytes | None:
            nonlocal skip
            i = next(chunks, None)
            if i is None:
                return None
            data = self.read_chunk(i)
            if skip:
                data, skip = data[skip:], 0
            return data

        return ChunkReader(next_chunk)


class _Counter:
    """Calls ``read_range`` and refuses short answers; counts bytes and requests."""

    def __init__(self, read_range: ReadRange, name: str) -> None:
        self._read_range = read_range
        self._name = name
        self.bytes = 0
        self.requests = 0

    def fetch(self, offset: int, length: int) -> bytes:
        data: Any = self._read_range(offset, length)
        self.requests += 1
        self.bytes += len(data)
        if len(data) != length:
            raise IntegrityError(f"{self._name} is shorter than its trailer and footer say: it is "
                                 "truncated.")
        return bytes(data)

