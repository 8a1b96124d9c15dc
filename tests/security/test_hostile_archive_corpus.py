"""A corpus of hostile archives, restored through the core (restore_into over a MemoryStore) and
through the server app (signed restore_backup). Each is refused with its exact one-line message
before anything leaves staging: the staging folder is gone, the live tree is byte-for-byte what
it was, and nothing appeared outside the server's data root."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import zstandard

import tako_backups.core.extract as extract_module
from tako_backups.core.extract import extract_stream
from tako_backups.core.pipeline import restore_into
from tako_backups.errors import FormatError, UnsafeArchiveError
from tako_backups.models import BackupKey
from tako_backups.remote.signing import FileSigner
from tako_backups.server.state import AppState, StateStore
from tako_backups.storage.memory import MemoryStore
from tests.core.archive_helpers import tar_bytes
from tests.security.hostile import bomb, member, store_archive
from tests.security.restore_server import ServerSide, restore_call
from tests.server.helpers import APP, binding

REFUSE = "; refusing to restore."
LONG = "a" * 300
DEEP = "/".join(["d" * 200] * 21)


def _sym(name: str, target: str) -> Callable[[tarfile.TarFile], None]:
    return lambda t: member(t, name, kind=tarfile.SYMTYPE, linkname=target)


def _many(*builds: Callable[[tarfile.TarFile], None]) -> Callable[[tarfile.TarFile], None]:
    def build(t: tarfile.TarFile) -> None:
        for b in builds:
            b(t)
    return build


def _file(name: str, data: bytes = b"x", **kw: Any) -> Callable[[tarfile.TarFile], None]:
    return lambda t: member(t, name, data, **kw)


def _dir(name: str, **kw: Any) -> Callable[[tarfile.TarFile], None]:
    return lambda t: member(t, name, kind=tarfile.DIRTYPE, **kw)


def _pax(name: str, **pax: str) -> Callable[[tarfile.TarFile], None]:
    return lambda t: member(t, name, b"data", pax=pax)


# (id, tar builder, with app/ and tako/ first, exact message)
CORPUS: list[tuple[str, Callable[[tarfile.TarFile], None], bool, str]] = [
    ("absolute", _file("/etc/evil"), True, "Archive entry '/etc/evil' has an absolute path"),
    ("absolute-double-slash", _file("//etc/evil"), True, "Archive entry '//etc/evil' has an absolute path"),
    ("backslash", _file("app\\..\\..\\evil"), True, "Archive entry 'app\\..\\..\\evil' has an absolute path"),
    ("dotdot", _file("app/../../evil"), True, "Archive entry 'app/../../evil' contains '..'"),
    ("dotdot-hidden", _file("app/./sub/../../../evil"), True,
     "Archive entry 'app/./sub/../../../evil' contains '..'"),
    ("outside-top", _file("other/file"), True, "Archive entry 'other/file' is outside app/ and tako/"),
    ("top-is-file", _file("app"), False, "Archive entry 'app' must be a folder"),
    ("top-is-symlink", _many(_dir("tako"), _sym("app", "tako")), False,
     "Archive entry 'app' must be a folder"),
    ("symlink-to-etc-then-file", _many(_sym("app/etc", "/etc"), _file("app/etc/evil")), True,
     "Archive entry 'app/etc/evil' would be written through a symlink"),
    ("symlink-to-etc-then-folder", _many(_sym("app/etc", "/etc"), _dir("app/etc/evil.d")), True,
     "Archive entry 'app/etc/evil.d' would be written through a symlink"),
    ("symlink-to-etc-then-symlink", _many(_sym("app/etc", "/etc"), _sym("app/etc/evil", "x")), True,
     "Archive entry 'app/etc/evil' would be written through a symlink"),
    ("symlink-up-then-file", _many(_sym("app/up", "../../.."), _file("app/up/evil")), True,
     "Archive entry 'app/up/evil' would be written through a symlink"),
    ("symlink-chain-then-file", _many(_sym("app/x", ".."), _sym("app/y", "x/../.."), _file("app/y/evil")),
     True, "Archive entry 'app/y/evil' would be written through a symlink"),
    ("symlink-deep-then-file", _many(_sym("app/a/b/c", "/"), _file("app/a/b/c/d/e/evil")), True,
     "Archive entry 'app/a/b/c/d/e/evil' would be written through a symlink"),
    ("symlink-then-long-name-through-it", _many(_sym("app/up", "/tmp"), _file("app/up/" + "n" * 150)),
     True, f"Archive entry 'app/up/{'n' * 150}' would be written through a symlink"),
    ("symlink-in-root-then-file", _many(_file("app/uploads/a"), _sym("app/d", "uploads"), _file("app/d/f")),
     True, "Archive entry 'app/d/f' would be written through a symlink"),
    ("file-replaces-symlink", _many(_sym("app/l", "a"), _file("app/l")), True,
     "Archive entry 'app/l' replaces a symlink"),
    ("symlink-empty-target", _sym("app/l", ""), True,
     "Symlink 'app/l' has an empty, over-long or NUL-containing target"),
    ("symlink-over-long-target", _sym("app/l", "/" + "t" * 4100), True,
     "Symlink 'app/l' has an empty, over-long or NUL-containing target"),
    ("hardlink-to-etc-passwd", lambda t: member(t, "app/h", kind=tarfile.LNKTYPE, linkname="/etc/passwd"),
     True, "Archive entry 'app/h' is a hard link"),
    ("hardlink-inside", _many(_file("app/a"), lambda t: member(t, "app/h", kind=tarfile.LNKTYPE,
                                                                linkname="app/a")),
     True, "Archive entry 'app/h' is a hard link"),
    ("char-device", lambda t: member(t, "app/null", kind=tarfile.CHRTYPE, devmajor=1, devminor=3), True,
     "Archive entry 'app/null' is a device, fifo or other special file"),
    ("block-device", lambda t: member(t, "app/sda", kind=tarfile.BLKTYPE, devmajor=8), True,
     "Archive entry 'app/sda' is a device, fifo or other special file"),
    ("fifo", lambda t: member(t, "app/fifo", kind=tarfile.FIFOTYPE), True,
     "Archive entry 'app/fifo' is a device, fifo or other special file"),
    ("unknown-type", lambda t: member(t, "app/odd", kind=b"Z"), True,
     "Archive entry 'app/odd' is a device, fifo or other special file"),
    ("duplicate-file", _many(_file("app/dup", b"1"), _file("app/dup", b"2")), True,
     "Archive entry 'app/dup' appears twice"),
    ("duplicate-dir-then-file", _many(_dir("app/d"), _file("app/d")), True,
     "Archive entry 'app/d' appears twice"),
    ("file-then-dir", _many(_file("app/d"), _dir("app/d")), True,
     "Archive entry 'app/d' clashes with an earlier entry"),
    ("dir-then-symlink", _many(_file("app/d/f"), _sym("app/d", "x")), True,
     "Archive entry 'app/d' clashes with an earlier entry"),
    ("nul-in-name", _pax("app/a\0b", path="app/a\0b"), True,
     "Archive entry 'app/a\\x00b' has a NUL character in its name"),
    ("newline-in-name-twice", _many(_file("app/a\nb"), _file("app/a\nb")), True,
     "Archive entry 'app/a\\nb' appears twice"),
    ("escape-in-name-through-symlink", _many(_sym("app/\x1b[31m", "/etc"), _file("app/\x1b[31m/x")), True,
     "Archive entry 'app/\\x1b[31m/x' would be written through a symlink"),
    ("long-component", _file("app/" + LONG), True,
     f"Archive entry 'app/{LONG[:193]}...' has a name longer than the filesystem allows"),
    ("long-path", _file("app/" + DEEP), True,
     f"Archive entry 'app/{DEEP[:193]}...' has a name longer than the filesystem allows"),
    ("pax-mtime-nan", _pax("app/x", mtime="nan"), True,
     "Archive entry 'app/x' has an invalid modification time"),
    ("pax-mtime-huge", _pax("app/x", mtime="1e300"), True,
     "Archive entry 'app/x' has an invalid modification time"),
    ("pax-uid-huge", _pax("app/x", uid="99999999999999999999"), True,
     "Archive entry 'app/x' has a negative size or an invalid owner"),
    ("pax-gid-negative", _pax("app/x", gid="-5"), True,
     "Archive entry 'app/x' has a negative size or an invalid owner"),
    ("pax-size-negative", _pax("app/x", size="-1"), True,
     "Archive entry 'app/x' has a negative size or an invalid owner"),
    ("pax-path-to-parent", _pax("app/innocent", path="../../evil"), True,
     "Archive entry '../../evil' contains '..'"),
    ("pax-header-over-1-mib", _pax("app/x", comment="c" * (1 << 20)), True,
     f"The archive header at byte 1024 declares {(1 << 20) + 17} bytes of extended header data "
     "(PAX or GNU long name); an entry may have at most 1 MiB"),
]
IDS = [case[0] for case in CORPUS]


def compressed(build: Callable[[tarfile.TarFile], None], with_tops: bool) -> bytes:
    return zstandard.ZstdCompressor(level=3).compress(tar_bytes(build, with_tops=with_tops))


def snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` with its kind and content hash (symlinks: their target)."""
    found = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            found[rel] = "link:" + os.readlink(path)
        elif path.is_file():
            found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            found[rel] = "dir"
    return found


