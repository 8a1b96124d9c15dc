"""A folder that an archive is extracted into, written only through directory file descriptors.

Every member's path is walked one component at a time from the root: each folder is opened
relative to its parent's descriptor with ``O_DIRECTORY | O_NOFOLLOW`` (made first when missing),
files are created with ``O_CREAT | O_EXCL | O_NOFOLLOW`` and symlinks with ``symlinkat``, all
relative to the folder's descriptor. So no component can ever resolve through a symlink -- one
the archive made or one that was there before -- whatever the filesystem: on a case-insensitive
or normalizing one (macOS), ``app/a`` that lands on a symlink ``app/A`` fails the same way. The
descriptors of recently used folders are kept open (at most :data:`DIR_CACHE`), so a large
archive costs neither a walk per member nor a descriptor per folder.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import OrderedDict
from pathlib import Path

from ..errors import UnsafeArchiveError
from .member_checks import REFUSE

__all__ = ["DIR_CACHE", "StagingTree"]

DIR_CACHE = 64
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
NEW_DIR_MODE = 0o777  # less the umask, as mkdir(1) and Tako make missing folders
_BLOCKED = (errno.ELOOP, errno.ENOTDIR, errno.EMLINK)  # a symlink or a non-folder in the way
_LINK_TIMES = os.utime in os.supports_follow_symlinks and os.utime in os.supports_dir_fd


class StagingTree:
    """Creates folders, files and symlinks under ``root`` (an existing folder) by their path
    components, never through a symlink. Use as a context manager: :meth:`close` closes every
    descriptor it holds.

    ``label`` arguments are the member's name as shown in messages (already escaped). Methods
    raise UnsafeArchiveError when a component is a symlink (``would be written through a
    symlink``) or the name is taken (``clashes with an earlier entry``), and OSError from the
    filesystem (ENOSPC, EACCES, ...).
    """

    def __init__(self, root: Path, cache_size: int = DIR_CACHE) -> None:
        self._root = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._cache: OrderedDict[tuple[str, ...], int] = OrderedDict()
        self._cache_size = max(cache_size, 2)

    def __enter__(self) -> StagingTree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every descriptor (safe to call twice)."""
        while self._cache:
            os.close(self._cache.popitem()[1])
        if self._root >= 0:
            os.close(self._root)
            self._root = -1

    def folder(self, parts: tuple[str, ...], label: str) -> int:
        """The descriptor of the folder ``parts`` (``()`` is the root), making the missing ones.

        The descriptor stays owned by the tree: use it before the next call, never close it.
        """
        if not parts:
            return self._root
        fd = self._cache.get(parts)
        if fd is not None:
            self._cache.move_to_end(parts)
            return fd
        have = len(parts) - 1
        while have and parts[:have] not in self._cache:
            have -= 1
        fd = self._cache[parts[:have]] if have else self._root
        for depth in range(have, len(parts)):
            fd = self._open_folder(fd, parts[depth], label)
            self._remember(parts[:depth + 1], fd)
        return fd

    def make_folder(self, parts: tuple[str, ...], label: str) -> None:
        """Make the folder ``parts`` (its parents too); an existing folder is fine."""
        parent = self.folder(parts[:-1], label)
        try:
            os.mkdir(parts[-1], NEW_DIR_MODE, dir_fd=parent)
        except FileExistsError:
            pass
        self.folder(parts, label)

    def create_file(self, parts: tuple[str, ...], label: str) -> int:
        """A new file ``parts`` opened for writing (mode 0600); the caller closes it."""
        parent = self.folder(parts[:-1], label)
        try:
            return os.open(parts[-1], FILE_FLAGS, 0o600, dir_fd=parent)
        except FileExistsError:
            raise _clash(label) from None

    def make_symlink(self, parts: tuple[str, ...], target: str, label: str, *, mtime: float,
                     owner: tuple[int, int] | None) -> None:
        """A symlink ``parts`` -> ``target`` (never followed), with its own time and owner."""
        parent = self.folder(parts[:-1], label)
        name = parts[-1]
        try:
            os.symlink(target, name, dir_fd=parent)
        except FileExistsError:
            raise _clash(label) from None
        if owner is not None:
            os.chown(name, *owner, dir_fd=parent, follow_symlinks=False)
        if _LINK_TIMES:
            os.utime(name, (mtime, mtime), dir_fd=parent, follow_symlinks=False)

    def _open_folder(self, parent: int, name: str, label: str) -> int:
        try:
            return os.open(name, DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            pass
        except OSError as exc:
            if exc.errno in _BLOCKED:
                raise _blocked(parent, name, label) from None
            raise
        try:
            os.mkdir(name, NEW_DIR_MODE, dir_fd=parent)
        except FileExistsError:
            pass
        try:
            return os.open(name, DIR_FLAGS, dir_fd=parent)
        except OSError as exc:
            if exc.errno in _BLOCKED:
                raise _blocked(parent, name, label) from None
            raise

    def _remember(self, parts: tuple[str, ...], fd: int) -> None:
        self._cache[parts] = fd
        while len(self._cache) > self._cache_size:
            os.close(self._cache.popitem(last=False)[1])


def _blocked(parent: int, name: str, label: str) -> UnsafeArchiveError:
    try:
        is_link = stat.S_ISLNK(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode)
    except OSError:
        is_link = False
    if is_link:
        return UnsafeArchiveError(f"Archive entry '{label}' would be written through a symlink{REFUSE}")
    return _clash(label)


def _clash(label: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(f"Archive entry '{label}' clashes with an earlier entry{REFUSE}")
