"""Crash-safe file writes: a reader, or a crash at any moment, sees the old file or the new one,
never a mix, and a failed step leaves no temp file behind.

- :func:`write_atomic`: temp file in the same folder, fsync, rename over the target (or, with
  ``exclusive``, a hard link that fails when the target exists), then fsync of the folder.
- :func:`place_new`: move a finished temp file to a name that must not exist yet (downloads).
- :func:`fsync_dir`, :func:`fsync_dir_best_effort`: make the renames in a folder durable.

Everything here raises OSError; callers turn it into the message their user needs.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path

__all__ = ["fsync_dir", "fsync_dir_best_effort", "os_reason", "place_new", "temp_beside", "write_atomic"]


def fsync_dir(folder: Path) -> None:
    """fsync ``folder`` so the renames inside it survive a power cut. Raises OSError."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir_best_effort(folder: Path) -> None:
    """:func:`fsync_dir`, for callers whose file is already safely in place. Raises nothing: a
    folder that cannot be fsynced (some filesystems refuse) is left as it is."""
    with contextlib.suppress(OSError):
        fsync_dir(folder)


def _umask_mode(base: int = 0o666) -> int:
    current = os.umask(0)
    os.umask(current)
    return base & ~current


def temp_beside(path: Path, suffix: str = ".tmp") -> tuple[int, Path]:
    """A new, empty, private temp file next to ``path`` (same folder, so a rename is atomic):
    its open descriptor and its path. Raises OSError."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    return fd, Path(name)


def write_atomic(path: Path, data: bytes, *, mode: int | None = None, exclusive: bool = False) -> Path:
    """Replace the file at ``path`` with ``data`` atomically and return the path written.

    A symlink is followed, so its target is replaced. ``mode`` forces the file mode; without it
    an existing file keeps its mode and a new one gets the umask default. With ``exclusive`` the
    write fails with FileExistsError when the target exists (key files are never overwritten).

    Raises OSError (the folder is missing, the disk is full, ...); the old file is then left as
    it was and no temp file remains.
    """
    target = Path(os.path.realpath(path))
    if mode is None:
        try:
            mode = stat.S_IMODE(target.stat().st_mode)
        except FileNotFoundError:
            mode = _umask_mode()
    fd, temp = temp_beside(target)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if exclusive:
            os.link(temp, target)
            temp.unlink()
        else:
            os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    fsync_dir_best_effort(target.parent)
    return target


def place_new(temp: Path, final: Path) -> None:
    """Move the finished file ``temp`` to ``final`` without ever replacing an existing file.

    A hard link does it atomically; where the filesystem has none, a rename after checking that
    ``final`` is free. Raises FileExistsError when ``final`` exists, OSError when moving fails.
    """
    try:
        os.link(temp, final)
    except FileExistsError:
        raise
    except OSError:
        if final.exists() or final.is_symlink():
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(final)) from None
        os.rename(temp, final)
        return
    with contextlib.suppress(OSError):
        temp.unlink()


def os_reason(exc: OSError) -> str:
    """The short reason of an OSError for a message (``No space left on device``)."""
    return exc.strerror or str(exc)
