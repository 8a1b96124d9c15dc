"""Walk an app's data root and take SQLite-safe snapshots of its databases.

The data root holds ``app/`` (the app's ``TAKO_DATA_DIR``) and ``tako/`` (Tako-owned state).
Regular files are read in place, never copied; each SQLite database is copied with
``VACUUM main INTO`` from a read-only connection, one at a time, so temporary disk stays about
the size of the largest database.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import TakoError

SQLITE_HEADER = b"SQLite format 3\x00"
TOP_LEVEL = ("app", "tako")
EXCLUDED = frozenset({"tako/channels.sqlite", "tako/cache.sqlite"})
COMPANION_SUFFIXES = ("-wal", "-shm")
BUSY_TIMEOUT_MS = 10_000


class SnapshotError(TakoError):
    """A database could not be snapshotted."""


@dataclass(frozen=True)
class Entry:
    """One thing to archive. ``kind`` is ``dir``, ``file``, ``sqlite`` or ``symlink``."""

    arcname: str
    path: Path
    kind: str
    st: os.stat_result


def is_sqlite(path: Path) -> bool:
    """True when the file starts with the 16-byte SQLite header."""
    try:
        with open(path, "rb") as f:
            return f.read(16) == SQLITE_HEADER
    except OSError:
        return False


def is_excluded(arcname: str) -> bool:
    """Channels and cache databases (and their companions) are never backed up."""
    for name in EXCLUDED:
        if arcname == name or any(arcname == name + s for s in (*COMPANION_SUFFIXES, "-journal")):
            return True
    return False


def walk(data_root: Path) -> Iterator[Entry]:
    """Yield entries under ``app/`` and ``tako/`` in a stable order, directories first.

    Symlinks are yielded as symlinks (never followed); sockets, fifos and devices are skipped;
    files that vanish during the walk are skipped. ``-wal``/``-shm`` files next to a SQLite
    database are skipped (the snapshot holds their committed content).
    """
    for top in TOP_LEVEL:
        path = data_root / top
        try:
            st = path.lstat()
        except FileNotFoundError:
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise SnapshotError(f"'{path}' must be a directory.")
        yield Entry(top, path, "dir", st)
        yield from _walk_dir(path, top)


def _walk_dir(directory: Path, arc_dir: str) -> Iterator[Entry]:
    try:
        with os.scandir(directory) as it:
            names = sorted(e.name for e in it)
    except FileNotFoundError:
        return
    present = set(names)
    for name in names:
        arcname = f"{arc_dir}/{name}"
        if is_excluded(arcname):
            continue
        path = directory / name
        try:
            st = path.lstat()
        except FileNotFoundError:
            continue
        mode = st.st_mode
        if stat.S_ISLNK(mode):
            yield Entry(arcname, path, "symlink", st)
        elif stat.S_ISDIR(mode):
            yield Entry(arcname, path, "dir", st)
            yield from _walk_dir(path, arcname)
        elif stat.S_ISREG(mode):
            if _is_companion(name, present, directory):
                continue
            yield Entry(arcname, path, "sqlite" if is_sqlite(path) else "file", st)


def _is_companion(name: str, present: set[str], directory: Path) -> bool:
    for suffix in COMPANION_SUFFIXES:
        if name.endswith(suffix):
            base = name[: -len(suffix)]
            if base in present and is_sqlite(directory / base):
                return True
    return False


def snapshot_sqlite(source: Path, dest: Path) -> None:
    """Write a consistent copy of the database at ``source`` to ``dest`` with VACUUM INTO.

    Raises SnapshotError naming the file when SQLite fails (busy beyond 10 s, corrupt file).
    """
    uri = "file:" + _uri_path(source) + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    except sqlite3.Error as exc:
        raise SnapshotError(f"Could not open SQLite database '{source}': {exc}.") from None
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("VACUUM main INTO ?", (str(dest),))
    except sqlite3.Error as exc:
        raise SnapshotError(f"Could not snapshot SQLite database '{source}': {exc}.") from None
    finally:
        conn.close()


def _uri_path(path: Path) -> str:
    from urllib.parse import quote

    return quote(str(path.absolute()), safe="/")
