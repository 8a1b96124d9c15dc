"""Format 2 through the commands: backups in format 2 (asked for, chosen from the data size with a
test-only lower ceiling, and restarted from format 1 when the ceiling trips), read back by every
reader (restore, verify, drill, reencrypt), on the in-memory store and SeaweedFS."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

import tako_backups.core.formats as formats
from tako_backups.core import catalog, format_v2, layout
from tako_backups.core.drill import run_drill
from tako_backups.core.format_v2 import ALGORITHM_V2, TRAILER_SIZE
from tako_backups.core.formats import open_tar_stream, plan_format
from tako_backups.core.pipeline import backup, restore_into
from tako_backups.core.rekey import reencrypt_backup
from tako_backups.core.verify import verify_backup
from tako_backups.errors import FormatError, IntegrityError, StorageError
from tako_backups.models import ALGORITHM, BackupInfo, BackupKey, EncryptionInfo
from tako_backups.storage.memory import MemoryStore

from .treecmp import describe
from .v2_helpers import split

PREFIX = layout.backup_prefix("demo", "production", "la.1")
SKIP = ("tako/channels.sqlite", "app/app.db-wal", "app/app.db-shm", "tako/workflows.sqlite-wal",
        "tako/workflows.sqlite-shm")
TAKO_FIELDS = ["id", "app", "environment", "server", "created_at_unix_secs", "size_bytes", "sha256_hex",
               "archive_key", "manifest_key", "encryption"]
CHUNK = 64 << 10


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """64 KiB chunks, so the 3 MiB dataset makes dozens of them."""
    monkeypatch.setattr(format_v2, "DEFAULT_CHUNK_SIZE", CHUNK)


def _backup(store, root: Path, work: Path, key: BackupKey, **kw):  # type: ignore[no-untyped-def]
    kw.setdefault("retention_days", 30)
    return backup(store, data_root=root, work_root=work, app="demo", env="production",
                  server="la.1", key=key, **kw)


def _named_objects(store) -> set[str]:  # type: ignore[no-untyped-def]
    index = catalog.read_index(store, PREFIX)
    return {layout.index_key(PREFIX)} | {k for b in index.backups for k in (b.archive_key, b.manifest_key)}


def assert_v2_manifest(store, info: BackupInfo) -> None:  # type: ignore[no-untyped-def]
    """A format-2 manifest in Tako's shape: every field Tako needs, our layout in extras."""
    stored = json.loads(store.get_bytes(info.manifest_key))
    assert list(stored)[:len(TAKO_FIELDS)] == TAKO_FIELDS
    assert sorted(stored["encryption"]) == ["algorithm", "key_id", "nonce_base64", "tag_base64"]
    assert stored["encryption"]["algorithm"] == ALGORITHM_V2
    assert len(base64.b64decode(stored["encryption"]["nonce_base64"])) == 32
    assert len(base64.b64decode(stored["encryption"]["tag_base64"])) == 16
    assert info.archive_key == PREFIX + info.id + ".tar.zst.enc"
    extras = stored["extras"]
    assert extras["format"] == 2 and extras["chunk_size"] == CHUNK and extras["chunk_count"] > 10
    body = store.get_bytes(info.archive_key)
    assert len(body) == stored["size_bytes"]
    assert extras["footer_offset"] + extras["footer_length"] + TRAILER_SIZE == len(body)
    assert BackupInfo.from_json(store.get_bytes(info.manifest_key)) == info


@pytest.mark.parametrize("store_fixture", ["memory_store", "seaweed_store"])
def test_format_2_when_asked_round_trips_through_every_reader(
        request: pytest.FixtureRequest, store_fixture: str, dataset: Path, tmp_path: Path,
        key: BackupKey, other_key: BackupKey) -> None:
    store = request.getfixturevalue(store_fixture)
    info = _backup(store, dataset, tmp_path / "work", key, archive_format=2).info
    assert_v2_manifest(store, info)
    assert catalog.read_index(store, PREFIX).backups == [info]
    assert list((tmp_path / "work").iterdir()) == []

    tree = restore_into(store, info, [key], tmp_path / "staging").tree
    assert describe(tree) == describe(dataset, skip=SKIP)
    with store.open_read(info.archive_key) as body:
        report = verify_backup(body, info, [key], tmp_path / "verify")
    assert (report.files, report.bytes) == (info.extras.files, info.extras.bytes)  # type: ignore[union-attr]
    assert report.sqlite_files == ["app/app.db", "tako/workflows.sqlite"]
    drill = run_drill(store, info, [key], tmp_path / "drill")
    assert drill.ok, drill.message

    moved = reencrypt_backup(store, PREFIX, info, [key], other_key)
    assert moved.encryption.algorithm == ALGORITHM_V2 and moved.encryption.key_id == other_key.id
    assert moved.extras is not None and moved.extras.reason == "reencrypt" and moved.extras.format == 2
    assert moved.encryption.nonce_base64 != info.encryption.nonce_base64  # a new salt, a new key
    assert_v2_manifest(store, moved)
    again = restore_into(store, moved, [other_key], tmp_path / "staging2").tree
    assert describe(again) == describe(dataset, skip=SKIP)
    wrong = BackupKey(other_key.id, key.key)  # the id the manifest names, other bytes
    with pytest.raises(IntegrityError, match="failed authentication"):
        restore_into(store, moved, [wrong], tmp_path / "staging3")
    assert not (tmp_path / "staging3").exists()