@pytest.mark.parametrize(("case", "build", "with_tops", "message"), CORPUS, ids=IDS)
def test_core_refuses_hostile_archive_and_removes_staging(
        tmp_path: Path, key: BackupKey, case: str, build: Callable[[tarfile.TarFile], None],
        with_tops: bool, message: str) -> None:
    store = MemoryStore()
    info = store_archive(store, compressed(build, with_tops), key)
    before = snapshot(tmp_path)
    with pytest.raises(UnsafeArchiveError) as refused:
        restore_into(store, info, [key], tmp_path / "staging")
    assert str(refused.value) == message + REFUSE
    assert "\n" not in str(refused.value)
    assert snapshot(tmp_path) == before
    assert not Path("/etc/evil").exists()


# ----- the same corpus through the server -----

@pytest.mark.parametrize(("case", "build", "with_tops", "message"), CORPUS, ids=IDS)
def test_server_refuses_hostile_archive_and_keeps_live_data(
        tmp_path: Path, signer: FileSigner, server_side: ServerSide,
        case: str, build: Callable[[tarfile.TarFile], None], with_tops: bool, message: str) -> None:
    client, paths, store, live = server_side
    settings = binding()
    StateStore(paths.state_dir).save(APP, AppState(backup=settings))
    info = store_archive(store, compressed(build, with_tops), settings.active_key)
    before = snapshot(tmp_path)
    reply = restore_call(client, signer, info.id)
    assert (reply.status_code, reply.json()) == (400, {"status": "error", "message": message + REFUSE})
    assert snapshot(tmp_path) == before
    assert list(paths.restore_work.iterdir()) == []
    assert (live / "app" / "notes.txt").read_text() == "the live data\n"


