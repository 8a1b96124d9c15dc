"""Set owners and modes in a data tree through directory descriptors, never through a link.

An app may swap anything under its ``app/`` or ``tako/`` for a symlink (to ``state/server.key``,
say) while tako-server works there as root, so nothing here resolves a path below the folder it
starts from: each folder is opened relative to its parent's descriptor with ``O_DIRECTORY |
O_NOFOLLOW``, regular files with ``O_NOFOLLOW | O_NONBLOCK`` and changed through that
descriptor. Something that is no longer what the walk saw is skipped. Symlinks keep their owner:
it grants nothing outside sticky folders, and changing it by name could change whatever was
swapped in under that name meanwhile. A regular file with more than one hard link is left as it
is (and counted): it may be a link to a file outside the tree, which must not change hands.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

__all__ = ["DIR_FLAGS", "chown_tree", "open_folder", "set_owner"]

log = logging.getLogger(__name__)

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_CHANGED = (errno.ELOOP, errno.ENOTDIR, errno.EMLINK, errno.ENXIO, errno.ENOENT)


@contextlib.contextmanager
def open_folder(name: str | Path, parent: int | None = None) -> Iterator[int]:
    """A descriptor of the folder ``name`` (relative to ``parent`` when given), opened without
    following a symlink in its last component; closed on exit. Raises OSError (ELOOP or ENOTDIR
    when it is a symlink or not a folder)."""
    fd = os.open(name, DIR_FLAGS, dir_fd=parent)
    try:
        yield fd
    finally:
        os.close(fd)


def set_owner(fd: int, uid: int, gid: int, mode: int | None = None) -> None:
    """Owner (and mode, when given) of the open folder or file ``fd``. Raises OSError."""
    os.fchown(fd, uid, gid)
    if mode is not None:
        os.fchmod(fd, mode)


def chown_tree(folder: int, uid: int, gid: int) -> int:
    """Give the open folder ``folder`` and the folders and regular files under it to ``uid:gid``;
    modes are kept.

    Returns how many regular files were left alone for having more than one hard link. Raises
    OSError from the filesystem; entries that vanish or change kind meanwhile are skipped.
    """
    os.fchown(folder, uid, gid)
    skipped = 0
    with os.scandir(folder) as entries:
        names = [entry.name for entry in entries]
    for name in names:
        try:
            st = os.stat(name, dir_fd=folder, follow_symlinks=False)
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(st.st_mode):
            try:
                with open_folder(name, folder) as sub:
                    skipped += chown_tree(sub, uid, gid)
            except OSError as exc:
                if exc.errno not in _CHANGED:
                    raise
        elif stat.S_ISREG(st.st_mode):
            skipped += _chown_file(folder, name, uid, gid)
    return skipped


def _chown_file(folder: int, name: str, uid: int, gid: int) -> int:
    try:
        fd = os.open(name, FILE_FLAGS, dir_fd=folder)
    except OSError as exc:
        if exc.errno in _CHANGED:
            return 0
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return 0
        if st.st_nlink > 1:
            log.warning("left %r to its owner (uid %d): it has %d hard links", name, st.st_uid, st.st_nlink)
            return 1
        os.fchown(fd, uid, gid)
        return 0
    finally:
        os.close(fd)