def test_format_2_is_chosen_when_the_data_could_pass_the_ceiling(
        monkeypatch: pytest.MonkeyPatch, memory_store: MemoryStore, dataset: Path, tmp_path: Path,
        key: BackupKey) -> None:
    data, members = formats.measure_tree(dataset)
    bound = format_v2.archive_size_bound(data, members)
    monkeypatch.setattr(format_v2, "V1_CEILING", bound)
    assert plan_format(dataset).format == 1  # at the ceiling: format 1 still fits
    monkeypatch.setattr(format_v2, "V1_CEILING", bound - 1)
    assert plan_format(dataset).format == 2
    result = _backup(memory_store, dataset, tmp_path / "work", key)
    assert result.info.encryption.algorithm == ALGORITHM_V2
    assert_v2_manifest(memory_store, result.info)
    assert memory_store.expected_sizes[result.info.archive_key] == bound
    tree = restore_into(memory_store, result.info, [key], tmp_path / "staging").tree
    assert describe(tree) == describe(dataset, skip=SKIP)


def test_format_1_stays_the_default_and_asking_for_1_keeps_it(
        memory_store: MemoryStore, dataset: Path, tmp_path: Path, key: BackupKey) -> None:
    for asked in (None, 1):
        info = _backup(memory_store, dataset, tmp_path / f"work{asked}", key, archive_format=asked).info
        assert info.encryption.algorithm == ALGORITHM
        assert info.extras is not None and info.extras.format is None
        assert "format" not in json.loads(memory_store.get_bytes(info.manifest_key))["extras"]


@pytest.mark.parametrize("store_fixture", ["memory_store", "seaweed_store"])
def test_a_format_1_backup_that_passes_the_ceiling_starts_over_in_format_2(
        request: pytest.FixtureRequest, store_fixture: str, monkeypatch: pytest.MonkeyPatch,
        dataset: Path, tmp_path: Path, key: BackupKey) -> None:
    """The walk saw less than was archived (files grew): format 1 trips the guard, its upload
    and snapshots go, and the same backup is written again in format 2."""
    store = request.getfixturevalue(store_fixture)
    copy = MemoryStore()
    monkeypatch.setattr(format_v2, "V1_CEILING", 256 << 10)
    monkeypatch.setattr(formats, "measure_tree", lambda root: (0, 2))
    tripped: list[int] = []
    real_guard = formats.CeilingGuard

    class CountingGuard(real_guard):  # type: ignore[misc, valid-type]
        def write(self, data: bytes | memoryview) -> int:
            try:
                return super().write(data)
            except format_v2.V1CeilingReached:
                tripped.append(self.written)
                raise

    monkeypatch.setattr(formats, "CeilingGuard", CountingGuard)
    result = _backup(store, dataset, tmp_path / "work", key, copy_to=copy)
    assert tripped and tripped[0] <= 256 << 10
    info = result.info
    assert info.encryption.algorithm == ALGORITHM_V2 and info.size_bytes > 256 << 10
    assert_v2_manifest(store, info)
    assert {o.key for o in store.list(PREFIX)} == _named_objects(store)
    assert list(store.list_uploads(PREFIX)) == []
    assert list((tmp_path / "work").iterdir()) == []
    assert result.copy is not None and result.copy.ok, result.copy
    assert copy.get_bytes(info.archive_key) == store.get_bytes(info.archive_key)
    assert set(copy.objects) == _named_objects(copy) and list(copy.list_uploads(PREFIX)) == []
    tree = restore_into(store, info, [key], tmp_path / "staging").tree
    assert describe(tree) == describe(dataset, skip=SKIP)


def test_a_failed_format_2_backup_leaves_nothing(
        memory_store: MemoryStore, dataset: Path, tmp_path: Path, key: BackupKey) -> None:
    memory_store.fail_puts.add(".json")
    with pytest.raises(StorageError, match="injected"):
        _backup(memory_store, dataset, tmp_path / "work", key, archive_format=2)
    memory_store.fail_puts.clear()
    assert set(memory_store.objects) <= {layout.index_key(PREFIX)}
    assert list(memory_store.list_uploads(PREFIX)) == []


