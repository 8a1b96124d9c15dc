"""One file back: list an archive's files, and extract only some paths of it, from format 1 or 2.

A *path* (``--path``) is a member name or a folder inside the archive, such as
``app/uploads/2026/11/x.png`` or ``app/uploads``: it selects that member and, for a folder,
everything under it. :class:`PathSelection` checks the paths the user gave and remembers which
of them matched; a path that matches nothing fails the whole operation with one line naming it,
before anything leaves the staging folder.

How each format is read (the format is told by :func:`.formats.is_format_2`):

- **Format 2** (:mod:`.ranges_v2`): the footer is fetched and authenticated first (one or two
  ranged reads); the wanted members, and a path that matches nothing, are known from it before
  any chunk is read. Then only the chunks that hold those members are fetched (one ranged read
  each), each verified (AES-GCM tag) before a byte of it reaches tar. Listing reads the footer
  alone.
- **Format 1** (Tako's): one AES-GCM stream whose tag is at the end, so the whole archive is
  streamed; only the wanted members are written into staging, and nothing is handed back until
  the size, SHA-256 and tag verified (:func:`.pipeline.read_verified_tar`). Listing reads the tar
  headers only (file data is skipped, not written) and is given out only after the same check.

Either way every listed or extracted member is authenticated, and extraction goes through
:class:`.extract.TreeWriter`, so the rules of a full restore (:mod:`.member_checks`,
:mod:`.staging_tree`) apply unchanged. :func:`place_paths` then moves the extracted paths from
staging into a destination tree without following a symlink there either.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..errors import ConfigError, IntegrityError, NotFoundError
from ..models import BackupInfo, BackupKey
from ..progress import NO_PROGRESS, Progress
from ..storage.base import ObjectStore
from .extract import ExtractResult, TreeWriter, extract_stream, tar_members
from .format_v2 import Expected
from .formats import is_format_2
from .member_checks import TOP_LEVEL, name_parts, shown
from .pipeline import pick_key, read_verified_tar
from .ranges_v2 import ChunkedRangeReader
from .staging_tree import StagingTree
from .swap import COMPANIONS
from .tar_headers import open_tar

__all__ = ["ArchiveAccess", "FileEntry", "Listing", "PathSelection", "check_free", "extract_paths",
           "list_files", "place_paths", "store_access"]

ReadRange = Callable[[int, int], bytes]
SQLITE_COMPANIONS = (*COMPANIONS, "-journal")
KINDS = {"0": "file", "\0": "file", "7": "file", "5": "dir", "2": "symlink", "1": "hardlink"}


@dataclass(frozen=True)
class ArchiveAccess:
    """How to read one backup's archive: front to back (``open``, a context manager giving a
    stream) and by ranges (``read_range(offset, length)``, a ranged GET or a ``pread``)."""

    open: Callable[[], contextlib.AbstractContextManager[BinaryIO]]
    read_range: ReadRange


def store_access(store: ObjectStore, info: BackupInfo) -> ArchiveAccess:
    """Both ways of reading ``info``'s archive on ``store``."""
    return ArchiveAccess(lambda: store.open_read(info.archive_key),
                         lambda offset, length: store.read_range(info.archive_key, offset, length))


class PathSelection:
    """The paths the user asked for, normalized, and which of them matched a member.

    Raises ConfigError (from :meth:`parse`) for a path that is empty, absolute, holds ``..`` or
    a NUL, or does not start with ``app/`` or ``tako/``.
    """

    def __init__(self, paths: tuple[str, ...]) -> None:
        self.paths = paths
        self._matched: set[str] = set()

    @classmethod
    def parse(cls, given: Iterable[str]) -> PathSelection:
        """Normalize ``given`` (``./app/x/`` is ``app/x``); a path inside another given one is
        dropped (the folder brings it). Raises ConfigError."""
        paths: list[str] = []
        for raw in given:
            parts = name_parts(raw.strip())
            if (not parts or raw.strip().startswith("/") or ".." in parts or "\0" in raw
                    or parts[0] not in TOP_LEVEL):
                raise ConfigError(f"--path '{shown(raw)}' is not a path inside the archive: give one "
                                  "that starts with app/ or tako/, such as app/uploads/photo.png.")
            paths.append("/".join(parts))
        if not paths:
            raise ConfigError("Pass at least one --path.")
        kept = [p for p in dict.fromkeys(paths)
                if not any(p != q and p.startswith(q + "/") for q in paths)]
        return cls(tuple(kept))

    def match(self, name: str) -> str | None:
        """The given path that selects the member named ``name`` (normalized), or None."""
        for path in self.paths:
            if name == path or name.startswith(path + "/"):
                return path
        return None

    def wants(self, name: str) -> bool:
        """Whether the member named ``name`` (normalized) is selected; remembers the match."""
        path = self.match(name)
        if path is None:
            return False
        self._matched.add(path)
        return True

    def check_all_matched(self, backup_id: str) -> None:
        """Raise NotFoundError naming the paths that matched no member."""
        missing = [p for p in self.paths if p not in self._matched]
        if missing:
            named = ", ".join(f"'{shown(p)}'" for p in missing)
            raise NotFoundError(f"Backup {backup_id} has no file or folder {named}; list its files with "
                                f"`tako backups files {backup_id}`.")


