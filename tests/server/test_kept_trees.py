"""The safety copy of a restore (issue 14): the replaced tree is kept on disk, uploaded in the
background as the pre-restore backup and read back; undo swaps it back; a second restore waits
for it to be in the bucket; a short disk uploads it before the swap; the grace period drops it.
In process, on a MemoryStore."""

from __future__ import annotations

import io
import threading
from pathlib import Path
from typing import Any

import pytest

from tako_backups.core.verify import extract_verified
from tako_backups.errors import BusyError, RestoreError, StorageError
from tako_backups.models import BackupInfo
from tako_backups.server.kept import RECORD, KeptRecord, KeptTrees, write_record
from tako_backups.server.paths import ServerPaths
from tako_backups.server.recovery import recover_interrupted_restores
from tako_backups.server.service import BackupService
from tako_backups.storage.memory import MemoryStore, MemoryWriter
from tests.server.helpers import binding

APP = "demo/production"


class GatedStore(MemoryStore):
    """A MemoryStore whose archive uploads (after ``armed`` is set) wait in their first write
    until ``release`` is set, or fail with ``fail`` when it is set."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = threading.Event()
        self.waiting = threading.Event()
        self.release = threading.Event()
        self.fail: str | None = None

    def open_writer(self, key: str, expected_size: int | None = None) -> MemoryWriter:
        writer = super().open_writer(key, expected_size)
        if not key.endswith(".tar.zst.enc") or not self.armed.is_set():
            return writer
        store, real_write = self, writer.write

        def write(data: bytes | memoryview) -> int:
            if store.fail is not None:
                raise StorageError(store.fail)
            store.waiting.set()
            assert store.release.wait(30), "never released"
            return real_write(data)

        writer.write = write  # type: ignore[method-assign]
        return writer


@pytest.fixture
def store() -> GatedStore:
    return GatedStore()


@pytest.fixture
def service(paths: ServerPaths, store: GatedStore) -> BackupService:
    return BackupService(paths, "la", store_factory=lambda b: store)


def live(paths: ServerPaths) -> Path:
    return paths.data_dir("demo", "production")


def backed_up(service: BackupService, paths: ServerPaths) -> dict[str, Any]:
    data = paths.ensure_data_dir("demo", "production")
    (data / "app" / "state.txt").write_text("backed up\n")
    return service.backup_now(APP, binding())


def damage(paths: ServerPaths) -> None:
    (live(paths) / "app" / "state.txt").write_text("damaged\n")
    (live(paths) / "app" / "later.txt").write_text("written after the backup\n")


def listed(service: BackupService) -> list[BackupInfo]:
    return [BackupInfo.from_dict(b) for b in service.list_backups(APP)["backups"]]


def files_of(service: BackupService, store: MemoryStore, info: BackupInfo, dest: Path) -> dict[str, str]:
    dest.mkdir()
    keys = service.backups.settings(APP).backup_keys
    extract_verified(io.BytesIO(store.objects[info.archive_key]), info, keys, dest)
    return {str(p.relative_to(dest / "app")): p.read_text() for p in (dest / "app").rglob("*.txt")}


def test_the_replaced_tree_is_kept_then_uploaded_read_back_and_listed_as_pre_restore(
        paths: ServerPaths, store: GatedStore, tmp_path: Path) -> None:
    now = [1_790_000_000]
    service = BackupService(paths, "la", store_factory=lambda b: store, clock=lambda: now[0])
    first = backed_up(service, paths)
    damage(paths)
    now[0] += 600
    reply = service.restore_backup(APP, first["id"], keep_hours=2)
    assert reply.data == first and reply.extra["safety_backup"]["keep_hours"] == 2.0
    assert (live(paths) / "app" / "state.txt").read_text() == "backed up\n"
    kept = service.safety.kept.get(APP)
    assert kept is not None and kept.folder == paths.root / "kept" / "demo.production"
    assert (kept.tree / "app" / "later.txt").read_text() == "written after the backup\n"
    assert service.safety.wait(APP, 30)
    record = service.safety.kept.get(APP).record  # type: ignore[union-attr]
    assert (record.upload, record.replaced_by, record.keep_hours) == ("verified", first["id"], 2.0)
    [safety] = [b for b in listed(service) if b.id == record.backup_id]
    assert safety.extras is not None and safety.extras.reason == "pre-restore"
    assert files_of(service, store, safety, tmp_path / "safety") == {"state.txt": "damaged\n",
                                                            "later.txt": "written after the backup\n"}
    status = service.backup_status(APP)
    assert status["kept_tree"]["upload"] == "verified" and status["last_backup"]["id"] == safety.id
    assert safety.created_at_unix_secs == first["created_at_unix_secs"] + 600
    assert status["next_backup_at_unix_secs"] == first["created_at_unix_secs"] + 86_400  # not from the safety


def test_undo_swaps_the_kept_tree_back_and_the_undo_can_be_undone(
        service: BackupService, paths: ServerPaths, store: GatedStore) -> None:
    first = backed_up(service, paths)
    damage(paths)
    service.restore_backup(APP, first["id"])
    undone = service.undo_restore(APP)
    assert undone.data["source"] == "kept" and undone.data["replaced_by"] == first["id"]
    assert undone.extra["safety_backup"]["status"] == "kept" and undone.extra["downtime_seconds"] >= 0
    assert (live(paths) / "app" / "later.txt").exists()
    kept = service.safety.kept.get(APP)
    assert kept is not None and kept.record.replaced_by == "undo"
    assert (kept.tree / "app" / "state.txt").read_text() == "backed up\n"
    again = service.undo_restore(APP, safety_backup=False)
    assert again.extra["safety_backup"] == {"status": "none"}
    assert (live(paths) / "app" / "state.txt").read_text() == "backed up\n"
    assert service.safety.kept.get(APP) is None and not (paths.root / "kept" / "demo.production").exists()
    assert list(paths.restore_work.iterdir()) == []


def test_while_the_kept_tree_uploads_backups_run_a_second_restore_waits_and_undo_cancels(
        service: BackupService, paths: ServerPaths, store: GatedStore) -> None:
    first = backed_up(service, paths)
    damage(paths)
    store.armed.set()
    store.release.set()
    second = service.backup_now(APP, None)  # a regular backup still goes through while armed
    store.release.clear()
    service.restore_backup(APP, first["id"])
    assert store.waiting.wait(10)  # the upload of the kept tree is held mid-way
    with pytest.raises(BusyError, match="still uploading as its safety backup; try again once it is done"):
        service.restore_backup(APP, second["id"])
    undo = threading.Thread(target=lambda: service.undo_restore(APP, safety_backup=False))
    undo.start()
    store.release.set()
    undo.join(30)
    assert not undo.is_alive()
    assert (live(paths) / "app" / "later.txt").exists()  # the kept tree is live again
    assert not any(b.extras and b.extras.reason == "pre-restore" for b in listed(service))
    assert not list(store.list_uploads(""))
    assert not [k for k in store.objects if k.endswith(".tar.zst.enc")
                and k.rsplit("/", 1)[1][:-12] not in {b.id for b in listed(service)}]


def test_a_failed_upload_is_recorded_refuses_a_new_restore_and_is_retried(
        service: BackupService, paths: ServerPaths, store: GatedStore) -> None:
    first = backed_up(service, paths)
    damage(paths)
    store.armed.set()
    store.fail = "The bucket is read-only today."
    service.restore_backup(APP, first["id"])
    assert service.safety.wait(APP, 30)
    kept = service.safety.kept.get(APP)
    assert kept is not None and kept.record.upload == "failed" and kept.record.attempts == 1
    assert kept.record.message == "The bucket is read-only today."
    with pytest.raises(RestoreError) as refused:
        service.restore_backup(APP, first["id"])
    assert str(refused.value) == (
        f"The data the last restore of app '{APP}' replaced is kept at {kept.tree} but is not in the bucket "
        "yet (its upload failed: The bucket is read-only today; tako-server retries it). Restoring again "
        f"would lose it: run `tako backups undo` to swap it back, or remove {kept.folder} on the server to "
        "give it up.")
    assert service.safety.sweep(kept.record.retry_at_unix_secs - 1) == []  # not due yet
    store.fail, store.armed = None, threading.Event()
    assert service.safety.sweep(kept.record.retry_at_unix_secs) == [f"uploading {APP}"]
    assert service.safety.wait(APP, 30)
    assert service.safety.kept.get(APP).record.upload == "verified"  # type: ignore[union-attr]


def test_without_room_for_the_kept_tree_the_safety_backup_is_uploaded_before_the_swap(
        paths: ServerPaths, store: GatedStore) -> None:
    service = BackupService(paths, "la", store_factory=lambda b: store, keep_reserve=1 << 60)
    first = backed_up(service, paths)
    damage(paths)
    reply = service.restore_backup(APP, first["id"])
    safety = reply.extra["safety_backup"]
    assert safety["status"] == "uploaded" and reply.extra["safety_backup_id"] == safety["id"]
    assert "keeping the replaced data on disk would leave less than" in safety["reason"]
    assert service.safety.kept.get(APP) is None and not (paths.root / "kept" / "demo.production").exists()
    undone = service.undo_restore(APP)  # no kept tree: the pre-restore backup comes from the bucket
    assert undone.data["source"] == "bucket" and undone.data["backup"]["id"] == safety["id"]
    assert (live(paths) / "app" / "later.txt").exists()


def test_the_sweep_drops_a_kept_tree_once_in_the_bucket_and_its_grace_is_over(
        service: BackupService, paths: ServerPaths) -> None:
    first = backed_up(service, paths)
    damage(paths)
    service.restore_backup(APP, first["id"], keep_hours=1)
    assert service.safety.wait(APP, 30)
    kept = service.safety.kept.get(APP)
    assert kept is not None
    assert service.safety.sweep(kept.record.kept_at_unix_secs + 3599) == []
    assert service.safety.sweep(kept.record.kept_at_unix_secs + 3600) == [f"dropped {APP}"]
    assert not kept.folder.exists()
    undone = service.undo_restore(APP)
    assert undone.data["source"] == "bucket" and undone.data["backup"]["id"] == kept.record.backup_id


def test_a_restore_without_safety_copy_drops_the_older_kept_tree(
        service: BackupService, paths: ServerPaths) -> None:
    first = backed_up(service, paths)
    damage(paths)
    service.restore_backup(APP, first["id"])
    assert service.safety.wait(APP, 30)
    count = len(listed(service))
    reply = service.restore_backup(APP, first["id"], safety_backup=False)
    assert reply.extra["safety_backup"] == {"status": "none"} and len(listed(service)) == count
    assert service.safety.kept.get(APP) is None


def test_operation_progress_follows_a_running_backup(service: BackupService, paths: ServerPaths,
                                                     store: GatedStore) -> None:
    backed_up(service, paths)
    assert service.operation_progress(APP) is None
    store.armed.set()
    running = threading.Thread(target=lambda: service.backup_now(APP, None))
    running.start()
    assert store.waiting.wait(10)
    progress = service.operation_progress(APP)
    assert progress is not None and progress["operation"] == "backup"
    assert progress["phase"] == "archive+upload" and progress["bytes_total"] == len("backed up\n")
    store.release.set()
    running.join(30)
    assert service.operation_progress(APP) is None


# ----- what the next start makes of a kept tree -----

def tree(root: Path, label: str) -> Path:
    (root / "app").mkdir(parents=True)
    (root / "tako").mkdir()
    (root / "app" / "state.txt").write_text(label)
    return root


def test_a_swap_done_with_a_record_becomes_the_kept_tree_at_the_next_start(paths: ServerPaths) -> None:
    staging = paths.restore_work / "demo.production.b1710000000-AbCdEf12.0a1b2c3d"
    tree(staging / "aside", "old")
    write_record(staging, KeptRecord(APP, 1_710_000_000, "b1710000000-AbCdEf12"))
    tree(paths.data_dir("demo", "production"), "new")
    folder = paths.root / "kept" / "demo.production"
    assert recover_interrupted_restores(paths) == [f"kept the previous data of {APP} at {folder}"]
    kept = KeptTrees(paths).get(APP)
    assert kept is not None and (kept.tree / "app" / "state.txt").read_text() == "old"
    assert kept.record.upload == "pending" and list(paths.restore_work.iterdir()) == []


def test_a_kept_folder_without_its_record_is_removed_at_the_next_start(paths: ServerPaths) -> None:
    folder = paths.root / "kept" / "demo.production"
    tree(folder / "aside", "half-dropped")
    assert recover_interrupted_restores(paths) == [f"removed {folder}"]
    assert not folder.exists()


def test_a_newer_kept_tree_never_replaces_one_not_in_the_bucket(paths: ServerPaths) -> None:
    kept = KeptTrees(paths)
    folder = kept.folder(APP)
    tree(folder / "aside", "only copy")
    write_record(folder, KeptRecord(APP, 1_710_000_000, "b1710000000-AbCdEf12", upload="failed"))
    staging = paths.restore_work / "demo.production.b1710000001-AbCdEf12.0a1b2c3d"
    tree(staging / "aside", "newer")
    write_record(staging, KeptRecord(APP, 1_710_000_001, "b1710000001-AbCdEf12"))
    tree(paths.data_dir("demo", "production"), "live")
    assert recover_interrupted_restores(paths) == [f"kept {staging}"]
    assert (folder / "aside" / "app" / "state.txt").read_text() == "only copy"
    assert (staging / "aside" / "app" / "state.txt").read_text() == "newer" and (staging / RECORD).exists()


def test_a_restore_reports_each_phase_with_its_bytes(service: BackupService, paths: ServerPaths,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from tako_backups.server import restore as restore_module

    first = backed_up(service, paths)
    damage(paths)
    seen: dict[str, Any] = {}
    real_restore_into, real_swap = restore_module.restore_into, restore_module.swap_tree

    def restore_into(*args: Any, **kwargs: Any) -> Any:  # what a poll sees once the archive is in
        staged = real_restore_into(*args, **kwargs)
        seen["staged"] = service.operation_progress(APP)
        return staged

    def swap_tree(live: Path, staged: Path, aside: Path) -> None:  # and just before the renames
        seen["swap"] = service.operation_progress(APP)
        real_swap(live, staged, aside)

    monkeypatch.setattr(restore_module, "restore_into", restore_into)
    monkeypatch.setattr(restore_module, "swap_tree", swap_tree)
    service.restore_backup(APP, first["id"])
    size = first["size_bytes"]
    assert {k: seen["staged"][k] for k in ("operation", "phase", "bytes_done", "bytes_total")} == {
        "operation": "restore", "phase": "download+extract", "bytes_done": size, "bytes_total": size}
    assert {k: seen["swap"][k] for k in ("phase", "bytes_done", "bytes_total")} == {
        "phase": "swap", "bytes_done": 0, "bytes_total": len("backed up\n")}
    assert service.operation_progress(APP) is None
