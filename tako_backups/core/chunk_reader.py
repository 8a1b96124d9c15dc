"""A forward-only file-like reader over a stream of chunks, made for reading tar archives.

:mod:`tarfile`'s stream mode (``r|``) re-joins its whole buffer on every read, copying up to a
megabyte per 512-byte header. :class:`ChunkReader` hands out slices of the chunk it holds, gives
:class:`tarfile.TarFile` the ``tell``/``seek`` it needs to skip forward, and copies file bodies
straight from the chunks to a file descriptor. :meth:`ChunkReader.peek` shows the next header
block without consuming it and :meth:`ChunkReader.read_budget` bounds what a header may read, so
an archive cannot make the reader hold more than a set amount in memory.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ..primitives.streams import Piece

__all__ = ["ChunkReader"]

READ_SIZE = 1 << 20


class ChunkReader:
    """Reads the chunks that ``next_chunk()`` returns (``b""`` or None at the end) as one stream.

    Seeking goes forward (reading and dropping) or back within the current chunk; further back
    raises :class:`tarfile.StreamError`, as tarfile's own stream does.
    """

    def __init__(self, next_chunk: Callable[[], Piece | None]) -> None:
        self._next_chunk = next_chunk
        self._chunk = memoryview(b"")
        self._start = 0  # stream offset of self._chunk[0]
        self._off = 0  # read position inside self._chunk
        self._eof = False
        self._budget: int | None = None  # bytes read() may still return, when bounded
        self._over_budget: Callable[[], BaseException] | None = None

    @classmethod
    def over(cls, source: Any, read_size: int = READ_SIZE) -> ChunkReader:
        """A ChunkReader over any object with ``read(n)``."""
        return cls(lambda: source.read(read_size))

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._start + self._off

    def _advance(self) -> bool:
        """Load the next chunk; False at the end of the stream."""
        if self._eof:
            return False
        data = self._next_chunk()
        if not data:
            self._eof = True
            return False
        self._start += len(self._chunk)
        self._chunk, self._off = memoryview(data), 0
        return True

    def peek(self, size: int) -> bytes:
        """The next ``size`` bytes (fewer at the end) without consuming them.

        When they span chunks, the rest of the current chunk and the next ones are joined into
        one (so peek at most a chunk's worth).
        """
        if self._off + size > len(self._chunk) and not self._eof:
            here = self.tell()
            parts = [self._chunk[self._off:]]
            have = len(parts[0])
            while have < size:
                data = self._next_chunk()
                if not data:
                    self._eof = True
                    break
                parts.append(memoryview(data))
                have += len(data)
            self._chunk, self._start, self._off = memoryview(b"".join(parts)), here, 0
        return bytes(self._chunk[self._off:self._off + size])

    @contextmanager
    def read_budget(self, limit: int, refuse: Callable[[], BaseException]) -> Iterator[None]:
        """Within the block, :meth:`read` returns at most ``limit`` bytes in all; a read that
        would go over raises ``refuse()`` before reading anything. A nested block keeps the
        outer budget. Skipping, seeking and :meth:`copy_to` are not counted (they hold nothing).
        """
        if self._budget is not None:
            yield
            return
        self._budget, self._over_budget = limit, refuse
        try:
            yield
        finally:
            self._budget = self._over_budget = None

    def extend_budget(self, more: int) -> None:
        """Let the current :meth:`read_budget` block read ``more`` bytes (nothing outside one)."""
        if self._budget is not None:
            self._budget += more

    @property
    def budget_left(self) -> int | None:
        """What :meth:`read` may still return inside :meth:`read_budget`; None outside it."""
        return self._budget

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes (all that is left when negative); fewer only at the end.

        Inside :meth:`read_budget`, raises its error for a read that would go over it.
        """
        if self._budget is not None:
            if size is None or size < 0 or size > self._budget:
                assert self._over_budget is not None
                raise self._over_budget()
            self._budget -= size
        parts: list[bytes | memoryview]
        if size is None or size < 0:
            parts = [self._chunk[self._off:]]
            self._off = len(self._chunk)
            while self._advance():
                parts.append(self._chunk)
                self._off = len(self._chunk)
            return b"".join(parts)
        if self._off + size <= len(self._chunk):
            data = bytes(self._chunk[self._off:self._off + size])
            self._off += size
            return data
        parts = []
        want = size
        while want:
            if self._off == len(self._chunk) and not self._advance():
                break
            n = min(want, len(self._chunk) - self._off)
            parts.append(self._chunk[self._off:self._off + n])
            self._off += n
            want -= n
        return b"".join(parts)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Move to ``offset`` (``SEEK_SET`` or ``SEEK_CUR``). Raises tarfile.StreamError when the
        target is behind the current chunk, ValueError for ``SEEK_END``."""
        if whence == os.SEEK_CUR:
            offset += self.tell()
        elif whence != os.SEEK_SET:
            raise ValueError("ChunkReader cannot seek from the end")
        here = self.tell()
        if offset < here:
            if offset < self._start:
                raise tarfile.StreamError("seeking backwards is not allowed")
            self._off = offset - self._start
            return offset
        self.skip(offset - here)
        return self.tell()

    def skip(self, count: int) -> int:
        """Drop ``count`` bytes; returns how many were there to drop."""
        left = count
        while left:
            if self._off == len(self._chunk) and not self._advance():
                break
            n = min(left, len(self._chunk) - self._off)
            self._off += n
            left -= n
        return count - left

    def copy_to(self, fd: int, count: int, advance: Callable[[int], None] | None = None) -> int:
        """Write the next ``count`` bytes to ``fd``; returns how many there were (fewer at the end).

        Raises OSError from writing.
        """
        left = count
        while left:
            if self._off == len(self._chunk) and not self._advance():
                break
            n = min(left, len(self._chunk) - self._off)
            view = self._chunk[self._off:self._off + n]
            while view:
                written = os.write(fd, view)
                view = view[written:]
            self._off += n
            left -= n
            if advance is not None:
                advance(n)
        return count - left

    def close(self) -> None:
        pass
