"""Write a data root as a PAX tar stream compressed as one zstd frame.

The tar goes straight into a caller's sink (the encryptor): nothing is staged on disk except one
SQLite snapshot at a time.
"""

from __future__ import annotations

import os
import stat
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

import zstandard

from ..progress import NO_PROGRESS, Progress
from .snapshot import Entry, snapshot_sqlite, walk

ZSTD_LEVEL = 3
COPY_BUFFER = 1 << 20


class Sink(Protocol):
    def write(self, data: bytes | memoryview) -> int: ...


@dataclass
class ArchiveStats:
    files: int = 0
    sqlite_files: int = 0
    bytes: int = 0


def compressor(level: int = ZSTD_LEVEL) -> zstandard.ZstdCompressor:
    """zstd at ``level`` with worker threads on every core (one frame)."""
    return zstandard.ZstdCompressor(level=level, threads=-1)


def write_archive(
    data_root: Path, sink: Sink, scratch: Path, progress: Progress = NO_PROGRESS
) -> ArchiveStats:
    """Stream ``data_root``'s ``app/`` and ``tako/`` into ``sink`` as tar (PAX) + zstd.

    ``scratch`` is an existing private directory for SQLite snapshots; each snapshot is deleted
    as soon as it has been archived. Raises SnapshotError when a database cannot be copied.
    """
    stats = ArchiveStats()
    zw = compressor().stream_writer(sink, closefd=False, write_size=COPY_BUFFER)
    with tarfile.open(fileobj=zw, mode="w|", format=tarfile.PAX_FORMAT, bufsize=COPY_BUFFER,
                      copybufsize=COPY_BUFFER) as tar:
        seen_top = set()
        for entry in walk(data_root):
            if "/" not in entry.arcname:
                seen_top.add(entry.arcname)
            _add(tar, entry, scratch, stats, progress)
        for top in ("app", "tako"):
            if top not in seen_top:
                info = tarfile.TarInfo(top)
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
    zw.close()
    return stats


def _tarinfo(entry: Entry, size: int = 0) -> tarfile.TarInfo:
    st = entry.st
    info = tarfile.TarInfo(entry.arcname)
    info.mode = stat.S_IMODE(st.st_mode)
    info.mtime = st.st_mtime
    info.uid, info.gid = st.st_uid, st.st_gid
    info.size = size
    return info


def _add(tar: tarfile.TarFile, entry: Entry, scratch: Path, stats: ArchiveStats,
         progress: Progress) -> None:
    if entry.kind == "dir":
        info = _tarinfo(entry)
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    elif entry.kind == "symlink":
        info = _tarinfo(entry)
        info.type = tarfile.SYMTYPE
        try:
            info.linkname = os.readlink(entry.path)
        except FileNotFoundError:
            return
        tar.addfile(info)
    elif entry.kind == "sqlite":
        fd, tmp = tempfile.mkstemp(dir=scratch, suffix=".sqlite")
        os.close(fd)
        os.unlink(tmp)
        try:
            snapshot_sqlite(entry.path, Path(tmp))
            _add_file(tar, entry, Path(tmp), stats, progress)
            stats.sqlite_files += 1
        finally:
            Path(tmp).unlink(missing_ok=True)
    else:
        _add_file(tar, entry, entry.path, stats, progress)


def _add_file(tar: tarfile.TarFile, entry: Entry, source: Path, stats: ArchiveStats,
              progress: Progress) -> None:
    try:
        f = open(source, "rb")
    except FileNotFoundError:
        return
    with f:
        size = os.fstat(f.fileno()).st_size
        info = _tarinfo(entry, size)
        tar.addfile(info, _Exact(f, size, progress))
    stats.files += 1
    stats.bytes += size


class _Exact:
    """Reads exactly ``size`` bytes: zero-pads a file that shrank while being read."""

    def __init__(self, f: BinaryIO, size: int, progress: Progress) -> None:
        self._f, self._left, self._progress = f, size, progress

    def read(self, n: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        n = self._left if n < 0 else min(n, self._left)
        data = self._f.read(n)
        if len(data) < n:
            data += b"\0" * (n - len(data))
        self._left -= len(data)
        self._progress.advance(len(data))
        return data
