"""Write a data root as a PAX tar stream compressed as one zstd frame.

The tar goes straight into a caller's sink (the encryptor): nothing is staged on disk except the
SQLite snapshots, one at a time. Headers are the bytes :meth:`tarfile.TarInfo.tobuf` writes
(built faster by :func:`.tar_pax.pax_header` for plain members), but file bodies are read with
``readv`` into one reusable buffer that feeds zstd in large blocks (tarfile's stream mode
re-copies every block through small buffers, which made it the bottleneck). zstd compresses on
its own worker threads.

Each SQLite snapshot (a page copy with the online backup API) runs on a helper thread while the
files after it are archived; the database enters the tar when its snapshot is ready, so its
member may come later than its directory order. Extraction does not depend on member order.
"""

from __future__ import annotations

import os
import stat
import tarfile
import tempfile
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import zstandard

from ..primitives.streams import Sink
from ..progress import ARCHIVE_UPLOAD, NO_PROGRESS, SNAPSHOT, Progress, enter_phase
from .snapshot import Entry, PinnedDatabase, SourceChanged, pin_sqlite, walk
from .tar_pax import pax_header

ZSTD_LEVEL = 3
ZSTD_JOB_SIZE = 1 << 20
ZSTD_THREADS = -1  # one worker per core
ZSTD_IN_CALLER = 0  # no worker: compress on the archiving thread (one core, 12 MB less)
COPY_BUFFER = 1 << 20
BLOCK = 512
RECORD = 20 * BLOCK
_ZEROS = bytes(COPY_BUFFER)

MemberMarks = Callable[[tarfile.TarInfo, int], None]
"""Told each member's TarInfo and the tar offset its first header block starts at (format 2)."""


@dataclass
class ArchiveStats:
    files: int = 0
    sqlite_files: int = 0
    bytes: int = 0
    sqlite_names: list[str] = field(default_factory=list)


def compressor(level: int = ZSTD_LEVEL, workers: int = ZSTD_THREADS) -> zstandard.ZstdCompressor:
    """zstd at ``level`` with ``workers`` threads (default: one per core; :data:`ZSTD_IN_CALLER`:
    none), still one frame.

    Jobs of 1 MiB (instead of zstd's 8 MiB at level 3) keep the workers' buffers near 20 MiB
    instead of 80 MiB, for about 0.1 % more output and no loss of speed. (One worker saved
    another 7 MiB but made a 1 GB backup about 15 % slower on 2 cores: bench/, issue 14.)
    """
    params = zstandard.ZstdCompressionParameters.from_level(level, threads=workers,
                                                            job_size=ZSTD_JOB_SIZE)
    return zstandard.ZstdCompressor(compression_params=params)


def write_archive(
    data_root: Path, sink: Sink, scratch: Path, progress: Progress = NO_PROGRESS, *,
    members: MemberMarks | None = None, zstd_workers: int = ZSTD_THREADS,
) -> ArchiveStats:
    """Stream ``data_root``'s ``app/`` and ``tako/`` into ``sink`` as tar (PAX) + zstd.

    ``scratch`` is an existing private directory for SQLite snapshots; each snapshot is deleted
    as soon as it has been archived. ``sink.write`` is called from this thread with compressed
    chunks of 1 MiB (:class:`CompressedChunks`). Nothing is read through a symlink (see
    :mod:`.snapshot`): a file or database swapped for one while the archive is written is left
    out. Raises SnapshotError when a database cannot be copied, and whatever ``sink.write`` or
    reading a file raises (OSError).

    With ``members`` (format 2: :meth:`.seal_v2.ChunkedSealer.tar_member`), the tar stream goes
    to ``sink`` uncompressed (the sealer compresses chunk by chunk) and ``members`` is told where
    each member starts, before its bytes are written. ``zstd_workers`` is :func:`compressor`'s
    ``workers`` (format 1 only).
    """
    stats = ArchiveStats()
    zw = None if members is not None else CompressedChunks(sink, workers=zstd_workers)
    tar = TarWriter(sink if zw is None else zw, members=members)
    snapshots = _SnapshotAhead(scratch, os.path.realpath(data_root))
    try:
        seen_top = set()
        for entry in walk(data_root):
            if "/" not in entry.arcname:
                seen_top.add(entry.arcname)
            if entry.kind == "sqlite":
                if snapshots.pending:
                    _add_snapshot(tar, snapshots.finish(progress), stats, progress)
                snapshots.start(entry)
            else:
                _add(tar, entry, stats, progress)
            if snapshots.ready:
                _add_snapshot(tar, snapshots.finish(progress), stats, progress)
        if snapshots.pending:
            _add_snapshot(tar, snapshots.finish(progress), stats, progress)
        for top in ("app", "tako"):
            if top not in seen_top:
                info = tarfile.TarInfo(top)
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.add_header(info)
        tar.close()
    finally:
        snapshots.close()
    if zw is not None:
        zw.close()
    return stats


