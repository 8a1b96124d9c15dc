"""A second copy of a live data tree, for a partial restore to change and swap in whole.

:func:`copy_tree` makes ``dest`` hold what ``src`` holds: folders, symlinks (their targets as
they are, never followed) and regular files, with their modes, times and (as root) owners.
Every path is opened relative to its parent's descriptor with ``O_NOFOLLOW``, so nothing is read
or written through a symlink. Files are

- **hard-linked** with ``link=True``: instant and free, but the two trees then share those files'
  contents. Only right when ``src`` is removed after the swap (no safety copy is kept on disk).
- **copied** otherwise: a reflink (``FICLONE``: btrfs, XFS, bcachefs) where the filesystem has
  one, costing neither time nor space; else ``copy_file_range`` (a real copy). The two trees are
  then independent, as a kept safety copy must be: the app writes to one, the other stays as it
  was at the swap.

Sockets, fifos and devices are left out (a backup cannot hold them either).
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from pathlib import Path

__all__ = ["copy_tree", "tree_bytes"]

FICLONE = 0x40049409  # _IOW(0x94, 9, int), linux/fs.h
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
COPY_STEP = 64 << 20
_NO_CLONE = (errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EBADF)


def tree_bytes(root: Path) -> int:
    """The bytes of the regular files under ``root`` (0 when it is missing); links not followed."""
    total = 0
    for folder, _dirs, files in os.walk(root):
        for name in files:
            try:
                st = os.lstat(os.path.join(folder, name))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
    return total


def copy_tree(src: Path, dest: Path, *, link: bool) -> None:
    """Make the new folder ``dest`` a copy of the folder ``src`` (hard links with ``link``).

    ``dest`` must not exist; its parent must. A missing ``src`` gives an empty ``dest``. Raises
    OSError (ENOSPC, EACCES, ...); the caller removes ``dest`` then.
    """
    os.mkdir(dest, 0o700)
    if not src.exists():
        return
    as_root = os.geteuid() == 0
    src_fd = os.open(src, DIR_FLAGS)
    try:
        dst_fd = os.open(dest, DIR_FLAGS)
        try:
            _copy_folder(src_fd, dst_fd, link, as_root)
            _settle(dst_fd, os.fstat(src_fd), as_root)
        finally:
            os.close(dst_fd)
    finally:
        os.close(src_fd)


def _copy_folder(src_fd: int, dst_fd: int, link: bool, as_root: bool) -> None:
    with os.scandir(src_fd) as entries:
        names = [(e.name, e.stat(follow_symlinks=False)) for e in entries]
    for name, st in names:
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            os.mkdir(name, 0o700, dir_fd=dst_fd)
            sub_src = os.open(name, DIR_FLAGS, dir_fd=src_fd)
            try:
                sub_dst = os.open(name, DIR_FLAGS, dir_fd=dst_fd)
                try:
                    _copy_folder(sub_src, sub_dst, link, as_root)
                    _settle(sub_dst, st, as_root)
                finally:
                    os.close(sub_dst)
            finally:
                os.close(sub_src)
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(name, dir_fd=src_fd), name, dir_fd=dst_fd)
            if as_root:
                os.chown(name, st.st_uid, st.st_gid, dir_fd=dst_fd, follow_symlinks=False)
            os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dst_fd, follow_symlinks=False)
        elif stat.S_ISREG(mode):
            if link:
                os.link(name, name, src_dir_fd=src_fd, dst_dir_fd=dst_fd, follow_symlinks=False)
            else:
                _copy_file(src_fd, dst_fd, name, st, as_root)


def _copy_file(src_dir: int, dst_dir: int, name: str, st: os.stat_result, as_root: bool) -> None:
    src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src_dir)
    try:
        dst = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                      dir_fd=dst_dir)
        try:
            _clone_or_copy(src, dst, st.st_size)
            _settle(dst, st, as_root)
        finally:
            os.close(dst)
    finally:
        os.close(src)


def _clone_or_copy(src: int, dst: int, size: int) -> None:
    try:
        fcntl.ioctl(dst, FICLONE, src)
        return
    except OSError as exc:
        if exc.errno not in _NO_CLONE:
            raise
    done = 0
    while done < size:
        try:
            n = os.copy_file_range(src, dst, min(COPY_STEP, size - done), done, done)
        except OSError as exc:
            if exc.errno not in _NO_CLONE:
                raise
            n = _plain_copy(src, dst, done, size - done)
        if n == 0:
            break  # the file shrank meanwhile (the app is stopped: should not happen)
        done += n


def _plain_copy(src: int, dst: int, offset: int, count: int) -> int:
    data = os.pread(src, min(COPY_STEP, count), offset)
    view = memoryview(data)
    while view:
        view = view[os.pwrite(dst, view, offset + len(data) - len(view)):]
    return len(data)


def _settle(fd: int, st: os.stat_result, as_root: bool) -> None:
    """Owner (as root), mode and times of ``st`` on the open file or folder ``fd``."""
    if as_root:
        os.fchown(fd, st.st_uid, st.st_gid)
    os.fchmod(fd, stat.S_IMODE(st.st_mode))
    os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
