"""Extract a tar stream into a staging tree, refusing anything that could escape it.

Every member passes :func:`~.member_checks.check_member` before anything is written for it, and
is then written through directory file descriptors (:class:`~.staging_tree.StagingTree`), so
nothing is ever written through a symlink, whatever the filesystem. Archives Tako wrote restore
as Tako restores them: symlinks keep their targets (absolute or leading out of the data root),
regular files keep their permission bits less setuid/setgid (which are cleared and reported in
:class:`ExtractResult`), folders get their modes and times last, deepest first. Headers are read
in bounded memory (:mod:`.tar_headers`) and file data is checked against the free space
(:class:`SpaceGuard`) before it is written. Refusals raise
:class:`~tako_backups.errors.UnsafeArchiveError`.
"""

from __future__ import annotations

import errno
import os
import stat
import tarfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

from ..errors import FormatError
from ..progress import NO_PROGRESS, Progress
from .chunk_reader import ChunkReader
from .member_checks import TOP_LEVEL, check_member, name_parts, refused, shown
from .staging_tree import StagingTree
from .tar_headers import open_tar

__all__ = ["ExtractResult", "SpaceGuard", "TreeWriter", "extract_stream", "free_bytes", "setid_note"]

COPY_BUFFER = 1 << 20
RESERVE_MAX_BYTES = 64 << 20
SETID = stat.S_ISUID | stat.S_ISGID
NOTE_NAMES = 10
MISSING_TOPS = "Backup archive is missing app/ or tako/ data directories."  # Tako's text


@dataclass(frozen=True)
class ExtractResult:
    """What an extraction did: ``members`` written, and the files (normalized member names, in
    archive order) whose setuid/setgid bits were cleared."""

    members: int
    setid_cleared: tuple[str, ...] = ()

    def note(self) -> str | None:
        """The one line a restore reply shows about this extraction, or None."""
        return setid_note(self.setid_cleared)


def setid_note(paths: Sequence[str], limit: int = NOTE_NAMES) -> str | None:
    """``N files had setuid/setgid bits, restored without them: a, b and 3 more.`` (names
    escaped, at most ``limit`` of them), or None when ``paths`` is empty."""
    if not paths:
        return None
    names = ", ".join(shown(p) for p in paths[:limit])
    more = f" and {len(paths) - limit} more" if len(paths) > limit else ""
    files = "1 file" if len(paths) == 1 else f"{len(paths)} files"
    return f"{files} had setuid/setgid bits, restored without them: {names}{more}."


class SpaceGuard:
    """Refuses a file bigger than the free space left where the tree is extracted.

    A header claiming gigabytes, or a small archive that decompresses to far more than the disk
    holds, fails before its data is written, keeping ``min(1 %, 64 MiB)`` of the filesystem free
    for the apps still running on it. The budget is read with ``statvfs`` and re-read only when a
    file would not fit; a disk filled by someone else still ends in a plain ENOSPC.
    """

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self._left: int | None = None

    def take(self, member: tarfile.TarInfo, size: int | None = None) -> None:
        """Reserve room for ``member``'s data (``size`` bytes: a sparse file's holes take none).
        Raises OSError(ENOSPC) when it does not fit."""
        size = member.size if size is None else size
        if not member.isreg() or size <= 0:
            return
        if self._left is None or size > self._left:
            self._left = free_bytes(self.dest)
        if size > self._left:
            raise OSError(
                errno.ENOSPC,
                f"Archive entry '{shown(member.name)}' needs {size} bytes but only "
                f"{max(self._left, 0)} bytes are free",
                str(self.dest),
            )
        self._left -= size


