"""Walk an app's data root and take SQLite-safe snapshots of its databases.

The data root holds ``app/`` (the app's ``TAKO_DATA_DIR``) and ``tako/`` (Tako-owned state).
Regular files are read in place, never copied; each SQLite database is copied page by page
(SQLite's online backup API, in one step) from a read-only connection, one at a time, so
temporary disk stays about the size of the largest database.

A database's snapshot is *pinned* (:func:`pin_sqlite`: its read transaction begins) on the
walking thread before the walk lists anything that comes after it; the copy of that pinned
snapshot then runs on a helper thread. So a file the app wrote before committing a row that
names it -- an upload in a folder listed later -- is always in the archive when the row is.

The app keeps running and may swap any file or folder for a symlink while it is archived (to
``state/server.key``, say). The walk therefore never resolves a path: each folder is opened
relative to its parent's descriptor with ``O_DIRECTORY | O_NOFOLLOW``, and files are opened
(:meth:`Entry.open_file`) and links read relative to their folder's descriptor, the file with
``O_NOFOLLOW``. Something that is no longer what the walk saw -- a file swapped for a symlink,
a fifo or a folder, a folder swapped for a symlink -- is skipped, like a file deleted during the
walk: the backup holds what the data root held, and never what a link points to.
"""

from __future__ import annotations

import errno
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
COPY_CACHE_KIB = -256  # a page copy reads and writes each page once: a small cache holds no less
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
# the name is now a symlink (ELOOP; EMLINK on FreeBSD), not a folder, or a socket (ENXIO)
_CHANGED = (errno.ELOOP, errno.EMLINK, errno.ENOTDIR, errno.ENXIO)


class SnapshotError(TakoError):
    """A database could not be snapshotted."""


class SourceChanged(SnapshotError):
    """The database is no longer where the walk saw it (a symlink is on the way now)."""


@dataclass(frozen=True)
class Entry:
    """One thing to archive. ``kind`` is ``dir``, ``file``, ``sqlite`` or ``symlink``.

    ``folder_fd`` is the open descriptor of the folder holding ``name`` (None for ``app`` and
    ``tako``); it is valid only until the walk moves on, so use it right away.
    """

    arcname: str
    path: Path
    kind: str
    st: os.stat_result
    folder_fd: int | None = None
    name: str = ""

    def open_file(self) -> int | None:
        """A read-only descriptor of this regular file, opened without following any symlink,
        or None when it is gone or is no longer a regular file. Raises other OSErrors."""
        assert self.folder_fd is not None
        return open_regular(self.folder_fd, self.name)

    def read_link(self) -> str | None:
        """This symlink's target, or None when it is gone or no longer a symlink."""
        assert self.folder_fd is not None
        try:
            return os.readlink(self.name, dir_fd=self.folder_fd)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            if exc.errno == errno.EINVAL:  # not a symlink any more
                return None
            raise


