"""Swap a live data tree for a restored one with renames, never leaving a mixed tree.

The restored tree is flushed to disk (:func:`sync_filesystem`) before the swap, and both parent
folders are fsynced after it, so a power cut right after a restore never finds the old tree gone
and the new one only half on disk.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import stat
import sys
from pathlib import Path

from ..errors import RestoreError
from ..primitives.atomic_files import fsync_dir

RESTORED_DROPS = ("tako/channels.sqlite", "tako/cache.sqlite")
COMPANIONS = ("-wal", "-shm")


def clean_restored_tree(tree: Path) -> None:
    """Remove channels/cache databases and the workflows ``-wal``/``-shm`` from a restored tree."""
    for name in RESTORED_DROPS:
        for suffix in ("", *COMPANIONS):
            (tree / (name + suffix)).unlink(missing_ok=True)
    for suffix in COMPANIONS:
        (tree / ("tako/workflows.sqlite" + suffix)).unlink(missing_ok=True)


def swap_tree(live: Path, staged: Path, aside: Path) -> None:
    """Make ``staged`` the new ``live``; the old tree ends at ``aside`` (caller removes it).

    All three paths must be on one filesystem. If moving ``staged`` into place fails, the old
    tree is moved back and RestoreError is raised: ``live`` always holds one whole tree. An
    OSError from the first rename (nothing moved yet) or from moving the old tree back is raised
    as is.
    """
    had_live = live.exists()
    if had_live:
        os.rename(live, aside)
    try:
        os.rename(staged, live)
    except OSError as exc:
        if had_live:
            os.rename(aside, live)
        raise RestoreError(f"Could not move the restored data into {live}: {exc.strerror}.") from None
    fsync_dir(live.parent)
    if had_live:
        fsync_dir(aside.parent)


def sync_filesystem(path: Path) -> None:
    """Flush every written file of the filesystem holding ``path`` to disk (``syncfs``; ``sync``
    where that call is missing). Raises OSError."""
    fd = os.open(path, os.O_RDONLY)
    try:
        syncfs = getattr(_libc(), "syncfs", None)
        if syncfs is None:
            os.sync()
        elif syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), str(path))
    finally:
        os.close(fd)


def remove_tree(path: Path) -> None:
    """Remove ``path`` and everything under it, also folders the archive made read-only.

    Never raises: what cannot be removed is left behind (tako-server cleans ``tmp/`` at start).
    """

    def writable_then_retry(func, failed: str, exc: object) -> None:  # type: ignore[no-untyped-def]
        parent = os.path.dirname(failed)
        try:
            for folder in (parent, failed):
                st = os.lstat(folder)
                if stat.S_ISDIR(st.st_mode):
                    os.chmod(folder, stat.S_IMODE(st.st_mode) | stat.S_IRWXU)
            func(failed)
        except OSError:
            pass

    if path.exists() or path.is_symlink():
        if sys.version_info >= (3, 12):
            shutil.rmtree(path, onexc=writable_then_retry)
        else:
            shutil.rmtree(path, onerror=writable_then_retry)


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)
