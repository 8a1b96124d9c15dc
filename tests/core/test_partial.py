"""One file back in the core: list and extract some paths of a format-1 or format-2 archive,
with every byte authenticated, a path that matches nothing refused before anything is placed,
and (format 2) only the chunks that hold the wanted members read."""

from __future__ import annotations

import contextlib
import io
import os
import tarfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

import pytest

from tako_backups.core.extract import extract_stream
from tako_backups.core.partial import ArchiveAccess, PathSelection, extract_paths, list_files, place_paths
from tako_backups.core.pipeline import backup
from tako_backups.errors import ConfigError, IntegrityError, NotFoundError, UnsafeArchiveError
from tako_backups.models import BackupInfo, BackupKey
from tako_backups.storage.memory import MemoryStore
from tests.support.v2_backups import put_v2_backup, seal_tar


class Counted:
    """An ArchiveAccess over a MemoryStore object that counts every byte it hands out."""

    def __init__(self, store: MemoryStore, info: BackupInfo) -> None:
        self.store, self.info, self.bytes = store, info, 0

    def access(self) -> ArchiveAccess:
        @contextlib.contextmanager
        def opened() -> Iterator[BinaryIO]:
            data = self.store.get_bytes(self.info.archive_key)
            self.bytes += len(data)
            yield io.BytesIO(data)

        def read_range(offset: int, length: int) -> bytes:
            data = self.store.read_range(self.info.archive_key, offset, length)
            self.bytes += len(data)
            return data

        return ArchiveAccess(opened, read_range)


def data_tree(root: Path, big: int = 0) -> Path:
    (root / "app" / "uploads" / "2026" / "11").mkdir(parents=True)
    (root / "tako").mkdir()
    (root / "app" / "uploads" / "2026" / "11" / "x.png").write_bytes(b"PNG" * 1000)
    (root / "app" / "uploads" / "2026" / "11" / "y.png").write_bytes(b"other")
    (root / "app" / "uploads" / "z.txt").write_text("zzz")
    (root / "app" / "notes.txt").write_text("notes")
    (root / "tako" / "state.txt").write_text("state")
    if big:
        (root / "app" / "big.bin").write_bytes(os.urandom(big))
    return root


def make_backup(fmt: int, tmp_path: Path, key: BackupKey, big: int = 0) -> tuple[MemoryStore, BackupInfo]:
    store = MemoryStore()
    root = data_tree(tmp_path / "data", big)
    if fmt == 2:
        return store, put_v2_backup(store, root, key)
    info = backup(store, data_root=root, work_root=tmp_path / "w", app="demo", env="production",
                  server="la", key=key).info
    return store, info


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("fmt", [1, 2])
def test_extract_a_file_and_a_folder_writes_only_those(fmt: int, tmp_path: Path, key: BackupKey) -> None:
    store, info = make_backup(fmt, tmp_path, key)
    dest = tmp_path / "dest"
    dest.mkdir()
    selection = PathSelection.parse(["./app/uploads/2026/11/x.png", "tako/", "tako/state.txt"])
    assert selection.paths == ("app/uploads/2026/11/x.png", "tako")
    result, _ = extract_paths(Counted(store, info).access(), info, [key], dest, selection)
    assert files_under(dest) == {"app/uploads/2026/11/x.png": b"PNG" * 1000, "tako/state.txt": b"state"}
    assert result.members == 3  # the file, tako/ and tako/state.txt


@pytest.mark.parametrize("fmt", [1, 2])
def test_a_path_that_matches_nothing_is_named_and_nothing_is_kept(fmt: int, tmp_path: Path,
                                                                   key: BackupKey) -> None:
    store, info = make_backup(fmt, tmp_path, key, big=200_000)
    dest = tmp_path / "dest"
    dest.mkdir()
    counted = Counted(store, info)
    selection = PathSelection.parse(["app/notes.txt", "app/uploads/2026/12"])
    with pytest.raises(NotFoundError) as err:
        extract_paths(counted.access(), info, [key], dest, selection)
    assert str(err.value) == (f"Backup {info.id} has no file or folder 'app/uploads/2026/12'; list its files "
                              f"with `tako backups files {info.id}`.")
    if fmt == 2:  # known from the footer: no chunk read, nothing written
        assert counted.bytes <= 64 << 10 and not any(dest.iterdir())  # the tail read (footer)


@pytest.mark.parametrize("given", ["/etc/passwd", "app/../etc", "uploads/x.png", "", "."])
def test_paths_outside_the_archive_are_refused_before_reading(given: str) -> None:
    with pytest.raises(ConfigError, match="is not a path inside the archive"):
        PathSelection.parse([given])


@pytest.mark.parametrize("fmt", [1, 2])
def test_listing_is_the_same_on_both_formats_and_filters_by_prefix(fmt: int, tmp_path: Path,
                                                                    key: BackupKey) -> None:
    store, info = make_backup(fmt, tmp_path, key)
    listing = list_files(Counted(store, info).access(), info, [key], PathSelection.parse(["app/uploads"]))
    got = {e.path: (e.kind, e.size) for e in listing.entries}
    assert got == {"app/uploads": ("dir", 0), "app/uploads/2026": ("dir", 0),
                   "app/uploads/2026/11": ("dir", 0),
                   "app/uploads/2026/11/x.png": ("file", 3000), "app/uploads/2026/11/y.png": ("file", 5),
                   "app/uploads/z.txt": ("file", 3)}
    assert listing.format == fmt
    assert "verified" in listing.verified or "authenticated" in listing.verified