def test_non_utf8_names_are_kept_and_reported_readably(
        tmp_path: Path, signer: FileSigner, server_side: ServerSide,
        key: BackupKey) -> None:
    """A file name that is not UTF-8 is legal on Linux and restored as is; when such a name is
    refused (here: twice in one archive), the reply shows it escaped and stays valid JSON."""
    name = os.fsdecode(b"app/caf\xe9.txt")
    store = MemoryStore()
    info = store_archive(store, compressed(_file(name, b"bytes"), True), key)
    tree = restore_into(store, info, [key], tmp_path / "staging").tree
    assert (tree / "app" / os.fsdecode(b"caf\xe9.txt")).read_bytes() == b"bytes"
    assert os.listdir(os.fsencode(tree / "app")) == [b"caf\xe9.txt"]

    client, paths, server_store, live = server_side
    settings = binding()
    StateStore(paths.state_dir).save(APP, AppState(backup=settings))
    twice_archive = compressed(_many(_file(name), _file(name)), True)
    twice = store_archive(server_store, twice_archive, settings.active_key)
    reply = restore_call(client, signer, twice.id)
    assert (reply.status_code, reply.json()) == (
        400, {"status": "error", "message": "Archive entry 'app/caf\\udce9.txt' appears twice" + REFUSE})
    assert list(paths.restore_work.iterdir()) == []


def test_harmless_odd_pax_keys_are_ignored(tmp_path: Path, key: BackupKey) -> None:
    """Unknown keys, xattrs and a binary charset are not applied: the file is restored with its
    bytes and mode, and no extended attribute appears."""
    build = lambda t: member(t, "app/x", b"payload", pax={  # noqa: E731
        "weird.key": "v", "SCHILY.xattr.security.capability": "\x01\x00\x00\x02", "hdrcharset": "BINARY",
        "comment": "\n" * 10}, mode=0o640)
    store = MemoryStore()
    info = store_archive(store, compressed(build, True), key)
    tree = restore_into(store, info, [key], tmp_path / "staging").tree
    assert (tree / "app" / "x").read_bytes() == b"payload"
    assert (tree / "app" / "x").stat().st_mode & 0o7777 == 0o640
    assert os.listxattr(tree / "app" / "x") == []


