"""The schedule: the due rule with ``every`` and pre-restore backups, and the scheduler thread over a
real BackupService on a MemoryStore (catch-up, overlap, retries, parallel apps)."""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import pytest

from tako_backups.core.layout import backup_prefix
from tako_backups.errors import BusyError, StorageError
from tako_backups.models import BackupExtras, BackupInfo, EncryptionInfo
from tako_backups.policy import newest_regular
from tako_backups.server.locks import SHUTTING_DOWN, AppLocks
from tako_backups.server.paths import ServerPaths
from tako_backups.server.scheduler import CHECK_INTERVAL, Scheduler, is_due, next_backup_at
from tako_backups.server.service import BackupService
from tako_backups.server.state import AppState
from tako_backups.storage.memory import MemoryStore, MemoryWriter
from tests.server.helpers import APP, BUSY, binding
from tests.support.waiting import wait_for

NOW = 1_800_000_000
HOUR = 3_600
PREFIX = backup_prefix("demo", "production", "la")


def info(created: int, backup_id: str = "b1-AbCdEf12", reason: str | None = None) -> BackupInfo:
    return BackupInfo(id=backup_id, app="demo", environment="production", server="la",
                      created_at_unix_secs=created, size_bytes=1, sha256_hex="0" * 64,
                      archive_key="a", manifest_key="m",
                      encryption=EncryptionInfo(key_id="backup-key-0123456789abcdef",
                                                nonce_base64="AAAAAAAAAAAAAAAA", tag_base64="A" * 22 + "=="),
                      extras=None if reason is None else BackupExtras(files=1, bytes=1, reason=reason))


def test_due_rule() -> None:
    assert is_due(None, NOW)
    assert is_due(info(NOW - 86_400), NOW)
    assert is_due(info(NOW - 100_000), NOW)
    assert not is_due(info(NOW - 86_399), NOW)
    assert not is_due(info(NOW), NOW)


def test_due_rule_follows_every() -> None:
    assert is_due(info(NOW - 900), NOW, every=900)
    assert not is_due(info(NOW - 899), NOW, every=900)
    assert is_due(info(NOW - HOUR), NOW, every=HOUR)
    assert not is_due(info(NOW - 5_399), NOW, every=5_400)


def test_next_backup_at() -> None:
    assert next_backup_at(None, NOW) == NOW
    assert next_backup_at(info(NOW - 3_600), NOW) == NOW - 3_600 + 86_400
    assert next_backup_at(info(NOW - 90_000), NOW) == NOW - 90_000 + 86_400
    assert next_backup_at(info(NOW - 600), NOW, every=900) == NOW + 300
    assert next_backup_at(None, NOW, every=900) == NOW


