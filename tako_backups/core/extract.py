"""Extract a tar stream into a staging tree, refusing anything that could escape it.

Every member is checked before anything is written for it: absolute paths, ``..``, names
outside ``app/``/``tako/``, hard links, devices, fifos, symlinks whose target leaves the tree,
and members that would be written through an earlier symlink are all refused with
:class:`~tako_backups.errors.UnsafeArchiveError`.
"""

from __future__ import annotations

import os
import posixpath
import tarfile
from pathlib import Path
from typing import BinaryIO

from ..errors import FormatError, UnsafeArchiveError
from ..progress import NO_PROGRESS, Progress

TOP_LEVEL = ("app", "tako")
COPY_BUFFER = 1 << 20


def check_member(member: tarfile.TarInfo, symlinks: set[str]) -> str:
    """Return the member's normalized name or raise UnsafeArchiveError."""
    name = member.name
    if name.startswith("/") or posixpath.isabs(name) or "\\" in name or "\0" in name:
        raise UnsafeArchiveError(f"Archive entry '{name}' has an absolute path; refusing to restore.")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveError(f"Archive entry '{name}' contains '..'; refusing to restore.")
    if not parts or parts[0] not in TOP_LEVEL:
        raise UnsafeArchiveError(
            f"Archive entry '{name}' is outside app/ and tako/; refusing to restore."
        )
    norm = "/".join(parts)
    if norm in symlinks:
        raise UnsafeArchiveError(f"Archive entry '{name}' replaces a symlink; refusing to restore.")
    for i in range(1, len(parts)):
        if "/".join(parts[:i]) in symlinks:
            raise UnsafeArchiveError(
                f"Archive entry '{name}' would be written through a symlink; refusing to restore."
            )
    if member.islnk():
        raise UnsafeArchiveError(f"Archive entry '{name}' is a hard link; refusing to restore.")
    if member.isdev() or member.isfifo() or not (member.isreg() or member.isdir() or member.issym()):
        raise UnsafeArchiveError(
            f"Archive entry '{name}' is a device, fifo or other special file; refusing to restore."
        )
    if member.issym():
        target = member.linkname
        if target.startswith("/") or "\0" in target:
            raise UnsafeArchiveError(
                f"Symlink '{name}' points to an absolute path; refusing to restore."
            )
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(norm), target))
        if resolved == ".." or resolved.startswith("../"):
            raise UnsafeArchiveError(
                f"Symlink '{name}' points outside the data root; refusing to restore."
            )
    return norm


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
    try:
        with tarfile.open(fileobj=source, mode="r|", bufsize=COPY_BUFFER) as tar:
            for member in tar:
                norm = check_member(member, symlinks)
                if norm in seen and not member.isdir():
                    raise UnsafeArchiveError(
                        f"Archive entry '{member.name}' appears twice; refusing to restore."
                    )
                seen.add(norm)
                tops.add(norm.split("/", 1)[0])
                target = dest / norm
                target.parent.mkdir(parents=True, exist_ok=True)
                if member.isdir():
                    if target.is_symlink() or (target.exists() and not target.is_dir()):
                        raise UnsafeArchiveError(
                            f"Archive entry '{member.name}' clashes with an earlier entry; "
                            "refusing to restore."
                        )
                    target.mkdir(exist_ok=True)
                    dirs.append((target, member))
                elif member.issym():
                    symlinks.add(norm)
                    os.symlink(member.linkname, target)
                    _set_owner(target, member)
                else:
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


def _write_file(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path,
                progress: Progress) -> None:
    src = tar.extractfile(member)
    assert src is not None
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        raise UnsafeArchiveError(
            f"Archive entry '{member.name}' clashes with an earlier entry; refusing to restore."
        ) from None
    with os.fdopen(fd, "wb") as out:
        while chunk := src.read(COPY_BUFFER):
            out.write(chunk)
            progress.advance(len(chunk))
    _set_owner(target, member)
    os.chmod(target, member.mode & 0o7777)
    os.utime(target, (member.mtime, member.mtime))
