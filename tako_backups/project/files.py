"""Writing a developer's files (tako.toml, secrets.json, key files) crash-safely, with errors
that name the file. The crash-safe write itself is :func:`~tako_backups.primitives.atomic_files.write_atomic`.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ConfigError
from ..primitives.atomic_files import os_reason, write_atomic


def write_file(path: Path, data: bytes, *, mode: int | None = None, exclusive: bool = False) -> None:
    """Replace ``path`` with ``data`` atomically (see :func:`write_atomic` for ``mode``,
    ``exclusive`` and symlinks).

    Raises ConfigError naming the file (its symlink target) when the folder is missing, the
    write fails or, with ``exclusive``, the file exists; the old file is then left as it was and
    no temp file remains.
    """
    target = Path(os.path.realpath(path))
    try:
        write_atomic(target, data, mode=mode, exclusive=exclusive)
    except FileExistsError:
        raise ConfigError(f"Cannot write {target}: it already exists.") from None
    except OSError as exc:
        raise ConfigError(f"Cannot write {target}: {os_reason(exc)}.") from None


def ensure_private_dir(folder: Path) -> None:
    """Create ``folder`` (and parents) with mode 0700 when missing.

    Raises ConfigError when it cannot be created.
    """
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"Cannot create {folder}: {os_reason(exc)}.") from None