def test_setgid_folder_is_allowed(tmp_path: Path, key: BackupKey) -> None:
    store = MemoryStore()
    info = store_archive(store, compressed(_many(_dir("app/shared", mode=0o2770), _file("app/shared/a")),
                                           True), key)
    tree = restore_into(store, info, [key], tmp_path / "staging").tree
    assert (tree / "app" / "shared").stat().st_mode & 0o7777 == 0o2770


# ----- what Tako writes and restores, which looks hostile but is not -----

Expected = dict[str, tuple[object, ...]]  # path -> ("link", target) or ("file", mode, bytes)

# (id, tar builder, what the restored tree holds, files restored without setuid/setgid)
RESTORED: list[tuple[str, Callable[[tarfile.TarFile], None], Expected, tuple[str, ...]]] = [
    ("symlink-absolute", _sym("app/etc", "/etc"), {"app/etc": ("link", "/etc")}, ()),
    ("symlink-outward", _sym("app/up", "../../.."), {"app/up": ("link", "../../..")}, ()),
    ("symlink-chain", _many(_sym("app/x", ".."), _sym("app/y", "x/../..")),
     {"app/x": ("link", ".."), "app/y": ("link", "x/../..")}, ()),
    ("symlink-chain-reversed", _many(_sym("app/y", "x/../.."), _sym("app/x", "..")),
     {"app/x": ("link", ".."), "app/y": ("link", "x/../..")}, ()),
    ("symlink-newline-target", _sym("app/l", "a\nb"), {"app/l": ("link", "a\nb")}, ()),
    ("newline-in-name", _file("app/a\nb", b"n"), {"app/a\nb": ("file", 0o644, b"n")}, ()),
    ("escape-in-name", _file("app/\x1b[31mred", b"e"), {"app/\x1b[31mred": ("file", 0o644, b"e")}, ()),
    ("setuid-root-file", _file("app/tool", b"#!/bin/sh\n", mode=0o4755, uid=0),
     {"app/tool": ("file", 0o755, b"#!/bin/sh\n")}, ("app/tool",)),
    ("setgid-file", _file("app/tool", b"#!/bin/sh\n", mode=0o2750),
     {"app/tool": ("file", 0o750, b"#!/bin/sh\n")}, ("app/tool",)),
    ("sticky-file", _file("app/f", b"s", mode=0o1644), {"app/f": ("file", 0o644, b"s")}, ()),
]
RESTORED_IDS = [case[0] for case in RESTORED]


def found(tree: Path, rel: str) -> tuple[object, ...]:
    path = tree / rel
    if path.is_symlink():
        return ("link", os.readlink(path))
    return ("file", path.stat().st_mode & 0o7777, path.read_bytes())


@pytest.mark.parametrize(("case", "build", "expected", "cleared"), RESTORED, ids=RESTORED_IDS)
def test_core_restores_what_tako_restores(tmp_path: Path, key: BackupKey, case: str,
                                          build: Callable[[tarfile.TarFile], None], expected: Expected,
                                          cleared: tuple[str, ...]) -> None:
    store = MemoryStore()
    info = store_archive(store, compressed(build, True), key)
    before = snapshot(tmp_path)
    restored = restore_into(store, info, [key], tmp_path / "staging")
    assert {rel: found(restored.tree, rel) for rel in expected} == expected
    assert restored.extracted.setid_cleared == cleared
    assert {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("staging")} == before


@pytest.mark.parametrize(("case", "build", "expected", "cleared"), RESTORED, ids=RESTORED_IDS)
def test_server_restores_what_tako_restores(tmp_path: Path, signer: FileSigner, server_side: ServerSide,
                                            case: str, build: Callable[[tarfile.TarFile], None],
                                            expected: Expected, cleared: tuple[str, ...]) -> None:
    client, paths, store, live = server_side
    settings = binding()
    StateStore(paths.state_dir).save(APP, AppState(backup=settings))
    info = store_archive(store, compressed(build, True), settings.active_key)
    reply = restore_call(client, signer, info.id, safety_backup=False)
    assert reply.status_code == 200, reply.text
    assert {rel: found(live, rel) for rel in expected} == expected
    assert not (live / "app" / "notes.txt").exists()
    assert list(paths.restore_work.iterdir()) == []


