"""Backups that Tako's server wrote (tar crate: GNU headers, long-name records, symlinks as they
are, full st_mode, sparse entries; compact JSON manifest and index) restore: through the core,
through the offline verify/extract path and through the server's signed restore_backup. Links
keep their targets byte for byte, setuid/setgid bits are cleared and reported, nothing is
written outside the tree."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from tako_backups.core import catalog, layout
from tako_backups.core.pipeline import restore_into
from tako_backups.core.verify import verify_backup
from tako_backups.models import BackupKey
from tako_backups.remote.signing import FileSigner
from tako_backups.server.state import AppState, StateStore
from tako_backups.storage.memory import MemoryStore
from tests.security.restore_server import ServerSide, restore_call
from tests.security.tako_tar import MTIME, TakoTar, store_tako_backup
from tests.server.helpers import APP, binding

LONG_DIR = "app/uploads/" + "d" * 120
LONG_FILE = LONG_DIR + "/" + "f" * 130 + ".bin"
LONG_TARGET = "/srv/shared/" + "t" * 140


def _database() -> bytes:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, name TEXT)")
    conn.executemany("INSERT INTO runs (name) VALUES (?)", [("nightly",), ("weekly",)])
    conn.commit()
    data = conn.serialize()
    conn.close()
    return data


SQLITE = _database()
SPARSE = [(0, b"head" * 1024), *((n << 20, bytes([65 + n]) * 4096) for n in range(1, 8))]
SPARSE_SIZE = 9 << 20
TWO_SEGMENTS = [(4096, b"a" * 512), (1 << 20, b"b" * 512)]  # unused header slots read as (0, 0)

LINKS = {
    "app/current": "/srv/shared/current",
    "app/up": "../../x",
    "app/uploads/etc": "../../../../../etc",
    "app/self": ".",
    LONG_DIR + "/latest": LONG_TARGET,
    "tako/app-data": "../app",
}
FILES = {  # path -> (mode after restore, content)
    LONG_FILE: (0o644, b"long name " * 100),
    "app/bin/tool": (0o755, b"#!/bin/sh\necho tool\n"),
    "app/bin/group-tool": (0o750, b"#!/bin/sh\necho group\n"),
    "app/bin/plain": (0o755, b"#!/bin/sh\n"),
    "app/sticky": (0o644, b"sticky"),
    "app/esc\x1b[31mred": (0o640, b"escape"),
    "app/line\nbreak": (0o600, b"newline"),
    "tako/workflows.sqlite": (0o644, SQLITE),
}
CLEARED = ("app/bin/tool", "app/bin/group-tool")
NOTE = "2 files had setuid/setgid bits, restored without them: app/bin/tool, app/bin/group-tool."


def tako_archive() -> bytes:
    t = TakoTar().folder("app/").folder("app/uploads").folder(LONG_DIR).folder("app/bin", 0o750)
    t.file(LONG_FILE, FILES[LONG_FILE][1])
    for name, target in LINKS.items():
        if name.startswith("app/"):
            t.symlink(name, target)
    t.file("app/bin/tool", FILES["app/bin/tool"][1], 0o4755)
    t.file("app/bin/group-tool", FILES["app/bin/group-tool"][1], 0o2750)
    t.file("app/bin/plain", FILES["app/bin/plain"][1], 0o755)
    t.file("app/sticky", b"sticky", 0o1644)
    t.file("app/esc\x1b[31mred", b"escape", 0o640)
    t.file("app/line\nbreak", b"newline", 0o600)
    t.sparse("app/disk.img", SPARSE, SPARSE_SIZE)
    t.sparse("app/two.img", TWO_SEGMENTS, 2 << 20)
    t.folder("tako/", 0o700).file("tako/workflows.sqlite", SQLITE).symlink("tako/app-data", "../app")
    return t.finish()


def sparse_content(segments: list[tuple[int, bytes]], size: int) -> bytes:
    out = bytearray(size)
    for offset, chunk in segments:
        out[offset:offset + len(chunk)] = chunk
    return bytes(out)


def assert_tako_tree(tree: Path) -> None:
    assert {name: os.readlink(tree / name) for name in LINKS} == LINKS
    files = {name: ((tree / name).stat().st_mode & 0o7777, (tree / name).read_bytes()) for name in FILES}
    assert files == FILES
    assert (tree / "app" / "disk.img").read_bytes() == sparse_content(SPARSE, SPARSE_SIZE)
    assert (tree / "app" / "two.img").read_bytes() == sparse_content(TWO_SEGMENTS, 2 << 20)
    assert (tree / "app" / "disk.img").stat().st_blocks * 512 < 1 << 20  # the holes stayed holes
    assert (tree / "app" / "bin").stat().st_mode & 0o7777 == 0o750
    assert (tree / "tako").stat().st_mode & 0o7777 == 0o700
    assert (tree / "app" / "bin" / "tool").stat().st_mtime == MTIME
    assert (tree / "app" / "current").lstat().st_mtime == MTIME


def test_the_manifest_and_index_are_tako_s_compact_json(key: BackupKey) -> None:
    store = MemoryStore()
    info = store_tako_backup(store, tako_archive(), key)
    prefix = layout.backup_prefix("demo", "production", "la")
    assert b" " not in store.objects[info.manifest_key] and b"\n" not in store.objects[info.manifest_key]
    assert catalog.read_index(store, prefix).backups == [info]


def test_core_restores_a_tako_backup(tmp_path: Path, key: BackupKey) -> None:
    store = MemoryStore()
    info = store_tako_backup(store, tako_archive(), key)
    restored = restore_into(store, info, [key], tmp_path / "staging")
    assert_tako_tree(restored.tree)
    assert restored.extracted.setid_cleared == CLEARED
    assert restored.extracted.note() == NOTE
    assert sorted(os.listdir(tmp_path)) == ["staging"]


def test_offline_verify_reports_the_cleared_bits(tmp_path: Path, key: BackupKey) -> None:
    store = MemoryStore()
    info = store_tako_backup(store, tako_archive(), key)
    with store.open_read(info.archive_key) as body:
        report = verify_backup(body, info, [key], tmp_path / "scratch")
    assert report.setid_cleared == CLEARED and report.note() == NOTE
    assert report.sqlite_files == ["tako/workflows.sqlite"]
    assert list((tmp_path / "scratch").iterdir()) == []


def test_server_restores_a_tako_backup(signer: FileSigner, server_side: ServerSide) -> None:
    client, paths, store, live = server_side
    settings = binding()
    StateStore(paths.state_dir).save(APP, AppState(backup=settings))
    info = store_tako_backup(store, tako_archive(), settings.active_key)
    reply = restore_call(client, signer, info.id, safety_backup=False)
    assert reply.status_code == 200, reply.text
    assert reply.json()["data"]["id"] == info.id
    assert_tako_tree(live)
    assert not (live / "app" / "notes.txt").exists()
    assert list(paths.restore_work.iterdir()) == []
