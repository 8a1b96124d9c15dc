"""Tako's schedule: the due rule, next_backup_at, and the scheduler thread over a MemoryStore."""

from __future__ import annotations

import json
import time

import pytest

from tako_backups.core.layout import backup_prefix
from tako_backups.errors import StorageError
from tako_backups.models import BackupInfo, EncryptionInfo
from tako_backups.server.paths import ServerPaths
from tako_backups.server.scheduler import Scheduler, is_due, next_backup_at
from tako_backups.server.service import BackupService
from tako_backups.storage.memory import MemoryStore
from tests.server.helpers import APP, binding

NOW = 1_800_000_000
PREFIX = backup_prefix("demo", "production", "la")


def info(created: int, backup_id: str = "b1-AbCdEf12") -> BackupInfo:
    return BackupInfo(id=backup_id, app="demo", environment="production", server="la",
                      created_at_unix_secs=created, size_bytes=1, sha256_hex="0" * 64,
                      archive_key="a", manifest_key="m",
                      encryption=EncryptionInfo(key_id="backup-key-0123456789abcdef",
                                                nonce_base64="AAAAAAAAAAAAAAAA", tag_base64="A" * 22 + "=="))


def test_due_rule() -> None:
    assert is_due(None, NOW)
    assert is_due(info(NOW - 86_400), NOW)
    assert is_due(info(NOW - 100_000), NOW)
    assert not is_due(info(NOW - 86_399), NOW)
    assert not is_due(info(NOW), NOW)


def test_next_backup_at() -> None:
    assert next_backup_at(None, NOW) == NOW
    assert next_backup_at(info(NOW - 3_600), NOW) == NOW - 3_600 + 86_400
    assert next_backup_at(info(NOW - 90_000), NOW) == NOW - 90_000 + 86_400


@pytest.fixture
def timed_service(paths: ServerPaths, memory_store: MemoryStore) -> BackupService:
    return BackupService(paths, "la", store_factory=lambda b: memory_store, clock=lambda: NOW)


def test_service_due_follows_the_index(timed_service: BackupService, memory_store: MemoryStore) -> None:
    timed_service.deploy(APP, None, None)
    assert timed_service.enabled_apps() == []
    timed_service.backup_now(APP, binding())
    assert timed_service.enabled_apps() == [APP]
    assert not timed_service.is_due(APP, NOW)
    assert timed_service.is_due(APP, NOW + 86_400)
    status = timed_service.backup_status(APP)
    assert status["next_backup_at_unix_secs"] == NOW + 86_400
    memory_store.objects[f"{PREFIX}index.json"] = b"{broken"
    assert timed_service.is_due(APP, NOW)
    status = timed_service.backup_status(APP)  # rebuilds the index from the manifests
    assert (status["next_backup_at_unix_secs"], status["index_rebuilt"]) == (NOW + 86_400, True)
    assert not timed_service.is_due(APP, NOW)


def wait_for(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_scheduler_backs_up_due_apps_on_start_and_skips_fresh_ones(
        paths: ServerPaths, memory_store: MemoryStore) -> None:
    clock = {"now": NOW}
    service = BackupService(paths, "la", store_factory=lambda b: memory_store, clock=lambda: clock["now"])
    service.backup_now("fresh/production", binding())
    service.deploy(APP, binding(), None)
    clock["now"] = NOW + 86_400  # demo's post-deploy backup is a day old now...
    service.backup_now("fresh/production", None)  # ...fresh's newest is brand new
    service.deploy("off/production", None, None)
    fresh_before = memory_store.get_bytes(f"{backup_prefix('fresh', 'production', 'la')}index.json")

    scheduler = Scheduler(service, interval=3600, clock=lambda: clock["now"])
    scheduler.start()
    try:
        wait_for(lambda: len(json.loads(memory_store.get_bytes(f"{PREFIX}index.json"))["backups"]) == 2)
    finally:
        assert scheduler.stop(timeout=10)
    demo = json.loads(memory_store.get_bytes(f"{PREFIX}index.json"))["backups"]
    assert demo[0]["created_at_unix_secs"] == NOW + 86_400
    assert memory_store.get_bytes(f"{backup_prefix('fresh', 'production', 'la')}index.json") == fresh_before
    assert not any(k.startswith(backup_prefix("off", "production", "la")) for k in memory_store.objects)


def test_scheduler_skips_busy_apps_and_survives_failures(
        paths: ServerPaths, memory_store: MemoryStore) -> None:
    service = BackupService(paths, "la", store_factory=lambda b: memory_store, clock=lambda: NOW)
    service.deploy(APP, None, None)
    service.backup_now("other/production", binding())
    service.state.save(APP, service.state.load(APP).with_backup(binding()))  # type: ignore[union-attr]
    scheduler = Scheduler(service, clock=lambda: NOW)
    with service.locks.hold(APP):
        assert scheduler.run_once() == []  # demo busy, other fresh
    memory_store.fail_puts.add(".enc")
    assert scheduler.run_once() == []  # demo's upload fails: logged, no exception
    memory_store.fail_puts.clear()
    taken = scheduler.run_once()
    assert [(b.app, b.environment) for b in taken] == [("demo", "production")]

    def unreachable(app: str, now: int) -> bool:
        raise StorageError("Cannot connect to storage endpoint http://127.0.0.1:9.")

    service.is_due = unreachable  # type: ignore[method-assign]
    assert scheduler.run_once() == []


def test_closing_the_locks_waits_for_running_work_and_refuses_new_work() -> None:
    import threading

    from tako_backups.errors import BusyError
    from tako_backups.server.locks import SHUTTING_DOWN, AppLocks

    locks = AppLocks()
    started, release = threading.Event(), threading.Event()

    def work() -> None:
        with locks.hold(APP):
            started.set()
            release.wait(5)

    worker = threading.Thread(target=work)
    worker.start()
    started.wait(5)
    assert locks.close(timeout=0.05) is False
    release.set()
    worker.join(5)
    assert locks.close(timeout=1) is True
    with pytest.raises(BusyError, match=f"^{SHUTTING_DOWN}$"), locks.hold("other/production"):
        pass