def open_regular(folder_fd: int, name: str) -> int | None:
    """Open ``name`` in the folder ``folder_fd`` for reading if it is a regular file (never
    through a symlink, never blocking on a fifo); None when it is missing or something else."""
    try:
        fd = os.open(name, FILE_FLAGS, dir_fd=folder_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in _CHANGED:
            return None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


def _is_sqlite_at(folder_fd: int, name: str) -> bool:
    try:
        fd = open_regular(folder_fd, name)
    except OSError:
        return False
    if fd is None:
        return False
    try:
        return os.pread(fd, 16, 0) == SQLITE_HEADER
    except OSError:
        return False
    finally:
        os.close(fd)


def is_excluded(arcname: str) -> bool:
    """Channels and cache databases (and their companions) are never backed up."""
    for name in EXCLUDED:
        if arcname == name or any(arcname == name + s for s in (*COMPANION_SUFFIXES, "-journal")):
            return True
    return False


def walk(data_root: Path) -> Iterator[Entry]:
    """Yield entries under ``app/`` and ``tako/`` in a stable order, directories first.

    Symlinks are yielded as symlinks (never followed); sockets, fifos and devices are skipped;
    files and folders that vanish or change kind during the walk are skipped. ``-wal``/``-shm``
    files next to a SQLite database are skipped (the snapshot holds their committed content).
    Raises SnapshotError when ``app`` or ``tako`` is not a folder.
    """
    for top in TOP_LEVEL:
        path = data_root / top
        try:
            st = path.lstat()
        except FileNotFoundError:
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise SnapshotError(f"'{path}' must be a directory.")
        try:
            fd = os.open(path, DIR_FLAGS)
        except FileNotFoundError:
            continue
        except OSError as exc:
            if exc.errno in _CHANGED:
                raise SnapshotError(f"'{path}' must be a directory.") from None
            raise
        try:
            yield Entry(top, path, "dir", st)
            yield from _walk_dir(fd, path, top)
        finally:
            os.close(fd)


def _walk_dir(folder: int, directory: Path, arc_dir: str) -> Iterator[Entry]:
    with os.scandir(folder) as it:
        names = sorted(e.name for e in it)
    present = set(names)
    for name in names:
        arcname = f"{arc_dir}/{name}"
        if is_excluded(arcname):
            continue
        path = directory / name
        try:
            st = os.stat(name, dir_fd=folder, follow_symlinks=False)
        except FileNotFoundError:
            continue
        mode = st.st_mode
        if stat.S_ISLNK(mode):
            yield Entry(arcname, path, "symlink", st, folder, name)
        elif stat.S_ISDIR(mode):
            try:
                sub = os.open(name, DIR_FLAGS, dir_fd=folder)
            except FileNotFoundError:
                continue
            except OSError as exc:
                if exc.errno in _CHANGED:
                    continue
                raise
            try:
                yield Entry(arcname, path, "dir", st, folder, name)
                yield from _walk_dir(sub, path, arcname)
            finally:
                os.close(sub)
        elif stat.S_ISREG(mode):
            if _is_companion(name, present, folder):
                continue
            kind = "sqlite" if _is_sqlite_at(folder, name) else "file"
            yield Entry(arcname, path, kind, st, folder, name)


def _is_companion(name: str, present: set[str], folder: int) -> bool:
    for suffix in COMPANION_SUFFIXES:
        if name.endswith(suffix):
            base = name[: -len(suffix)]
            if base in present and _is_sqlite_at(folder, base):
                return True
    return False


class PinnedDatabase:
    """A read-only connection holding a read transaction: the database as it was when it was
    pinned, whatever the app commits afterwards. Copy it with :meth:`copy_to` (from any thread),
    then :meth:`close` it (which ends the transaction)."""

    def __init__(self, source: Path, conn: sqlite3.Connection) -> None:
        self.source = source
        self._conn = conn

    def copy_to(self, dest: Path) -> None:
        """Write the pinned snapshot to the new file ``dest`` (SQLite's backup API, one step),
        never synced to disk: ``dest`` is a scratch copy.

        Raises SnapshotError naming the source when SQLite fails (disk full, I/O error).
        """
        try:
            target = sqlite3.connect(dest)
        except sqlite3.Error as exc:
            raise SnapshotError(f"Could not snapshot SQLite database '{self.source}': {exc}.") from None
        try:
            target.execute(f"PRAGMA cache_size = {COPY_CACHE_KIB}")
            # The copy lives only until it is archived (and is removed on any failure): no
            # rollback journal and no fsync, which would force the whole file out to disk.
            target.execute("PRAGMA journal_mode = OFF")
            target.execute("PRAGMA synchronous = OFF")
            self._conn.backup(target, pages=-1)
        except sqlite3.Error as exc:
            raise SnapshotError(f"Could not snapshot SQLite database '{self.source}': {exc}.") from None
        finally:
            target.close()

    def close(self) -> None:
        """End the read transaction and close the connection. Never raises."""
        try:
            self._conn.close()
        except sqlite3.Error:
            pass


def pin_sqlite(source: Path, real_path: str | None = None) -> PinnedDatabase:
    """Open the database at ``source`` read-only and begin a read transaction on it.

    ``real_path``: where the database really is (the resolved data root joined with its
    archive name). SQLite resolves every symlink of the path it opens; when that lands
    anywhere else, a symlink was swapped in on the way and SourceChanged is raised before
    anything is read. Raises SnapshotError naming the file when SQLite fails (busy beyond
    10 s, not a database).
    """
    uri = "file:" + _uri_path(source) + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                               check_same_thread=False)
    except sqlite3.Error as exc:
        raise SnapshotError(f"Could not open SQLite database '{source}': {exc}.") from None
    try:
        if real_path is not None and _opened_file(conn) != real_path:
            raise SourceChanged(f"SQLite database '{source}' is now reached through a symlink.")
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute(f"PRAGMA cache_size = {COPY_CACHE_KIB}")
        conn.execute("BEGIN")
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as exc:
        conn.close()
        raise SnapshotError(f"Could not snapshot SQLite database '{source}': {exc}.") from None
    except BaseException:
        conn.close()
        raise
    return PinnedDatabase(source, conn)


def snapshot_sqlite(source: Path, dest: Path, real_path: str | None = None) -> None:
    """Write a consistent copy of the database at ``source`` to ``dest``: :func:`pin_sqlite`,
    then :meth:`PinnedDatabase.copy_to`. Raises SourceChanged or SnapshotError as they do."""
    pinned = pin_sqlite(source, real_path)
    try:
        pinned.copy_to(dest)
    finally:
        pinned.close()


def _opened_file(conn: sqlite3.Connection) -> str:
    """The file SQLite opened for ``main``, with every symlink on its path resolved."""
    for _seq, schema, file in conn.execute("PRAGMA database_list"):
        if schema == "main":
            return str(file)
    return ""


def _uri_path(path: Path) -> str:
    from urllib.parse import quote

    return quote(str(path.absolute()), safe="/")
