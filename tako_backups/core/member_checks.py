"""The rules every tar member must pass before anything is written for it, and how member names
appear in messages.

Refused: absolute or ``..`` member names, names outside ``app/``/``tako/`` (and those two when
they are not folders), NUL in a name, names longer than the filesystem allows, hard links,
devices, fifos and other special files, members written through or over a symlink of the same
archive, empty or over-long symlink targets, and out-of-range size, times or owners (which would
otherwise fail half-way through the restore). Symlinks keep whatever target they carry (absolute
or leading out of the data root, as Tako writes and restores them): a link is only ever created,
never followed, and :mod:`.staging_tree` makes sure nothing is written through one.
"""

from __future__ import annotations

import math
import os
import posixpath
import tarfile

from ..errors import UnsafeArchiveError
from ..primitives.text import printable

__all__ = ["TOP_LEVEL", "check_member", "name_parts", "shown"]

TOP_LEVEL = ("app", "tako")
NAME_MAX_BYTES = 255
PATH_MAX_BYTES = 4095
MAX_ID = 2**32 - 1
MAX_MTIME = 2**40
SHOWN_LIMIT = 200
REFUSE = "; refusing to restore."


def shown(text: str, limit: int = SHOWN_LIMIT) -> str:
    """``text`` (a member name or link target) safe for a one-line message (see
    :func:`~tako_backups.primitives.text.printable`), at most ``limit`` characters."""
    return printable(text, limit)


def refused(member: tarfile.TarInfo, problem: str) -> UnsafeArchiveError:
    """The error for ``member``: ``Archive entry '<name>' <problem>; refusing to restore.``"""
    return UnsafeArchiveError(f"Archive entry '{shown(member.name)}' {problem}{REFUSE}")


def name_parts(name: str) -> tuple[str, ...]:
    """A member name's path components, ``.`` and empty ones dropped (``./app//a`` is
    ``("app", "a")``): how every member name is compared and placed."""
    return tuple(p for p in name.split("/") if p not in ("", "."))


def check_member(member: tarfile.TarInfo, symlinks: set[str]) -> tuple[str, ...]:
    """The member's path components (``.`` and empty ones dropped), or UnsafeArchiveError.

    ``symlinks`` holds the normalized names of the symlinks extracted so far.
    """
    name = member.name
    if name.startswith("/") or posixpath.isabs(name) or "\\" in name:
        raise refused(member, "has an absolute path")
    if "\0" in name:
        raise refused(member, "has a NUL character in its name")
    parts = name_parts(name)
    if ".." in parts:
        raise refused(member, "contains '..'")
    if not parts or parts[0] not in TOP_LEVEL:
        raise refused(member, "is outside app/ and tako/")
    if len(parts) == 1 and not member.isdir():
        raise refused(member, "must be a folder")
    norm = "/".join(parts)
    if len(os.fsencode(norm)) > PATH_MAX_BYTES or any(len(os.fsencode(p)) > NAME_MAX_BYTES for p in parts):
        raise refused(member, "has a name longer than the filesystem allows")
    if norm in symlinks:
        raise refused(member, "replaces a symlink")
    for i in range(1, len(parts)):
        if "/".join(parts[:i]) in symlinks:
            raise refused(member, "would be written through a symlink")
    if member.islnk():
        raise refused(member, "is a hard link")
    if member.isdev() or member.isfifo() or not (member.isreg() or member.isdir() or member.issym()):
        raise refused(member, "is a device, fifo or other special file")
    _check_attributes(member)
    if member.issym():
        target = member.linkname
        if not target or "\0" in target or len(os.fsencode(target)) > PATH_MAX_BYTES:
            raise UnsafeArchiveError(
                f"Symlink '{shown(name)}' has an empty, over-long or NUL-containing target{REFUSE}")
    return parts


def _check_attributes(member: tarfile.TarInfo) -> None:
    if member.size < 0 or not (0 <= member.uid < MAX_ID and 0 <= member.gid < MAX_ID):
        raise refused(member, "has a negative size or an invalid owner")
    if not (isinstance(member.mtime, (int, float)) and math.isfinite(member.mtime)
            and abs(member.mtime) < MAX_MTIME):
        raise refused(member, "has an invalid modification time")
