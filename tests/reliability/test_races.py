"""Races: two clients and the scheduler at once, restore during a backup, writers without a lock.

Within one server the app lock serializes (the losers get the busy message); on the bucket the
index is merged, so even writers that share a prefix without any lock never drop an entry.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tako_backups.core import catalog, layout
from tako_backups.models import BackupInfo, BackupKey
from tako_backups.remote.signing import FileSigner
from tako_backups.server.app import create_app
from tako_backups.server.auth import RequestAuth
from tako_backups.server.cli import authorize_key
from tako_backups.server.paths import ServerPaths
from tako_backups.server.scheduler import Scheduler
from tako_backups.server.service import BackupService
from tako_backups.storage.memory import MemoryStore
from tests.reliability.checks import (
    INDEX_CHECKED,
    SLOWDOWNS,
    figures_so_far,
    file_digests,
    pending_uploads,
    sound_index,
)
from tests.reliability.faultproxy import Fault, FaultProxy
from tests.server.helpers import APP, BUSY, binding, body, signed, storage
from tests.support.asgi import AsgiClient
from tests.support.backups import take_backup
from tests.support.s3_servers import SeaweedFS

pytestmark = pytest.mark.slow

PREFIX = layout.backup_prefix("demo", "production", "la")
DAY = 86_400
BUSY_REPLY = {"status": "error", "message": BUSY}


class Rig:
    """An in-process tako-server (service, signed RPC app, scheduler) on SeaweedFS via the proxy."""

    def __init__(self, root: Path, signer: FileSigner, store: Any, tree: Path) -> None:
        self.paths = ServerPaths(root)
        self.paths.prepare()
        authorize_key(Path(f"{signer.path}.pub"), root)
        self.signer = signer
        self.now = time.time()
        self.service = BackupService(self.paths, "la", store_factory=lambda b: store, clock=lambda: self.now)
        self.http = AsgiClient(create_app(self.service, RequestAuth.from_file(self.paths.authorized_keys)))
        self.scheduler = Scheduler(self.service, clock=lambda: self.now)
        data = self.paths.ensure_data_dir("demo", "production")
        for path in sorted(tree.rglob("*")):
            target = data / path.relative_to(tree)
            if path.is_dir():
                target.mkdir(exist_ok=True)
            else:
                target.write_bytes(path.read_bytes())

    def call(self, command: str, **fields: Any) -> tuple[int, dict[str, Any]]:
        data = body(command, **fields)
        reply = self.http.post("/rpc", content=data, headers=signed(self.signer, data))
        return reply.status_code, reply.json()


def all_at_once(*calls: Callable[[], Any]) -> list[Any]:
    """Run ``calls`` in threads released together; returns each result (or the exception)."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = calls[i]()
        except Exception as exc:  # noqa: BLE001 - returned for the assertions
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