@pytest.mark.parametrize("where", ["chunk", "footer", "trailer", "swap"])
def test_a_tampered_format_2_archive_is_refused_and_staging_removed(
        where: str, memory_store: MemoryStore, dataset: Path, tmp_path: Path, key: BackupKey) -> None:
    info = _backup(memory_store, dataset, tmp_path / "work", key, archive_format=2).info
    obj = memory_store.objects[info.archive_key]
    parts = split(obj)
    if where == "chunk":
        record = bytearray(parts.records[3])
        record[100] ^= 1
        bad = parts.join(parts.records[:3] + [bytes(record)] + parts.records[4:])
    elif where == "footer":
        footer = bytearray(parts.footer)
        footer[5] ^= 1
        bad = parts.join(footer=bytes(footer))
    elif where == "trailer":
        bad = obj[:-TRAILER_SIZE] + parts.trailer_for(parts.records[:-1])
    else:  # two chunks swapped: same size, so only the tags can tell
        records = list(parts.records)
        records[2], records[3] = records[3], records[2]
        bad = parts.join(records)
    memory_store.objects[info.archive_key] = bad
    with pytest.raises(IntegrityError):
        restore_into(memory_store, info, [key], tmp_path / "staging")
    assert not (tmp_path / "staging").exists()
    with pytest.raises(IntegrityError):
        verify_backup(memory_store.open_read(info.archive_key), info, [key], tmp_path / "verify")
    assert not run_drill(memory_store, info, [key], tmp_path / "drill").ok


def test_unknown_algorithms_are_refused_with_takos_text(memory_store: MemoryStore, dataset: Path,
                                                        tmp_path: Path, key: BackupKey) -> None:
    info = _backup(memory_store, dataset, tmp_path / "work", key).info
    enc = info.encryption
    odd = BackupInfo(**{**info.__dict__, "encryption": EncryptionInfo(enc.key_id, enc.nonce_base64,
                                                                      enc.tag_base64, "chacha20")})
    with pytest.raises(FormatError) as refused:
        open_tar_stream(memory_store.open_read(info.archive_key), odd, key)
    assert str(refused.value) == "Unsupported backup encryption algorithm: chacha20"
    with pytest.raises(FormatError, match="^Unsupported backup encryption algorithm: chacha20$"):
        reencrypt_backup(memory_store, PREFIX, odd, [key], key)
    with pytest.raises(FormatError, match="^Unsupported backup encryption algorithm: chacha20$"):
        restore_into(memory_store, odd, [key], tmp_path / "staging")
    assert not (tmp_path / "staging").exists()


def test_a_format_1_manifest_with_a_format_2_algorithm_is_refused(
        memory_store: MemoryStore, dataset: Path, tmp_path: Path, key: BackupKey) -> None:
    """A format-1 object under a manifest that claims format 2: the salt is malformed (12 bytes)."""
    info = _backup(memory_store, dataset, tmp_path / "work", key).info
    enc = info.encryption
    claimed = BackupInfo(**{**info.__dict__, "encryption": EncryptionInfo(
        enc.key_id, enc.nonce_base64, enc.tag_base64, ALGORITHM_V2)})
    with pytest.raises(IntegrityError, match="malformed nonce or tag"):
        restore_into(memory_store, claimed, [key], tmp_path / "staging")


def test_the_walk_bounds_what_the_backup_archives(memory_store: MemoryStore, dataset: Path,
                                                  tmp_path: Path, key: BackupKey) -> None:
    data, members = formats.measure_tree(dataset)
    result = _backup(memory_store, dataset, tmp_path / "work", key, archive_format=2)
    assert data >= result.stats.bytes and members >= result.stats.files
    assert format_v2.archive_size_bound(data, members) >= result.info.size_bytes


def test_the_walk_follows_no_link(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "big").write_bytes(b"x" * 100_000)
    root = tmp_path / "data"
    (root / "app").mkdir(parents=True)
    (root / "app" / "a").write_bytes(b"y" * 10)
    (root / "app" / "link").symlink_to(outside / "big")
    (root / "app" / "dirlink").symlink_to(outside)
    (root / "tako").symlink_to(outside)  # a top folder that is a link is not walked
    assert formats.measure_tree(root) == (10, 4)  # app/, a, link, dirlink


def test_manifest_extras_take_the_format_2_layout_and_nothing_else(
        memory_store: MemoryStore, dataset: Path, tmp_path: Path, key: BackupKey) -> None:
    info = _backup(memory_store, dataset, tmp_path / "work", key, archive_format=2).info
    stored = json.loads(memory_store.get_bytes(info.manifest_key))
    assert list(stored["extras"]) == ["files", "bytes", "sqlite_files", "reason", "format", "chunk_size",
                                      "chunk_count", "footer_offset", "footer_length"]
    with pytest.raises(FormatError, match="^Backup manifest extras field 'format' must be 1 or 2.$"):
        BackupInfo.from_dict({**stored, "extras": {**stored["extras"], "format": 3}})
    with pytest.raises(FormatError, match="field 'chunk_size' has the wrong type"):
        BackupInfo.from_dict({**stored, "extras": {**stored["extras"], "chunk_size": "4096"}})
    with pytest.raises(FormatError, match="unknown field 'salt'"):
        BackupInfo.from_dict({**stored, "extras": {**stored["extras"], "salt": 1}})
