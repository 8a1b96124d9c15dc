"""Crash-safe file writes: a temp file in the same folder, fsync, then an atomic rename.

A reader (or a crash at any moment) sees either the old file or the new one, never a mix, and no
temp file is left behind when a step fails.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

from ..errors import ConfigError


def _umask_mode(base: int = 0o666) -> int:
    current = os.umask(0)
    os.umask(current)
    return base & ~current


def fsync_dir_best_effort(folder: Path) -> None:
    """fsync ``folder`` so a rename inside it survives a power cut. Raises nothing: a folder that
    cannot be fsynced (some filesystems refuse) is left as it is."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomic(path: Path, data: bytes, *, mode: int | None = None, exclusive: bool = False) -> None:
    """Replace ``path`` with ``data`` atomically.

    ``mode`` forces the file mode; without it an existing file keeps its mode and a new one gets
    the umask default. A symlink is followed, so its target is replaced. With ``exclusive`` the
    write fails when ``path`` already exists (used for key files, which are never overwritten).

    Raises ConfigError (naming the path) when the folder is missing or the write fails; the old
    file is then left as it was and no temp file remains.
    """
    target = Path(os.path.realpath(path))
    folder = target.parent
    if mode is None:
        try:
            mode = stat.S_IMODE(target.stat().st_mode)
        except FileNotFoundError:
            mode = _umask_mode()
        except OSError as exc:
            raise ConfigError(f"Cannot read {target}: {exc.strerror or exc}.") from None
    try:
        fd, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise ConfigError(f"Cannot write {target}: {exc.strerror or exc}.") from None
    temp = Path(temp_name)
    try:
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
        except FileExistsError:
            raise ConfigError(f"Cannot write {target}: it already exists.") from None
        except OSError as exc:
            raise ConfigError(f"Cannot write {target}: {exc.strerror or exc}.") from None
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    fsync_dir_best_effort(folder)


def ensure_private_dir(folder: Path) -> None:
    """Create ``folder`` (and parents) with mode 0700 when missing.

    Raises ConfigError when it cannot be created.
    """
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"Cannot create {folder}: {exc.strerror or exc}.") from None
