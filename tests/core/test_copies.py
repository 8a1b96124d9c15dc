"""The second copy through the core: one stream into two stores, a copy that fails or stalls
without hurting the primary, a streamed sync that checks SHA-256, and reads that fall back."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tako_backups.core import catalog, layout
from tako_backups.core.copies import (
    COPY,
    PRIMARY,
    CopyFeed,
    Place,
    copy_backup,
    first_working,
    missing_backups,
)
from tako_backups.core.pipeline import restore_into
from tako_backups.errors import ConfigError, IntegrityError, NotFoundError, ObjectNotFound, StorageError
from tako_backups.models import BackupInfo, BackupKey
from tako_backups.policy import BackupPolicy
from tako_backups.storage.memory import MemoryStore, MemoryWriter
from tests.support.backups import take_backup

from .treecmp import describe

PREFIX = layout.backup_prefix("demo", "production", "la")
NOW = 1_800_000_000


def take(primary: MemoryStore, copy: Any, root: Path, work: Path, key: BackupKey, now: int = NOW,
         **kw: Any) -> Any:
    return take_backup(primary, root, key, work=work, now=now, copy_to=copy, **kw)


class FailingWriter(MemoryWriter):
    """A writer whose ``write`` fails once ``limit`` bytes went through (an S3 that went away)."""

    def __init__(self, store: MemoryStore, key: str, limit: int) -> None:
        super().__init__(store, key)
        self.limit, self.seen = limit, 0

    def write(self, data: bytes | memoryview) -> int:
        self.seen += len(data)
        if self.seen > self.limit:
            raise StorageError(f"Upload of '{self._key}' failed: the copy's endpoint went away.")
        return super().write(data)


class FailingStore(MemoryStore):
    def __init__(self, limit: int = 0) -> None:
        super().__init__()
        self.limit = limit

    def open_writer(self, key: str, expected_size: int | None = None) -> MemoryWriter:
        return FailingWriter(self, key, self.limit)


class StuckWriter(MemoryWriter):
    """A writer that hangs (a copy endpoint that accepts connections and never answers)."""

    def __init__(self, store: MemoryStore, key: str, release: threading.Event) -> None:
        super().__init__(store, key)
        self.release = release

    def write(self, data: bytes | memoryview) -> int:
        self.release.wait()
        return super().write(data)


class StuckStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def open_writer(self, key: str, expected_size: int | None = None) -> MemoryWriter:
        return StuckWriter(self, key, self.release)


def test_one_stream_lands_in_both_stores_with_their_own_manifest_and_index(
        dataset: Path, tmp_path: Path, key: BackupKey) -> None:
    primary, copy = MemoryStore(), MemoryStore()
    result = take(primary, copy, dataset, tmp_path / "work", key)
    info = result.info
    assert result.copy is not None and (result.copy.ok, result.copy.error) == (True, None)
    assert copy.objects[info.archive_key] == primary.objects[info.archive_key]
    assert json.loads(copy.objects[info.manifest_key]) == json.loads(primary.objects[info.manifest_key])
    for store in (primary, copy):
        index = json.loads(store.objects[f"{PREFIX}index.json"])
        assert index["version"] == 1 and [b["id"] for b in index["backups"]] == [info.id]
    tree = restore_into(copy, info, [key], tmp_path / "staging").tree  # the copy restores alone
    assert describe(tree / "app/uploads") == describe(dataset / "app/uploads")
    assert list(copy.list_uploads("")) == []


def test_a_copy_that_fails_mid_stream_never_fails_the_primary(dataset: Path, tmp_path: Path,
                                                              key: BackupKey) -> None:
    primary, copy = MemoryStore(), FailingStore(limit=1 << 20)
    result = take(primary, copy, dataset, tmp_path / "work", key)
    assert result.copy is not None and not result.copy.ok
    assert "the copy's endpoint went away" in (result.copy.error or "")
    assert [b.id for b in catalog.read_index(primary, PREFIX).backups] == [result.info.id]
    restore_into(primary, result.info, [key], tmp_path / "staging")
    assert copy.objects == {} and list(copy.list_uploads("")) == []  # nothing half-written


def test_a_copy_that_stalls_is_dropped_after_the_stall_timeout(dataset: Path, tmp_path: Path,
                                                               key: BackupKey,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tako_backups.core.copies.STALL_TIMEOUT", 0.5)
    primary, copy = MemoryStore(), StuckStore()
    started = time.monotonic()
    result = take(primary, copy, dataset, tmp_path / "work", key)
    assert time.monotonic() - started < 10
    assert result.copy is not None and not result.copy.ok
    assert result.copy.error == "The copy's upload did not finish within 0.5 s."  # 3 MiB fit the queue
    assert catalog.read_index(primary, PREFIX).backups == [result.info]
    copy.release.set()  # the hung request returns: the copy's thread aborts its upload
    deadline = time.monotonic() + 5
    while list(copy.list_uploads("")) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert copy.objects == {} and list(copy.list_uploads("")) == []


def test_a_failed_backup_leaves_nothing_on_the_copy(tmp_path: Path, key: BackupKey) -> None:
    primary, copy = MemoryStore(), MemoryStore()
    primary.fail_puts.add(".json")  # the primary's manifest cannot be written
    root = tmp_path / "data"
    (root / "app").mkdir(parents=True)
    (root / "app" / "f.txt").write_text("hello\n")
    with pytest.raises(StorageError):
        take(primary, copy, root, tmp_path / "work", key)
    time.sleep(0.1)
    assert copy.objects == {} and list(copy.list_uploads("")) == []
    assert primary.objects == {}


def test_the_copy_keeps_the_same_tiers(tmp_path: Path, key: BackupKey) -> None:
    primary, copy = MemoryStore(), MemoryStore()
    root = tmp_path / "data"
    (root / "app").mkdir(parents=True)
    (root / "app" / "f.txt").write_text("x")
    policy = BackupPolicy(every=3_600, keep_last=2)
    ids = [take(primary, copy, root, tmp_path / "work", key, now=NOW + n * 3_600, policy=policy).info.id
           for n in range(5)]
    for store in (primary, copy):
        assert [b.id for b in catalog.read_index(store, PREFIX).backups] == ids[::-1][:3]  # last 2 + floor 3
        assert sorted(k for k in store.objects if k.endswith(".tar.zst.enc")) == sorted(
            layout.archive_key(PREFIX, i) for i in ids[2:])


def test_sync_streams_what_the_copy_lacks_and_checks_sha256(dataset: Path, tmp_path: Path,
                                                            key: BackupKey) -> None:
    primary, copy = MemoryStore(), MemoryStore()
    infos = [take(primary, None, dataset, tmp_path / "work", key, now=NOW + n).info for n in range(3)]
    newest_first = infos[::-1]
    assert missing_backups(newest_first, copy, PREFIX) == newest_first
    rule = BackupPolicy(retention_days=30)
    copy_backup(primary, copy, PREFIX, newest_first[0], policy=rule, now=NOW + 3)
    assert missing_backups(newest_first, copy, PREFIX) == newest_first[1:]

    damaged = bytearray(primary.objects[infos[1].archive_key])
    damaged[100] ^= 0xFF
    primary.objects[infos[1].archive_key] = bytes(damaged)
    with pytest.raises(IntegrityError, match="checksum did not match"):
        copy_backup(primary, copy, PREFIX, infos[1], policy=rule, now=NOW + 3)
    assert infos[1].archive_key not in copy.objects and list(copy.list_uploads("")) == []
    del primary.objects[infos[0].archive_key]
    with pytest.raises(ObjectNotFound):
        copy_backup(primary, copy, PREFIX, infos[0], policy=rule, now=NOW + 3)

    copy.objects[newest_first[0].archive_key] = b"short"  # a copy object of the wrong size is missing
    assert missing_backups(newest_first, copy, PREFIX) == newest_first


def test_first_working_falls_back_on_missing_unreachable_and_damaged_only() -> None:
    places = [Place(PRIMARY, MemoryStore(), "main"), Place(COPY, MemoryStore(), "spare")]
    calls: list[str] = []

    def fail_with(error: Exception):  # type: ignore[no-untyped-def]
        def action(place: Place) -> str:
            calls.append(place.name)
            if place.name == PRIMARY:
                raise error
            return place.bucket
        return action

    for error in (StorageError("unreachable"), NotFoundError("gone"), IntegrityError("checksum")):
        found = first_working(places, fail_with(error))
        assert (found.value, found.used.name, found.fell_back) == ("spare", COPY, True)
        assert found.source_fields() == {"source": "copy", "source_bucket": "spare",
                                         "fallback_reason": f"primary (bucket main): {error}"}
    calls.clear()
    with pytest.raises(ConfigError):  # not a reason to read elsewhere
        first_working(places, fail_with(ConfigError("bad key")))
    assert calls == [PRIMARY]
    ok = first_working(places, lambda place: place.bucket)
    assert ok.source_fields() == {"source": "primary", "source_bucket": "main"}

    def always(place: Place) -> str:
        raise NotFoundError(f"not in {place.bucket}")

    with pytest.raises(NotFoundError, match=r"^Every copy failed: primary \(bucket main\): not in main; "
                                            r"copy \(bucket spare\): not in spare$"):
        first_working(places, always)


def test_copy_feed_counts_what_it_committed(tmp_path: Path) -> None:
    store = MemoryStore()
    feed = CopyFeed(store, f"{PREFIX}b1-AbCdEf12.tar.zst.enc")
    sink = feed.tee(MemoryStore().open_writer("x"))
    for _ in range(3):
        sink.write(b"a" * 1000)
    info = BackupInfo.from_dict({
        "id": "b1-AbCdEf12", "app": "demo", "environment": "production", "server": "la",
        "created_at_unix_secs": 1, "size_bytes": 2999, "sha256_hex": "0" * 64,
        "archive_key": f"{PREFIX}b1-AbCdEf12.tar.zst.enc", "manifest_key": f"{PREFIX}b1-AbCdEf12.json",
        "encryption": {"algorithm": "aes-256-gcm", "key_id": "backup-key-0123456789abcdef",
                       "nonce_base64": "AAAAAAAAAAAAAAAA", "tag_base64": "A" * 22 + "=="}})
    outcome = feed.finish(info, prefix=PREFIX, policy=BackupPolicy(), now=NOW)
    assert not outcome.ok
    assert outcome.error == "The copy of b1-AbCdEf12 got 3000 bytes, not the 2999 of the backup."
    assert store.objects == {}  # the mismatched object is removed again


def test_a_copy_whose_queue_stays_full_is_dropped_and_the_writer_goes_on() -> None:
    copy = StuckStore()
    feed = CopyFeed(copy, f"{PREFIX}b1-AbCdEf12.tar.zst.enc", depth=1, stall_timeout=0.3)
    primary = MemoryStore().open_writer("x")
    sink = feed.tee(primary)
    started = time.monotonic()
    for _ in range(20):
        sink.write(b"z" * 4096)
    assert time.monotonic() - started < 3  # one stall, then the copy is skipped
    assert feed.error == "The copy's bucket took no data for 0.3 s."
    assert primary.commit() == 20 * 4096
    copy.release.set()