def test_two_clients_and_the_scheduler_at_once_are_serialized_and_nothing_is_lost(
    tmp_path: Path, signer: FileSigner, seaweedfs: SeaweedFS, proxy: FaultProxy, bucket: str,
    proxied_store: Callable[..., Any], s3: Any, small_tree: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    rig = Rig(tmp_path / "tako", signer, proxied_store(), small_tree)
    settings = binding(storage(bucket=bucket, endpoint=proxy.endpoint, access_key=seaweedfs.access_key,
                               secret_key=seaweedfs.secret_key))
    assert rig.call("backup_now", app=APP, backup=settings.to_dict())[0] == 200
    caplog.set_level("INFO", logger="tako_backups.server.scheduler")
    skipped = "scheduled backup of demo/production skipped: a backup or restore is running"
    # Each backup's archive upload takes 0.8 s, so the three callers overlap.
    proxy.add(Fault("PutObject", "delay", key=r"\.tar\.zst\.enc$", seconds=0.8, times=None))
    completed: list[str] = [json.loads(s3.get_object(Bucket=bucket, Key=PREFIX + "index.json")["Body"].read())
                            ["backups"][0]["id"]]
    refused = 0
    for _ in range(4):
        rig.now += DAY  # the app is due for the scheduler each round
        results = all_at_once(lambda: rig.call("backup_now", app=APP, backup=None),
                              lambda: rig.call("backup_now", app=APP, backup=None),
                              rig.scheduler.run_once)
        clients, scheduled = results[:2], results[2]
        assert not any(isinstance(r, Exception) for r in results), results
        won = [data["data"]["id"] for status, data in clients if status == 200]
        won += [info.id for info in scheduled]
        busy = [r for r in clients if r == (400, BUSY_REPLY)]
        assert len(won) == 1, results  # exactly one of the three ran; the others were refused
        assert len(busy) + len(won) - len(scheduled) == 2
        scheduler_refused = caplog.messages.count(skipped)
        caplog.clear()
        assert len(scheduled) + scheduler_refused == 1  # the scheduler found the app due and tried
        refused += len(busy) + scheduler_refused
        completed += won
    index = sound_index(s3, bucket, PREFIX)
    assert sorted(b.id for b in index.backups) == sorted(completed)
    assert len(completed) == 5 and refused == 8
    assert pending_uploads(s3, bucket) == []
    assert figures_so_far(proxy) == {INDEX_CHECKED: 5, SLOWDOWNS: 4}  # each winner's archive upload


def test_restore_and_backup_while_a_backup_runs_are_refused(
    tmp_path: Path, signer: FileSigner, seaweedfs: SeaweedFS, proxy: FaultProxy, bucket: str,
    proxied_store: Callable[..., Any], s3: Any, small_tree: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    rig = Rig(tmp_path / "tako", signer, proxied_store(), small_tree)
    settings = binding(storage(bucket=bucket, endpoint=proxy.endpoint, access_key=seaweedfs.access_key,
                               secret_key=seaweedfs.secret_key))
    status, first = rig.call("backup_now", app=APP, backup=settings.to_dict())
    assert status == 200
    live = rig.paths.data_dir("demo", "production")
    (live / "app" / "after-first.txt").write_text("written after the first backup\n")
    rig.now += DAY  # due, so the scheduler tries too
    proxy.add(Fault("PutObject", "delay", key=r"\.tar\.zst\.enc$", seconds=1.5))
    running: dict[str, Any] = {}
    thread = threading.Thread(
        target=lambda: running.update(reply=rig.call("backup_now", app=APP, backup=None)))
    thread.start()
    try:
        proxy.wait_for("PutObject", r"\.tar\.zst\.enc$", count=2)
        assert rig.call("restore_backup", app=APP, backup_id=first["data"]["id"]) == (400, BUSY_REPLY)
        assert rig.call("backup_now", app=APP, backup=None) == (400, BUSY_REPLY)
        with caplog.at_level("INFO", logger="tako_backups.server.scheduler"):
            assert rig.scheduler.run_once() == []
        assert caplog.messages == [
            "scheduled backup of demo/production skipped: a backup or restore is running"]
    finally:
        thread.join(timeout=60)
    assert running["reply"][0] == 200
    assert (live / "app" / "after-first.txt").exists()  # the refused restore touched nothing
    index = sound_index(s3, bucket, PREFIX)
    assert [b.id for b in index.backups] == [running["reply"][1]["data"]["id"], first["data"]["id"]]
    code, restored = rig.call("restore_backup", app=APP, backup_id=first["data"]["id"])
    assert (code, restored["data"]) == (200, first["data"]) and restored["safety_backup"]["status"] == "kept"
    assert file_digests(live) == file_digests(small_tree)
    assert rig.service.safety.wait(APP, 60)  # the replaced tree uploads in the background
    assert figures_so_far(proxy) == {INDEX_CHECKED: 2, SLOWDOWNS: 1}


def run_core_backup(store: Any, tree: Path, work: Path, key: BackupKey, now: int) -> BackupInfo:
    return take_backup(store, tree, key, work=work, now=now).info


def test_writers_sharing_a_prefix_without_a_lock_never_lose_an_entry(
    proxy: FaultProxy, proxied_store: Callable[..., Any], s3: Any, bucket: str, small_tree: Path,
    tmp_path: Path, key: BackupKey,
) -> None:
    # Slow index reads and listings widen the read-merge-write window of every writer.
    proxy.add(Fault("GetObject", "delay", key=r"/index\.json$", seconds=0.05, times=None),
              Fault("ListObjectsV2", "delay", seconds=0.03, times=None))
    store = proxied_store()
    now = int(time.time())
    writers, rounds = 4, 3
    done: list[BackupInfo] = []

    def writer(n: int) -> list[BackupInfo]:
        return [run_core_backup(store, small_tree, tmp_path / f"w{n}", key, now + n * 10 + r)
                for r in range(rounds)]

    for result in all_at_once(*[lambda n=n: writer(n) for n in range(writers)]):
        assert not isinstance(result, Exception), result
        done += result
    index = sound_index(s3, bucket, PREFIX)
    assert sorted(b.id for b in index.backups) == sorted(b.id for b in done)
    assert len(index.backups) == writers * rounds
    assert len(proxy.ops("PutObject", r"/index\.json$")) >= writers * rounds
    slowed = len(proxy.ops("GetObject", r"/index\.json$")) + len(proxy.ops("ListObjectsV2"))
    assert figures_so_far(proxy) == {INDEX_CHECKED: writers * rounds, SLOWDOWNS: slowed}
    assert slowed >= 2 * writers * rounds  # every backup read the index and listed the prefix, slowly


class GatedStore(MemoryStore):
    """Writer A lists the prefix, then waits until writer B has finished before going on."""

    def __init__(self) -> None:
        super().__init__()
        self.b_done = threading.Event()
        self.a_index_writes = 0
        self._a_listed = False

    def list(self, prefix: str) -> Any:
        items = list(super().list(prefix))
        if threading.current_thread().name == "A" and not self._a_listed:
            self._a_listed = True
            assert self.b_done.wait(30)
        return iter(items)

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        if threading.current_thread().name == "A" and key.endswith("/index.json"):
            self.a_index_writes += 1
        super().put_bytes(key, data, content_type)


def test_a_stale_index_write_is_repaired_before_the_writer_returns(small_tree: Path, tmp_path: Path,
                                                                    key: BackupKey) -> None:
    store = GatedStore()
    results: dict[str, BackupInfo] = {}

    def a() -> None:
        results["a"] = run_core_backup(store, small_tree, tmp_path / "a", key, 1_800_000_000)

    def b() -> None:
        while not store._a_listed:
            time.sleep(0.005)
        results["b"] = run_core_backup(store, small_tree, tmp_path / "b", key, 1_800_000_001)
        store.b_done.set()

    threads = [threading.Thread(target=a, name="A"), threading.Thread(target=b, name="B")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    # A read the index before B wrote, so its first write dropped B; its next round put B back.
    assert store.a_index_writes == 2
    index = catalog.read_index(store, PREFIX)
    assert [x.id for x in index.backups] == [results["b"].id, results["a"].id]
    for info in index.backups:
        assert store.get_bytes(info.archive_key) and store.get_bytes(info.manifest_key)
