"""Extract a tar stream into a staging tree, refusing anything that could escape it.

Every member is checked before anything is written for it: absolute paths, ``..``, names
outside ``app/``/``tako/``, hard links, devices, fifos, symlinks whose target leaves the tree,
and members that would be written through an earlier symlink are all refused with
:class:`~tako_backups.errors.UnsafeArchiveError`.
"""

from __future__ import annotations

import errno
import itertools
import math
import os
import posixpath
import re
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from ..errors import FormatError, UnsafeArchiveError
from ..progress import NO_PROGRESS, Progress
from .chunk_reader import ChunkReader

TOP_LEVEL = ("app", "tako")
COPY_BUFFER = 1 << 20
NAME_MAX_BYTES = 255
PATH_MAX_BYTES = 4095
MAX_ID = 2**32 - 1
MAX_MTIME = 2**40
RESERVE_MAX_BYTES = 64 << 20
_CONTROL = re.compile("[\x00-\x1f\x7f]")


def check_member(member: tarfile.TarInfo, symlinks: set[str]) -> str:
    """Return the member's normalized name or raise UnsafeArchiveError.

    Refused: absolute or ``..`` paths, names outside ``app/``/``tako/`` (and those two when they
    are not folders), control characters, names longer than the filesystem allows, hard links,
    devices, fifos, setuid/setgid files, symlinks that are empty, absolute, leave the tree or
    climb after a folder name, members written through a symlink, and out-of-range size, times
    or owners (which would otherwise fail half-way through the restore).
    """
    name = member.name
    shown = _shown(name)
    if name.startswith("/") or posixpath.isabs(name) or "\\" in name:
        raise UnsafeArchiveError(f"Archive entry '{shown}' has an absolute path; refusing to restore.")
    if _CONTROL.search(name):
        raise UnsafeArchiveError(
            f"Archive entry '{shown}' has a control character (NUL, newline, ...) in its name; "
            "refusing to restore."
        )
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveError(f"Archive entry '{shown}' contains '..'; refusing to restore.")
    if not parts or parts[0] not in TOP_LEVEL:
        raise UnsafeArchiveError(
            f"Archive entry '{shown}' is outside app/ and tako/; refusing to restore."
        )
    if len(parts) == 1 and not member.isdir():
        raise UnsafeArchiveError(
            f"Archive entry '{shown}' must be a folder; refusing to restore."
        )
    norm = "/".join(parts)
    if len(os.fsencode(norm)) > PATH_MAX_BYTES or any(len(os.fsencode(p)) > NAME_MAX_BYTES for p in parts):
        raise UnsafeArchiveError(
            f"Archive entry '{shown}' has a name longer than the filesystem allows; refusing to restore."
        )
    if norm in symlinks:
        raise UnsafeArchiveError(f"Archive entry '{shown}' replaces a symlink; refusing to restore.")
    for i in range(1, len(parts)):
        if "/".join(parts[:i]) in symlinks:
            raise UnsafeArchiveError(
                f"Archive entry '{shown}' would be written through a symlink; refusing to restore."
            )
    if member.islnk():
        raise UnsafeArchiveError(f"Archive entry '{shown}' is a hard link; refusing to restore.")
    if member.isdev() or member.isfifo() or not (member.isreg() or member.isdir() or member.issym()):
        raise UnsafeArchiveError(
            f"Archive entry '{shown}' is a device, fifo or other special file; refusing to restore."
        )
    _check_attributes(member, shown)
    if member.issym():
        target = member.linkname
        if not target or _CONTROL.search(target) or len(os.fsencode(target)) > PATH_MAX_BYTES:
            raise UnsafeArchiveError(
                f"Symlink '{shown}' has an empty, over-long or control-character target; "
                "refusing to restore."
            )
        if target.startswith("/"):
            raise UnsafeArchiveError(
                f"Symlink '{shown}' points to an absolute path; refusing to restore."
            )
        steps = [p for p in target.split("/") if p not in ("", ".")]
        climbs = len(steps) - len(list(itertools.dropwhile(lambda p: p == "..", steps)))
        if ".." in steps[climbs:]:
            raise UnsafeArchiveError(
                f"Symlink '{shown}' has '..' after a folder name in its target; refusing to restore."
            )
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(norm), target))
        if resolved == ".." or resolved.startswith("../"):
            raise UnsafeArchiveError(
                f"Symlink '{shown}' points outside the data root; refusing to restore."
            )
    return norm


def _check_attributes(member: tarfile.TarInfo, shown: str) -> None:
    if member.size < 0 or not (0 <= member.uid < MAX_ID and 0 <= member.gid < MAX_ID):
        raise UnsafeArchiveError(
            f"Archive entry '{shown}' has a negative size or an invalid owner; refusing to restore."
        )
    if not (isinstance(member.mtime, (int, float)) and math.isfinite(member.mtime)
            and abs(member.mtime) < MAX_MTIME):
        raise UnsafeArchiveError(
            f"Archive entry '{shown}' has an invalid modification time; refusing to restore."
        )
    if member.mode & (stat.S_ISUID | stat.S_ISGID) and not member.isdir():
        raise UnsafeArchiveError(
            f"Archive entry '{shown}' is setuid or setgid; refusing to restore."
        )


