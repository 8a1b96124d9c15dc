"""Swap a live data tree for a restored one with renames, never leaving a mixed tree."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..errors import RestoreError

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
    tree is moved back and RestoreError is raised: ``live`` always holds one whole tree.
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
    _fsync_dir(live.parent)


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