class CompressedChunks:
    """A sink that zstd-compresses what it is given (one frame) and hands ``sink`` the output in
    chunks of exactly ``chunk_size`` bytes (the last one shorter).

    zstd's stream writer passes on whatever each input block yields (about 120 KiB for 1 MiB of
    input), so the threads behind it handled eight small chunks per MiB; whole chunks halve the
    hand-offs and keep a bounded queue of N chunks at N MiB.
    """

    def __init__(self, sink: Sink, chunk_size: int = COPY_BUFFER, workers: int = ZSTD_THREADS) -> None:
        self._sink = sink
        self._chunker = compressor(workers=workers).chunker(chunk_size=chunk_size)

    def write(self, data: bytes | memoryview) -> int:
        for chunk in self._chunker.compress(data):
            self._sink.write(chunk)
        return len(data)

    def close(self) -> None:
        """End the frame and hand over the rest."""
        for chunk in self._chunker.finish():
            self._sink.write(chunk)


class TarWriter:
    """Writes tar members to ``out`` through one reusable buffer, flushed in 1 MiB blocks.

    The stream ends like tarfile's: two zero blocks, then zeros up to a 10240-byte record.
    """

    def __init__(self, out: Sink, buffer_size: int = COPY_BUFFER, *,
                 members: MemberMarks | None = None) -> None:
        self._out = out
        self._members = members
        self._buf = bytearray(buffer_size)
        self._view = memoryview(self._buf)
        self._fill = 0
        self.offset = 0

    def add_header(self, info: tarfile.TarInfo) -> None:
        """Write ``info``'s PAX header (extended records included when needed)."""
        if self._members is not None:
            self._members(info, self.offset)
        self._put(pax_header(info))

    def add_body(self, fd: int, size: int, progress: Progress = NO_PROGRESS) -> None:
        """Copy exactly ``size`` bytes from ``fd``, zero-filling a file that shrank, then pad."""
        left = size
        while left:
            if self._fill == len(self._buf):
                self._flush()
            room = min(left, len(self._buf) - self._fill)
            got = os.readv(fd, [self._view[self._fill:self._fill + room]])
            if got == 0:
                self._zeros(left)
                progress.advance(left)
                break
            self._fill += got
            self.offset += got
            left -= got
            progress.advance(got)
        self._zeros(-size % BLOCK)

    def close(self) -> None:
        """End-of-archive blocks and record padding, then hand over what is buffered."""
        self._zeros(2 * BLOCK)
        self._zeros(-self.offset % RECORD)
        self._flush()

    def _put(self, data: bytes) -> None:
        view, pos = memoryview(data), 0
        while pos < len(view):
            if self._fill == len(self._buf):
                self._flush()
            n = min(len(view) - pos, len(self._buf) - self._fill)
            self._view[self._fill:self._fill + n] = view[pos:pos + n]
            self._fill += n
            pos += n
        self.offset += len(view)

    def _zeros(self, count: int) -> None:
        while count > 0:
            n = min(count, len(_ZEROS))
            self._put(_ZEROS[:n] if n < len(_ZEROS) else _ZEROS)
            count -= n

    def _flush(self) -> None:
        if self._fill:
            self._out.write(self._view[:self._fill])
            self._fill = 0