def test_a_pre_restore_backup_does_not_reset_the_schedule() -> None:
    scheduled = info(NOW - HOUR, "b1-Sched001", "scheduled")
    safety = info(NOW - 60, "b2-Safety01", "pre-restore")
    newest = newest_regular([safety, scheduled])
    assert newest == scheduled and is_due(newest, NOW, every=HOUR)
    assert next_backup_at(newest, NOW, every=HOUR) == NOW


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


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class PolicyService(BackupService):
    """BackupService whose ``is_due`` applies an ``every`` and skips pre-restore backups, as the
    service will once the policy is wired in; it also records how backups overlap."""

    def __init__(self, *args: Any, every: int, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.every = every
        self.checks = 0
        self.active: dict[str, int] = {}
        self.most_at_once: dict[str, int] = {}
        self._count = threading.Lock()

    def is_due(self, app: str, now: int) -> bool:
        self.checks += 1
        backups = [BackupInfo.from_dict(b) for b in self.list_backups(app)["backups"]]
        return is_due(newest_regular(backups), now, self.every)

    def scheduled_backup(self, app: str) -> BackupInfo:
        with self._count:
            self.active[app] = self.active.get(app, 0) + 1
            self.most_at_once[app] = max(self.most_at_once.get(app, 0), self.active[app])
        try:
            return super().scheduled_backup(app)
        finally:
            with self._count:
                self.active[app] -= 1


class GatedStore(MemoryStore):
    """A MemoryStore whose archive uploads under ``gated`` prefixes wait until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.gated: set[str] = set()
        self.waiting = threading.Event()
        self.release = threading.Event()

    def open_writer(self, key: str, expected_size: int | None = None) -> MemoryWriter:
        if key.endswith(".tar.zst.enc") and any(key.startswith(p) for p in self.gated):
            self.waiting.set()
            assert self.release.wait(20), "never released"
        return super().open_writer(key, expected_size)


def backups_of(store: MemoryStore, prefix: str = PREFIX) -> list[dict[str, Any]]:
    key = f"{prefix}index.json"
    return json.loads(store.objects[key])["backups"] if key in store.objects else []


def test_the_scheduler_checks_at_least_once_a_minute() -> None:
    assert CHECK_INTERVAL <= 60


def test_scheduler_backs_up_due_apps_on_start_and_skips_fresh_ones(
        paths: ServerPaths, memory_store: MemoryStore) -> None:
    clock = Clock()
    service = BackupService(paths, "la", store_factory=lambda b: memory_store, clock=clock)
    service.backup_now("fresh/production", binding())
    service.deploy(APP, binding(), None)
    clock.now = NOW + 86_400  # demo's post-deploy backup is a day old now...
    service.backup_now("fresh/production", None)  # ...fresh's newest is brand new
    service.deploy("off/production", None, None)
    fresh_before = memory_store.get_bytes(f"{backup_prefix('fresh', 'production', 'la')}index.json")

    scheduler = Scheduler(service, interval=3600, clock=clock)
    scheduler.start()
    try:
        wait_for(lambda: len(backups_of(memory_store)) == 2)
    finally:
        assert scheduler.stop(timeout=10)
    assert backups_of(memory_store)[0]["created_at_unix_secs"] == NOW + 86_400
    assert memory_store.get_bytes(f"{backup_prefix('fresh', 'production', 'la')}index.json") == fresh_before
    assert not any(k.startswith(backup_prefix("off", "production", "la")) for k in memory_store.objects)


def test_restoring_does_not_push_the_next_backup_a_period_away(
        paths: ServerPaths, memory_store: MemoryStore) -> None:
    clock = Clock()
    service = PolicyService(paths, "la", store_factory=lambda b: memory_store, clock=clock, every=HOUR)
    first = service.backup_now(APP, binding())
    clock.now = NOW + 50 * 60
    reply = service.restore_backup(APP, first["id"])
    assert reply.extra["safety_backup"]["status"] == "kept"
    assert service.safety.wait(APP, 20)  # the kept tree uploads in the background
    assert [b["extras"]["reason"] for b in backups_of(memory_store)] == ["pre-restore", "manual"]
    clock.now = NOW + HOUR
    assert Scheduler(service, clock=clock).run_once()[0].created_at_unix_secs == NOW + HOUR
    kept = service.safety.kept.get(APP)
    assert kept is not None and kept.record.upload == "verified"
    assert kept.record.backup_id in {b["id"] for b in backups_of(memory_store)}


def test_after_long_downtime_an_app_is_backed_up_once_not_once_per_missed_period(
        paths: ServerPaths, memory_store: MemoryStore) -> None:
    clock = Clock(NOW - 10 * 86_400)
    service = PolicyService(paths, "la", store_factory=lambda b: memory_store, clock=clock, every=900)
    service.backup_now(APP, binding())
    clock.now = NOW  # the server was down for ten days: 960 periods of 15 minutes went by
    scheduler = Scheduler(service, interval=0.01, clock=clock)
    scheduler.start()
    try:
        wait_for(lambda: len(backups_of(memory_store)) == 2)
        checks = service.checks
        wait_for(lambda: service.checks >= checks + 20)  # twenty more checks find nothing due
    finally:
        assert scheduler.stop(timeout=10)
    assert [b["created_at_unix_secs"] for b in backups_of(memory_store)] == [NOW, NOW - 10 * 86_400]
    again = Scheduler(service, clock=clock)
    clock.now = NOW + 899
    assert again.run_once() == []
    clock.now = NOW + 900
    assert [b.created_at_unix_secs for b in again.run_once()] == [NOW + 900]


def test_two_backups_of_one_app_never_overlap_and_other_apps_go_on(paths: ServerPaths) -> None:
    store = GatedStore()
    clock = Clock()
    service = PolicyService(paths, "la", store_factory=lambda b: store, clock=clock, every=900)
    service.backup_now(APP, binding())
    service.backup_now("other/production", binding())
    store.gated.add(PREFIX)
    clock.now = NOW + 900  # both apps are due, and stay due while demo's backup hangs
    scheduler = Scheduler(service, interval=0.01, clock=clock)
    scheduler.start()
    try:
        assert store.waiting.wait(10)
        wait_for(lambda: len(backups_of(store, backup_prefix("other", "production", "la"))) == 2)
        checks = service.checks
        wait_for(lambda: service.checks >= checks + 20)  # the scheduler keeps checking meanwhile
        assert scheduler.busy(APP)
        with pytest.raises(BusyError, match=f"^{BUSY}$"):
            service.backup_now(APP, None)  # and a client is refused by the app lock
        store.release.set()
        wait_for(lambda: len(backups_of(store)) == 2)
    finally:
        store.release.set()
        assert scheduler.stop(timeout=10)
    assert service.most_at_once == {APP: 1, "other/production": 1}


def test_stop_waits_for_the_backup_in_progress(paths: ServerPaths) -> None:
    store = GatedStore()
    service = PolicyService(paths, "la", store_factory=lambda b: store, clock=lambda: NOW, every=900)
    service.state.save(APP, AppState(backup=binding()))
    store.gated.add(PREFIX)
    scheduler = Scheduler(service, interval=0.01, clock=lambda: NOW)
    scheduler.start()
    assert store.waiting.wait(10)
    assert scheduler.stop(timeout=0.05) is False
    store.release.set()
    assert scheduler.stop(timeout=10) is True
    assert len(backups_of(store)) == 1


def test_busy_apps_are_tried_at_the_next_check_and_failures_back_off(
        paths: ServerPaths, memory_store: MemoryStore, caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    service = BackupService(paths, "la", store_factory=lambda b: memory_store, clock=clock)
    service.deploy(APP, None, None)
    service.backup_now("other/production", binding())
    service.state.save(APP, service.state.load(APP).with_backup(binding()))  # type: ignore[union-attr]
    scheduler = Scheduler(service, interval=60, clock=clock, retry_first=300, retry_max=900)
    caplog.set_level(logging.INFO, logger="tako_backups.server.scheduler")
    with service.locks.hold(APP):
        assert scheduler.run_once() == []  # demo busy, other fresh
    assert caplog.messages == ["scheduled backup of demo/production skipped: a backup or restore is running"]
    clock.now += 60
    memory_store.fail_puts.add(".enc")
    assert scheduler.run_once() == []  # demo's upload fails: logged, no exception
    assert caplog.messages[-1].startswith("scheduled backup of demo/production failed: ")
    assert caplog.messages[-1].endswith("(next try in 300s)")
    memory_store.fail_puts.clear()
    clock.now += 299
    caplog.clear()
    assert scheduler.run_once() == [] and caplog.messages == []  # held back, not even checked
    clock.now += 1
    memory_store.fail_puts.add(".enc")
    assert scheduler.run_once() == []
    assert caplog.messages[-1].endswith("(next try in 600s)")  # the delay doubles...
    clock.now += 600
    assert scheduler.run_once() == []
    assert caplog.messages[-1].endswith("(next try in 900s)")  # ...up to retry_max
    memory_store.fail_puts.clear()
    clock.now += 900
    taken = scheduler.run_once()
    assert [(b.app, b.environment) for b in taken] == [("demo", "production")]

    def unreachable(app: str, now: int) -> bool:
        raise StorageError("Cannot connect to storage endpoint http://127.0.0.1:9.")

    service.is_due = unreachable  # type: ignore[method-assign]
    clock.now += 86_400
    assert scheduler.run_once() == []
    assert set(caplog.messages[-2:]) == {
        f"could not check the backup of {app}: Cannot connect to storage endpoint http://127.0.0.1:9. "
        "(next try in 300s)" for app in (APP, "other/production")}


def test_closing_the_locks_waits_for_running_work_and_refuses_new_work() -> None:
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