def test_v2_reads_only_the_chunks_of_the_wanted_file(tmp_path: Path, key: BackupKey) -> None:
    store, info = make_backup(2, tmp_path, key, big=4 << 20)
    counted = Counted(store, info)
    dest = tmp_path / "dest"
    dest.mkdir()
    _, fetched = extract_paths(counted.access(), info, [key], dest, PathSelection.parse(["app/notes.txt"]))
    assert files_under(dest) == {"app/notes.txt": b"notes"}
    assert fetched == counted.bytes
    assert counted.bytes < info.size_bytes * 0.02, (counted.bytes, info.size_bytes)
    listed = Counted(store, info)
    list_files(listed.access(), info, [key])
    assert listed.bytes <= 64 << 10  # one tail read: the footer and trailer


@pytest.mark.parametrize("fmt", [1, 2])
def test_a_tampered_archive_is_refused(fmt: int, tmp_path: Path, key: BackupKey) -> None:
    store, info = make_backup(fmt, tmp_path, key, big=300_000)
    data = bytearray(store.objects[info.archive_key])
    data[60] ^= 1  # v1: the tag at the end fails; v2: chunk 0 (which holds app/) fails its tag
    store.objects[info.archive_key] = bytes(data)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(IntegrityError):
        extract_paths(Counted(store, info).access(), info, [key], dest, PathSelection.parse(["app"]))


def _hostile_tar() -> bytes:
    """app/, tako/, a symlink app/link -> /tmp, then app/link/evil: written through the link."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in ("app", "tako"):
            folder = tarfile.TarInfo(name)
            folder.type, folder.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(folder)
        link = tarfile.TarInfo("app/link")
        link.type, link.linkname = tarfile.SYMTYPE, "/tmp"
        tar.addfile(link)
        evil = tarfile.TarInfo("app/link/evil")
        evil.size = 4
        tar.addfile(evil, io.BytesIO(b"evil"))
    return buf.getvalue()


def test_v2_a_wanted_member_under_a_skipped_archive_symlink_is_refused(tmp_path: Path,
                                                                        key: BackupKey) -> None:
    store, info = make_backup(2, tmp_path, key)
    obj, result = seal_tar(_hostile_tar(), key, 4096)
    info = replace(info, size_bytes=result.sealed.size_bytes, sha256_hex=result.sealed.sha256_hex,
                   encryption=result.sealed.encryption)
    store.put_bytes(info.archive_key, obj)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(UnsafeArchiveError, match="through a symlink"):
        extract_paths(Counted(store, info).access(), info, [key], dest,
                      PathSelection.parse(["app/link/evil"]))
    assert not (dest / "app" / "link").exists()


def test_v1_a_wanted_member_under_a_skipped_archive_symlink_is_refused(tmp_path: Path) -> None:
    selection = PathSelection.parse(["app/link/evil"])
    with pytest.raises(UnsafeArchiveError, match="through a symlink"):
        extract_stream(io.BytesIO(_hostile_tar()), tmp_path, wanted=selection.wants)
    assert list(tmp_path.iterdir()) == []


def test_place_paths_replaces_with_sqlite_companions_aside(tmp_path: Path) -> None:
    picked, dest, trash = tmp_path / "picked", tmp_path / "dest", tmp_path / "trash"
    (picked / "app").mkdir(parents=True)
    (picked / "app" / "db.sqlite").write_text("restored")
    (dest / "app").mkdir(parents=True)
    (dest / "app" / "db.sqlite").write_text("live")
    (dest / "app" / "db.sqlite-wal").write_text("live wal")
    (dest / "app" / "other").write_text("stays")
    trash.mkdir()
    selection = PathSelection.parse(["app/db.sqlite"])
    with pytest.raises(ConfigError, match="already exists; pass --force"):
        place_paths(picked, dest, selection, trash, replace=False)
    assert (dest / "app" / "db.sqlite").read_text() == "live"
    assert place_paths(picked, dest, selection, trash, replace=True) == ["app/db.sqlite"]
    assert files_under(dest) == {"app/db.sqlite": b"restored", "app/other": b"stays"}
    assert sorted(p.read_text() for p in trash.iterdir()) == ["live", "live wal"]


def test_place_paths_never_goes_through_a_symlink_in_the_destination(tmp_path: Path) -> None:
    picked, dest, trash, outside = (tmp_path / n for n in ("picked", "dest", "trash", "outside"))
    (picked / "app" / "uploads").mkdir(parents=True)
    (picked / "app" / "uploads" / "x").write_text("restored")
    (dest / "app").mkdir(parents=True)
    outside.mkdir()
    (dest / "app" / "uploads").symlink_to(outside)
    trash.mkdir()
    with pytest.raises(UnsafeArchiveError, match="through a symlink"):
        place_paths(picked, dest, PathSelection.parse(["app/uploads/x"]), trash, replace=True)
    assert not any(outside.iterdir())