class _SnapshotAhead:
    """At most one SQLite copy at a time, run on a helper thread (sqlite3 releases the GIL).

    :meth:`start` pins the database's snapshot on the calling (walking) thread before it
    returns, so whatever the walk lists afterwards is at least as new as the snapshot; only the
    copy runs ahead. ``real_root`` is the data root with its symlinks resolved: each database
    must really be at ``real_root/<arcname>`` when SQLite opens it (see :func:`pin_sqlite`).
    """

    def __init__(self, scratch: Path, real_root: str) -> None:
        self._scratch = scratch
        self._real_root = real_root
        self._pool: ThreadPoolExecutor | None = None
        self._job: tuple[Entry, Path, PinnedDatabase, Future[None]] | None = None

    @property
    def pending(self) -> bool:
        return self._job is not None

    @property
    def ready(self) -> bool:
        return self._job is not None and self._job[3].done()

    def start(self, entry: Entry) -> None:
        """Pin ``entry``'s database and start copying it. A database swapped for a symlink is
        left out (nothing starts). Raises SnapshotError when it cannot be opened."""
        assert self._job is None
        real_path = os.path.join(self._real_root, *entry.arcname.split("/"))
        try:
            pinned = pin_sqlite(entry.path, real_path)
        except SourceChanged:
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="tako-snapshot")
        fd, tmp = tempfile.mkstemp(dir=self._scratch, suffix=".sqlite")
        os.close(fd)
        os.unlink(tmp)
        self._job = (entry, Path(tmp), pinned, self._pool.submit(pinned.copy_to, Path(tmp)))

    def finish(self, progress: Progress = NO_PROGRESS) -> tuple[Entry, Path]:
        """Wait for the copy; the caller archives and deletes it. While the archive waits for
        it, ``progress`` is in the snapshot phase (total: the database's size; the copy reports
        no bytes). Raises SnapshotError."""
        assert self._job is not None
        entry, path, pinned, future = self._job
        self._job = None
        waited = not future.done()
        if waited:
            enter_phase(progress, SNAPSHOT, entry.st.st_size)
        try:
            future.result()
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        finally:
            pinned.close()
            if waited:
                enter_phase(progress, ARCHIVE_UPLOAD)
        return entry, path

    def close(self) -> None:
        """Wait for a copy still running and delete it (after a failure elsewhere)."""
        if self._job is not None:
            _entry, path, pinned, future = self._job
            self._job = None
            future.exception()
            pinned.close()
            path.unlink(missing_ok=True)
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def _tarinfo(entry: Entry, size: int = 0) -> tarfile.TarInfo:
    st = entry.st
    info = tarfile.TarInfo(entry.arcname)
    info.mode = stat.S_IMODE(st.st_mode)
    info.mtime = st.st_mtime
    info.uid, info.gid = st.st_uid, st.st_gid
    info.size = size
    return info


def _add(tar: TarWriter, entry: Entry, stats: ArchiveStats, progress: Progress) -> None:
    if entry.kind == "dir":
        info = _tarinfo(entry)
        info.type = tarfile.DIRTYPE
        tar.add_header(info)
    elif entry.kind == "symlink":
        target = entry.read_link()
        if target is None:
            return
        info = _tarinfo(entry)
        info.type = tarfile.SYMTYPE
        info.linkname = target
        tar.add_header(info)
    else:
        _add_file(tar, entry, entry.open_file(), stats, progress)


def _add_snapshot(tar: TarWriter, done: tuple[Entry, Path] | None, stats: ArchiveStats,
                  progress: Progress) -> None:
    if done is None:
        return
    entry, snapshot = done
    try:
        fd = os.open(snapshot, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        if _add_file(tar, entry, fd, stats, progress):
            stats.sqlite_files += 1
            stats.sqlite_names.append(entry.arcname)
    finally:
        snapshot.unlink(missing_ok=True)


def _add_file(tar: TarWriter, entry: Entry, fd: int | None, stats: ArchiveStats,
              progress: Progress) -> bool:
    """Archive the open file ``fd`` (closed afterwards) under ``entry``'s name; False when
    there is none (the file was gone or no longer a regular file)."""
    if fd is None:
        return False
    try:
        size = os.fstat(fd).st_size
        tar.add_header(_tarinfo(entry, size))
        tar.add_body(fd, size, progress)
    finally:
        os.close(fd)
    stats.files += 1
    stats.bytes += size
    return True