@dataclass(frozen=True)
class FileEntry:
    """One member of an archive as listed: normalized path, kind, size and mtime (Unix seconds)."""

    path: str
    kind: str
    size: int
    mtime: float

    def to_dict(self) -> dict[str, object]:
        return {"path": self.path, "type": self.kind, "size": self.size, "mtime": self.mtime}


@dataclass(frozen=True)
class Listing:
    """The archive's members (in archive order) and how they were read and verified."""

    entries: list[FileEntry]
    format: int
    verified: str  # what authenticated the listing, for the output
    bytes_read: int


def _range_reader(access: ArchiveAccess, info: BackupInfo, key: BackupKey) -> ChunkedRangeReader:
    """The archive's footer, checked: one ranged read where the manifest says where it lies."""
    extras = info.extras
    footer_at = None
    if extras is not None and extras.footer_offset is not None and extras.footer_length is not None:
        footer_at = (extras.footer_offset, extras.footer_length)
    return ChunkedRangeReader.open(access.read_range, info.size_bytes, key,
                                   expect=Expected.from_manifest(info), name=f"Backup {info.id}",
                                   footer_at=footer_at)


def _entry(name: str, kind: str, size: int, mtime: float) -> FileEntry:
    return FileEntry("/".join(name_parts(name)), KINDS.get(kind, "other"), size, mtime)


def list_files(access: ArchiveAccess, info: BackupInfo, keys: Iterable[BackupKey],
               selection: PathSelection | None = None, progress: Progress = NO_PROGRESS) -> Listing:
    """The members of ``info``'s archive (those ``selection`` selects, when given), verified.

    Format 2: from the authenticated footer alone. Format 1: from the tar headers of one
    streamed pass, returned only after size, SHA-256 and GCM tag verified. Raises
    IntegrityError, KeyNotFoundError, FormatError, StorageError, and NotFoundError when a path of
    ``selection`` matches nothing.
    """
    key = pick_key(info, keys)
    keep = (lambda name: True) if selection is None else selection.wants
    if is_format_2(info):
        reader = _range_reader(access, info, key)
        entries = [e for m in reader.members()
                   if keep((e := _entry(m.name, m.kind, m.size, m.mtime)).path)]
        verified = "footer authenticated (AES-GCM tag in the manifest)"
        fetched, fmt = reader.bytes_fetched, 2
    else:
        def headers(stream: BinaryIO) -> list[FileEntry]:
            with open_tar(stream) as tar:  # type: ignore[arg-type]
                return [e for m in tar_members(tar)
                        if keep((e := _entry(m.name, m.type.decode("latin-1"), m.size, m.mtime)).path)]

        progress.start(f"Reading {info.id}", info.size_bytes)
        with access.open() as body:
            entries = read_verified_tar(body, info, key, headers, progress)
        progress.finish()
        verified = "whole archive read: size, SHA-256 and AES-GCM tag verified"
        fetched, fmt = info.size_bytes, 1
    if selection is not None:
        selection.check_all_matched(info.id)
    return Listing(entries, fmt, verified, fetched)


def extract_paths(access: ArchiveAccess, info: BackupInfo, keys: Iterable[BackupKey], dest: Path,
                  selection: PathSelection, progress: Progress = NO_PROGRESS) -> tuple[ExtractResult, int]:
    """Extract the members ``selection`` selects from ``info``'s archive into the existing empty
    folder ``dest`` (a staging folder); returns what was written and the archive bytes read.

    Returns only once every byte written was authenticated (format 2: each chunk; format 1:
    the whole archive's tag at the end) and every path matched. Raises NotFoundError (a path
    matches nothing; format 2 says so before reading any chunk), IntegrityError,
    KeyNotFoundError, UnsafeArchiveError, FormatError, StorageError, OSError. The caller
    discards ``dest`` on any error.
    """
    key = pick_key(info, keys)
    if is_format_2(info):
        reader = _range_reader(access, info, key)
        result = _extract_ranges(reader, dest, selection, info.id, progress)
        return result, reader.bytes_fetched
    progress.start(f"Reading {info.id}", info.size_bytes)
    with access.open() as body:
        result = read_verified_tar(body, info, key,
                                   lambda tar: extract_stream(tar, dest, wanted=selection.wants), progress)
    progress.finish()
    selection.check_all_matched(info.id)
    return result, info.size_bytes