def free_bytes(path: Path) -> int:
    """Bytes that may still be written under ``path``, less a reserve of min(1 %, 64 MiB)."""
    st = os.statvfs(path)
    reserve = min(st.f_blocks * st.f_frsize // 100, RESERVE_MAX_BYTES)
    return st.f_bavail * st.f_frsize - reserve


Folder = tuple[int, float, tuple[int, int] | None]  # mode, mtime, owner


def extract_stream(source: BinaryIO, dest: Path, progress: Progress = NO_PROGRESS,
                   wanted: Callable[[str], bool] | None = None) -> ExtractResult:
    """Extract the tar stream ``source`` into the existing empty directory ``dest``.

    With ``wanted`` (given a member's normalized name), only the members it accepts are
    written; the others are read past (their data skipped), but a symlink among them still
    stops any wanted member from being written through it, as in a full extraction, and the
    archive need not hold both ``app/`` and ``tako/``.

    Raises UnsafeArchiveError for a refused member or header, FormatError when the stream is not
    a tar archive or lacks ``app/`` or ``tako/``, and OSError from writing (ENOSPC when a file
    does not fit). The caller discards ``dest`` on any error.
    """
    stream = source if isinstance(source, ChunkReader) else ChunkReader.over(source, COPY_BUFFER)
    try:
        with TreeWriter(dest, progress) as writer, open_tar(stream) as tar:
            for member in tar_members(tar):
                if wanted is None or wanted("/".join(name_parts(member.name))):
                    writer.add(tar, member)
                else:
                    writer.skip(member.name, member.issym())
            if wanted is None and not writer.tops.issuperset(TOP_LEVEL):
                raise FormatError(MISSING_TOPS)
            return writer.finish()
    except tarfile.TarError as exc:
        raise FormatError(f"Backup archive is not a valid tar stream ({exc}).") from None


class TreeWriter:
    """Writes tar members into the existing empty directory ``dest``, one :meth:`add` at a time
    and in archive order, with every rule of this module; :meth:`finish` sets the folders' modes
    and times and says what was done. Use as a context manager (it closes the tree's descriptors).

    A reader that hands over only some members (a partial extraction) calls :meth:`skip` for
    each member it passes over, so a symlink among them still guards the members after it.
    """

    def __init__(self, dest: Path, progress: Progress = NO_PROGRESS) -> None:
        self.tops: set[str] = set()
        self._symlinks: set[str] = set()
        self._seen: set[str] = set()
        self._folders: dict[tuple[str, ...], Folder] = {}
        self._cleared: list[str] = []
        self._count = 0
        self._space = SpaceGuard(dest)
        self._as_root = os.geteuid() == 0
        self._progress = progress
        self._tree = StagingTree(dest)

    def __enter__(self) -> TreeWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._tree.close()

    def skip(self, name: str, is_symlink: bool) -> None:
        """A member passed over: only remembered when it is a symlink."""
        if is_symlink:
            self._symlinks.add("/".join(name_parts(name)))

    def add(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        """Check ``member`` and write it (its data read from ``tar``, whose file object is a
        :class:`ChunkReader`). Raises UnsafeArchiveError and OSError."""
        parts = check_member(member, self._symlinks)
        norm = "/".join(parts)
        if norm in self._seen and not member.isdir():
            raise refused(member, "appears twice")
        self._seen.add(norm)
        self.tops.add(parts[0])
        label = shown(member.name)
        owner = (member.uid, member.gid) if self._as_root else None
        tree = self._tree
        if member.isdir():
            tree.make_folder(parts, label)
            self._folders[parts] = (member.mode & 0o7777, _mtime(member), owner)
        elif member.issym():
            self._symlinks.add(norm)
            tree.make_symlink(parts, member.linkname, label, mtime=_mtime(member), owner=owner)
        else:
            self._space.take(member, sum(length for _, length in data_segments(member)))
            if member.mode & SETID:
                self._cleared.append(norm)
            _write_file(tar, member, tree.create_file(parts, label), self._progress, owner)
        self._count += 1

    def finish(self) -> ExtractResult:
        """Folders' owners, modes and times (deepest first); what was written."""
        _finish_folders(self._tree, self._folders)
        return ExtractResult(self._count, tuple(self._cleared))


def _mtime(member: tarfile.TarInfo) -> float:
    return member.mtime if member.mtime != 0 else 1  # as Tako: no file comes out dated 1970-01-01


def _finish_folders(tree: StagingTree, folders: dict[tuple[str, ...], Folder]) -> None:
    """Owner, mode and time of each folder, deepest first: a folder's own mode (0500, say) is set
    only once nothing more is written inside it."""
    for parts in sorted(folders, key=len, reverse=True):
        mode, mtime, owner = folders[parts]
        fd = tree.folder(parts, shown("/".join(parts)))
        if owner is not None:
            os.fchown(fd, *owner)
        os.fchmod(fd, mode)
        os.utime(fd, (mtime, mtime))


def tar_members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    """The members one by one, without tarfile's list of every member read so far (which grows
    with the archive's file count)."""
    while (member := tar.next()) is not None:
        tar.members.clear()  # type: ignore[attr-defined]  # tarfile keeps every TarInfo here
        yield member


def data_segments(member: tarfile.TarInfo) -> list[tuple[int, int]]:
    """Where ``member``'s stored data goes in the file: ``(offset, length)`` pairs, in the order
    the data follows the header. One segment for a plain file; a sparse file's map (GNU ``S``
    or PAX ``GNU.sparse``) leaves holes between them. Raises UnsafeArchiveError for a map whose
    segments overlap, go backwards or end past the file's size."""
    if member.sparse is None:
        return [(0, member.size)]
    segments = []
    end = 0
    for offset, length in cast("list[tuple[int, int]]", member.sparse):  # typeshed says bytes
        if length == 0:  # unused header slots read as (0, 0); GNU tar ends with (size, 0)
            continue
        if offset < end or length < 0 or offset + length > member.size:
            raise refused(member, "has an invalid sparse map")
        segments.append((offset, length))
        end = offset + length
    return segments


def _write_file(tar: tarfile.TarFile, member: tarfile.TarInfo, fd: int, progress: Progress,
                owner: tuple[int, int] | None) -> None:
    """Copy ``member``'s data into ``fd`` (closed afterwards) straight from the reader, holes of
    a sparse file left as holes, then its owner, mode (setuid, setgid and sticky bits dropped)
    and time."""
    try:
        reader = tar.fileobj
        assert isinstance(reader, ChunkReader)
        reader.seek(member.offset_data)
        for offset, length in data_segments(member):
            if member.sparse is not None:
                os.lseek(fd, offset, os.SEEK_SET)
            if reader.copy_to(fd, length, progress.advance) != length:
                raise tarfile.ReadError("unexpected end of data")
        if member.sparse is not None:
            os.ftruncate(fd, member.size)
        if owner is not None:
            os.fchown(fd, *owner)
        os.fchmod(fd, member.mode & 0o777)
        mtime = _mtime(member)
        os.utime(fd, (mtime, mtime))
    finally:
        os.close(fd)