def _shown(name: str, limit: int = 200) -> str:
    """``name`` for a one-line message: control characters and undecodable bytes escaped."""
    text = name if len(name) <= limit else name[:limit] + "..."
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


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

    def take(self, member: tarfile.TarInfo) -> None:
        """Reserve room for ``member``'s data. Raises OSError(ENOSPC) when it does not fit."""
        if not member.isreg() or member.size <= 0:
            return
        if self._left is None or member.size > self._left:
            self._left = free_bytes(self.dest)
        if member.size > self._left:
            raise OSError(
                errno.ENOSPC,
                f"Archive entry '{_shown(member.name)}' needs {member.size} bytes but only "
                f"{max(self._left, 0)} bytes are free",
                str(self.dest),
            )
        self._left -= member.size


def free_bytes(path: Path) -> int:
    """Bytes that may still be written under ``path``, less a reserve of min(1 %, 64 MiB)."""
    st = os.statvfs(path)
    reserve = min(st.f_blocks * st.f_frsize // 100, RESERVE_MAX_BYTES)
    return st.f_bavail * st.f_frsize - reserve


def extract_stream(source: BinaryIO, dest: Path, progress: Progress = NO_PROGRESS) -> int:
    """Extract the tar stream ``source`` into the existing empty directory ``dest``.

    Returns the number of members. Raises UnsafeArchiveError for a refused member and
    FormatError when the stream is not a tar archive or lacks ``app/`` or ``tako/``.
    """
    symlinks: set[str] = set()
    tops: set[str] = set()
    dirs: list[tuple[Path, tarfile.TarInfo]] = []
    seen: set[str] = set()
    count = 0
    space = SpaceGuard(dest)
    try:
        stream = source if isinstance(source, ChunkReader) else ChunkReader.over(source, COPY_BUFFER)
        with tarfile.TarFile(fileobj=stream, mode="r") as tar:  # type: ignore[arg-type]
            for member in _members(tar):
                norm = check_member(member, symlinks)
                if norm in seen and not member.isdir():
                    raise UnsafeArchiveError(
                        f"Archive entry '{_shown(member.name)}' appears twice; refusing to restore."
                    )
                seen.add(norm)
                tops.add(norm.split("/", 1)[0])
                target = dest / norm
                target.parent.mkdir(parents=True, exist_ok=True)
                if member.isdir():
                    if target.is_symlink() or (target.exists() and not target.is_dir()):
                        raise UnsafeArchiveError(
                            f"Archive entry '{_shown(member.name)}' clashes with an earlier entry; "
                            "refusing to restore."
                        )
                    target.mkdir(exist_ok=True)
                    dirs.append((target, member))
                elif member.issym():
                    symlinks.add(norm)
                    try:
                        os.symlink(member.linkname, target)
                    except FileExistsError:
                        raise UnsafeArchiveError(
                            f"Archive entry '{_shown(member.name)}' clashes with an earlier entry; "
                            "refusing to restore."
                        ) from None
                    _set_owner(target, member)
                else:
                    space.take(member)
                    _write_file(tar, member, target, progress)
                count += 1
    except tarfile.TarError as exc:
        raise FormatError(f"Backup archive is not a valid tar stream ({exc}).") from None
    missing = [t for t in TOP_LEVEL if t not in tops]
    if missing:
        raise FormatError(f"Backup archive has no {missing[0]}/ folder; it is not a Tako backup.")
    for path, member in reversed(dirs):
        _set_owner(path, member)
        os.chmod(path, member.mode & 0o7777)
        os.utime(path, (member.mtime, member.mtime))
    return count


def _set_owner(path: Path, member: tarfile.TarInfo) -> None:
    if os.geteuid() == 0:
        try:
            os.lchown(path, member.uid, member.gid)
        except OSError:
            pass


def _members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    """The members one by one, without tarfile's list of every member read so far (which grows
    with the archive's file count)."""
    while (member := tar.next()) is not None:
        tar.members.clear()  # type: ignore[attr-defined]  # tarfile keeps every TarInfo here
        yield member


def _write_file(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path,
                progress: Progress) -> None:
    direct = tar.fileobj if isinstance(tar.fileobj, ChunkReader) and member.sparse is None else None
    src = None if direct is not None else tar.extractfile(member)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        raise UnsafeArchiveError(
            f"Archive entry '{_shown(member.name)}' clashes with an earlier entry; refusing to restore."
        ) from None
    with os.fdopen(fd, "wb") as out:
        if direct is not None:
            direct.seek(member.offset_data)
            if direct.copy_to(out.fileno(), member.size, progress.advance) != member.size:
                raise tarfile.ReadError("unexpected end of data")
        else:
            assert src is not None
            while chunk := src.read(COPY_BUFFER):
                out.write(chunk)
                progress.advance(len(chunk))
    _set_owner(target, member)
    os.chmod(target, member.mode & 0o7777)
    os.utime(target, (member.mtime, member.mtime))