# ----- sizes: headers that lie, and small archives that decompress to gigabytes -----

class SmallDisk:
    """Make the extractor see a filesystem of ``size`` bytes under ``root``: free space is what
    the files under it leave (the "low limit" the bomb tests run with, so they never fill a disk)."""

    def __init__(self, root: Path, size: int) -> None:
        self.root, self.size, self.asked = root, size, 0

    def free_bytes(self, path: Path) -> int:
        self.asked += 1
        used = sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())
        return self.size - used


def test_header_claiming_10_gb_is_refused_before_writing(tmp_path: Path, key: BackupKey,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    disk = SmallDisk(tmp_path, 64 << 20)
    monkeypatch.setattr(extract_module, "free_bytes", disk.free_bytes)
    store = MemoryStore()
    info = store_archive(store, bomb([("app/huge.bin", 10 << 30)], truncate_at=1 << 20), key)
    with pytest.raises(OSError) as full:
        restore_into(store, info, [key], tmp_path / "staging")
    assert full.value.errno == errno.ENOSPC
    assert full.value.strerror == (
        f"Archive entry 'app/huge.bin' needs {10 << 30} bytes but only {64 << 20} bytes are free")
    assert not (tmp_path / "staging").exists()


def test_header_claiming_more_than_the_stream_holds_ends_cleanly(tmp_path: Path, key: BackupKey,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """When the disk could hold the claimed 10 GB, the stream ends first: a format error after
    writing only the bytes that were really there."""
    monkeypatch.setattr(extract_module, "free_bytes", lambda path: 1 << 50)
    store = MemoryStore()
    info = store_archive(store, bomb([("app/huge.bin", 10 << 30)], truncate_at=1 << 20), key)
    with pytest.raises(FormatError) as broken:
        restore_into(store, info, [key], tmp_path / "staging")
    assert str(broken.value) == "Backup archive is not a valid tar stream (unexpected end of data)."
    assert not (tmp_path / "staging").exists()
    dest = tmp_path / "direct"
    dest.mkdir()
    plain = zstandard.ZstdDecompressor().stream_reader(
        __import__("io").BytesIO(bomb([("app/huge.bin", 10 << 30)], truncate_at=1 << 20)))
    with pytest.raises(FormatError):
        extract_stream(plain, dest)
    assert (dest / "app" / "huge.bin").stat().st_size == 1 << 20


@pytest.mark.parametrize(("members", "disk_mb", "written_at_most"), [
    ([("app/bomb.bin", 4 << 30)], 48, 0),
    ([(f"app/part-{i:04d}.bin", 1 << 20) for i in range(4096)], 16, 16 << 20),
], ids=["one-4GiB-member", "4096-members-of-1MiB"])
def test_zstd_bomb_stops_at_the_free_space(tmp_path: Path, key: BackupKey, monkeypatch: pytest.MonkeyPatch,
                                           members: list[tuple[str, int]], disk_mb: int,
                                           written_at_most: int) -> None:
    archive = bomb(members)
    assert len(archive) < 3 << 20 and sum(size for _, size in members) == 4 << 30
    disk = SmallDisk(tmp_path, disk_mb << 20)
    monkeypatch.setattr(extract_module, "free_bytes", disk.free_bytes)
    store = MemoryStore()
    info = store_archive(store, archive, key)
    dest = tmp_path / "tree"
    dest.mkdir()
    plain = zstandard.ZstdDecompressor().stream_reader(__import__("io").BytesIO(archive))
    with pytest.raises(OSError) as full:
        extract_stream(plain, dest)
    assert full.value.errno == errno.ENOSPC
    assert re.fullmatch(r"Archive entry 'app/\S+' needs \d+ bytes but only \d+ bytes are free",
                        full.value.strerror)
    written = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    assert written <= written_at_most and written <= disk.size
    with pytest.raises(OSError) as again:
        restore_into(store, info, [key], tmp_path / "staging")
    assert again.value.errno == errno.ENOSPC
    assert not (tmp_path / "staging").exists()