@dataclass
class _Run:
    """Members next to each other in the archive, all selected, read from one stream; the
    symlinks passed over before them."""

    skipped_links: list[str]
    offset: int
    names: list[str]


def _plan(reader: ChunkedRangeReader, selection: PathSelection) -> tuple[list[_Run], int]:
    """The runs of selected members (from the footer), and the bytes of their data."""
    runs: list[_Run] = []
    links: list[str] = []
    size = 0
    current: _Run | None = None
    for member in reader.members():
        name = "/".join(name_parts(member.name))
        if not selection.wants(name):
            current = None
            if member.kind == "2":
                links.append(member.name)
            continue
        if current is None:
            current = _Run(links, member.offset, [])
            runs.append(current)
            links = []
        current.names.append(name)
        size += member.size
    return runs, size


def _extract_ranges(reader: ChunkedRangeReader, dest: Path, selection: PathSelection, backup_id: str,
                    progress: Progress) -> ExtractResult:
    runs, size = _plan(reader, selection)
    selection.check_all_matched(backup_id)
    progress.start(f"Reading {sum(len(r.names) for r in runs)} entries of {backup_id}", size)
    with TreeWriter(dest, progress) as writer:
        for run in runs:
            for link in run.skipped_links:
                writer.skip(link, True)
            with open_tar(reader.stream_from(run.offset)) as tar:
                for expected, member in itertools.zip_longest(run.names, itertools.islice(
                        tar_members(tar), len(run.names))):
                    if member is None or "/".join(name_parts(member.name)) != expected:
                        raise IntegrityError(f"Backup {backup_id}: the tar header at the footer's offset "
                                             f"for '{shown(expected)}' is another entry; the archive is "
                                             "damaged.")
                    writer.add(tar, member)
        result = writer.finish()
    progress.finish()
    return result


def place_paths(picked: Path, dest: Path, selection: PathSelection, trash: Path, *,
                replace: bool) -> list[str]:
    """Move each selected path from ``picked`` (where :func:`extract_paths` put it) to the same
    place under ``dest``, making missing parent folders; returns the paths moved.

    Nothing under ``dest`` is followed through a symlink (:class:`.staging_tree.StagingTree`):
    a parent folder that is a symlink raises UnsafeArchiveError. An entry already at a path is
    moved into ``trash`` (an existing empty folder on the same filesystem, for the caller to
    remove) when ``replace``; so are the ``-wal``/``-shm``/``-journal`` files beside a replaced
    file that the selection does not bring (they belong to the old SQLite database and would
    corrupt the restored one). Without ``replace``, ConfigError is raised before anything
    moves when an entry exists. Raises OSError from renaming.
    """
    if not replace:
        check_free(dest, selection)
    moved = []
    with StagingTree(picked) as source, StagingTree(dest) as target:
        for n, path in enumerate(selection.paths):
            parts = tuple(path.split("/"))
            label = shown(path)
            src_fd = source.folder(parts[:-1], label)
            dst_fd = target.folder(parts[:-1], label)
            name = parts[-1]
            is_file = stat.S_ISREG(os.stat(name, dir_fd=src_fd, follow_symlinks=False).st_mode)
            olds = [name, *(name + s for s in SQLITE_COMPANIONS if is_file and not
                            _exists(src_fd, name + s))]
            for m, old in enumerate(olds):
                if _exists(dst_fd, old):
                    if not replace:
                        raise ConfigError(f"{dest / path} already exists; pass --force to replace it.")
                    os.rename(old, trash / f"{n}.{m}", src_dir_fd=dst_fd)
            os.rename(name, name, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
            moved.append(path)
    return moved


def check_free(dest: Path, selection: PathSelection) -> None:
    """Raise ConfigError when one of the selected paths already exists under ``dest``."""
    for path in selection.paths:
        if os.path.lexists(dest / path):
            raise ConfigError(f"{dest / path} already exists; pass --force to replace it.")


def _exists(folder: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True

