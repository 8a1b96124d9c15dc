"""``restore --path`` on the server (issue 16): only the wanted paths of a format-1 or format-2
backup are replaced in the live tree, with the same safety copy and undo as a full restore; a
path that matches nothing and a tampered archive leave the live tree untouched; format 2 reads
only a small part of the archive. In process, on a real SeaweedFS bucket."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from tako_backups.errors import IntegrityError, NotFoundError
from tako_backups.models import BackupInfo
from tako_backups.remote import protocol
from tako_backups.server.paths import ServerPaths
from tako_backups.server.service import BackupService
from tako_backups.storage.s3 import S3Store
from tests.server.helpers import binding
from tests.support.v2_backups import put_v2_backup

APP = "demo/production"


class CountingStore:
    """An S3Store that counts the archive bytes read through it (whole reads and ranges)."""

    def __init__(self, store: S3Store) -> None:
        self.store, self.archive_bytes = store, 0

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        data = self.store.read_range(key, offset, length)
        if key.endswith(".tar.zst.enc"):
            self.archive_bytes += len(data)
        return data

    def open_read(self, key: str) -> BinaryIO:
        body = self.store.open_read(key)
        if not key.endswith(".tar.zst.enc"):
            return body
        counter, real_read = self, body.read

        def read(n: int = -1) -> bytes:
            data = real_read(n)
            counter.archive_bytes += len(data)
            return data

        body.read = read  # type: ignore[method-assign]
        return body

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


@pytest.fixture
def counting(seaweed_store: S3Store) -> CountingStore:
    return CountingStore(seaweed_store)


@pytest.fixture
def service(paths: ServerPaths, counting: CountingStore) -> BackupService:
    return BackupService(paths, "la", store_factory=lambda b: counting)


def live(paths: ServerPaths) -> Path:
    return paths.data_dir("demo", "production")


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def backed_up(service: BackupService, paths: ServerPaths, fmt: int, big: int = 0) -> BackupInfo:
    data = paths.ensure_data_dir("demo", "production")
    (data / "app" / "uploads" / "2026" / "11").mkdir(parents=True)
    (data / "app" / "uploads" / "2026" / "11" / "x.png").write_bytes(b"the photo")
    (data / "app" / "uploads" / "keep.png").write_bytes(b"backed up")
    (data / "app" / "state.txt").write_text("backed up\n")
    (data / "tako" / "t.txt").write_text("tako\n")
    if big:
        (data / "app" / "big.bin").write_bytes(os.urandom(big))
    first = BackupInfo.from_dict(service.backup_now(APP, binding()))
    if fmt == 1:
        return first
    key = service.backups.settings(APP).backup_keys[-1]
    store, _ = service.backups.location(APP, service.backups.settings(APP))
    return put_v2_backup(store, data, key, server="la", now=first.created_at_unix_secs + 1)


def damage(paths: ServerPaths) -> None:
    (live(paths) / "app" / "uploads" / "2026" / "11" / "x.png").unlink()
    (live(paths) / "app" / "uploads" / "keep.png").write_bytes(b"changed since")
    (live(paths) / "app" / "state.txt").write_text("changed since\n")
    (live(paths) / "app" / "later.txt").write_text("written after the backup\n")


@pytest.mark.parametrize("fmt", [1, 2])
def test_restore_paths_replaces_only_them_and_undo_brings_the_previous_tree_back(
        service: BackupService, paths: ServerPaths, fmt: int) -> None:
    info = backed_up(service, paths, fmt)
    damage(paths)
    before = snapshot(live(paths))
    reply = service.restore_paths(APP, info.id, ["app/uploads/2026", "app/state.txt"])
    assert reply.data["id"] == info.id and reply.extra["paths"] == ["app/uploads/2026", "app/state.txt"]
    assert reply.extra["safety_backup"]["status"] == "kept"
    after = snapshot(live(paths))
    assert after == {**before, "app/uploads/2026/11/x.png": b"the photo", "app/state.txt": b"backed up\n"}
    kept = service.safety.kept.get(APP)
    assert kept is not None and snapshot(kept.tree) == before
    # the kept tree is a real copy: the app writing to the new tree leaves it as it was
    (live(paths) / "app" / "later.txt").write_text("the app wrote again\n")
    assert snapshot(kept.tree) == before
    assert not list(paths.restore_work.iterdir())
    service.safety.wait(APP, 60)
    undone = service.undo_restore(APP)
    assert undone.data["source"] == "kept"
    assert snapshot(live(paths)) == before


@pytest.mark.parametrize("fmt", [1, 2])
def test_a_path_that_matches_nothing_leaves_the_live_tree_untouched(
        service: BackupService, paths: ServerPaths, fmt: int) -> None:
    info = backed_up(service, paths, fmt)
    damage(paths)
    before = snapshot(live(paths))
    with pytest.raises(NotFoundError, match=f"Backup {info.id} has no file or folder 'app/nope.png'"):
        service.restore_paths(APP, info.id, ["app/state.txt", "app/nope.png"])
    assert snapshot(live(paths)) == before
    assert not list(paths.restore_work.iterdir()) and service.safety.kept.get(APP) is None


@pytest.mark.parametrize("fmt", [1, 2])
def test_a_tampered_archive_is_refused_with_the_live_tree_untouched(
        service: BackupService, paths: ServerPaths, counting: CountingStore, fmt: int) -> None:
    info = backed_up(service, paths, fmt, big=200_000)
    data = bytearray(counting.store.get_bytes(info.archive_key))
    data[100] ^= 1  # format 2: inside chunk 0, which holds app/ and the first files
    counting.store.put_bytes(info.archive_key, bytes(data))
    damage(paths)
    before = snapshot(live(paths))
    with pytest.raises(IntegrityError):
        service.restore_paths(APP, info.id, ["app"])
    assert snapshot(live(paths)) == before
    assert not list(paths.restore_work.iterdir()) and service.safety.kept.get(APP) is None


def test_v2_restore_of_one_small_file_reads_a_small_part_of_the_archive(
        service: BackupService, paths: ServerPaths, counting: CountingStore) -> None:
    info = backed_up(service, paths, 2, big=3 << 20)
    damage(paths)
    counting.archive_bytes = 0
    service.restore_paths(APP, info.id, ["app/state.txt"], safety_backup=False)
    assert (live(paths) / "app" / "state.txt").read_text() == "backed up\n"
    assert (live(paths) / "app" / "later.txt").exists()
    assert 0 < counting.archive_bytes < info.size_bytes * 0.05, (counting.archive_bytes, info.size_bytes)


def test_restore_paths_is_its_own_command_so_takos_server_refuses_it() -> None:
    request = protocol.check_request(protocol.RESTORE_PATHS, {
        "command": protocol.RESTORE_PATHS, "app": APP, "backup_id": "b1-x", "paths": ["app/a"]})
    assert request.fields["paths"] == ["app/a"]
    assert protocol.RESTORE_PATHS != protocol.RESTORE_BACKUP
    assert protocol.timeout_for(protocol.RESTORE_PATHS) == protocol.LONG_TIMEOUT
