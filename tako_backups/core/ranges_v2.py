"""Random access to a format-2 object: the footer's member table, then only the chunks needed.

:class:`ChunkedRangeReader` is built on a ``read_range(offset, length) -> bytes`` callable (a
ranged GET). It loads the trailer and the footer with one or two reads, lists the members, and
reads, verifies and decompresses only the chunks asked for, counting the bytes it fetched. Every
failure is an IntegrityError naming the archive and the chunk or part at fault.
"""

from __future__ import annotations

import threading
from array import array
from collections.abc import Callable, Iterator

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

    Build it with :meth:`open`. ``bytes_fetched`` and ``requests`` count every ranged read;
    :meth:`read_chunk` may be called from several threads at once.
    """

    footer: Footer
    _opener: ChunkOpener
    _offsets: array[int]

    def __init__(self, read_range: ReadRange, name: str) -> None:
        self._read_range = read_range
        self.name = name
        self._lock = threading.Lock()
        self.bytes_fetched = 0
        self.requests = 0

    @classmethod
    def open(cls, read_range: ReadRange, size: int, key: BackupKey, *,
             expect: Expected | None = None, name: str = "Archive",
             footer_at: tuple[int, int] | None = None) -> ChunkedRangeReader:
        """Read the trailer and the footer of a ``size``-byte object and check them: one ranged
        read when the footer is in the last 64 KiB or ``footer_at`` = (offset, length) comes
        from the manifest, else two.

        Raises IntegrityError when they are damaged, swapped, sealed under another key or do
        not match ``expect``; whatever ``read_range`` raises (StorageError).
        """
        reader = cls(read_range, name)
        reader._load(size, key, expect or Expected(), footer_at)
        return reader

    def _load(self, size: int, key: BackupKey, expect: Expected,
              footer_at: tuple[int, int] | None) -> None:
        name = self.name
        if expect.size is not None and expect.size != size:
            raise IntegrityError(CHECKSUM_MISMATCH)
        start = footer_at[0] if footer_at else max(0, size - TAIL_READ)
        if not 0 <= start <= size - TRAILER_SIZE:
            raise IntegrityError(f"{name} is too short to be a format-2 archive.")
        tail = self._fetch(start, size - start)
        trailer = Trailer.decode(tail[-TRAILER_SIZE:], size, name)
        if footer_at and footer_at != (trailer.footer_offset, trailer.footer_length):
            raise IntegrityError(f"{name} trailer does not match its manifest (footer position).")
        if trailer.footer_offset >= start:
            at = trailer.footer_offset - start
            sealed = tail[at:at + trailer.footer_length]
        else:
            sealed = self._fetch(trailer.footer_offset, trailer.footer_length)
        self._opener = ChunkOpener(trailer.header, key, expect, name)
        self.footer = self._opener.open_footer(sealed, trailer.chunk_count, trailer.footer_offset)
        self._offsets = array("Q")
        at = HEADER_SIZE
        for length in self.footer.sealed_lengths:
            self._offsets.append(at)
            at += PREFIX_SIZE + length
        if at != trailer.footer_offset:
            raise IntegrityError(f"{name} footer's chunk table does not end where the footer starts.")

    def _fetch(self, offset: int, length: int) -> bytes:
        """``read_range`` that counts, and refuses a short answer (a truncated object)."""
        data = bytes(self._read_range(offset, length))
        with self._lock:
            self.requests += 1
            self.bytes_fetched += len(data)
        if len(data) != length:
            raise IntegrityError(f"{self.name} is shorter than its trailer and footer say: it is "
                                 "truncated.")
        return data

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
        """The verified tar bytes of chunk ``index`` (one ranged read).

        Raises IntegrityError, IndexError for a chunk that does not exist, and whatever
        ``read_range`` raises.
        """
        if not 0 <= index < self.chunk_count:
            raise IndexError(f"chunk {index} is outside 0..{self.chunk_count - 1}")
        length = self.footer.sealed_lengths[index]
        record = self._fetch(self._offsets[index], PREFIX_SIZE + length)
        last = index == self.chunk_count - 1
        if decode_prefix(record[:PREFIX_SIZE]) != (length, last):
            raise IntegrityError(f"{self.name} chunk {index} is framed differently from what "
                                 "its footer says: the archive is damaged.")
        return self._opener.open_chunk(index, last, record[PREFIX_SIZE:], self.footer.plain_length(index))

    def stream_from(self, offset: int) -> ChunkReader:
        """The tar stream from tar offset ``offset`` on, fetching chunks only as they are read.

        Give it a member's ``offset`` and read that member with
        ``tarfile.TarFile(fileobj=..., mode="r").next()``: it seeks only forward. Raises
        IndexError for an offset outside the tar stream; reading raises IntegrityError.
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

