"""Backups and restores end to end through the core, on the in-memory store and SeaweedFS."""

from __future__ import annotations

import base64
import json
import sqlite3
import subprocess
import threading
from pathlib import Path

import pytest
from Crypto.Cipher import AES

from tako_backups.core import catalog, layout
from tako_backups.core.pipeline import restore_into
from tako_backups.errors import FormatError, KeyNotFoundError, ObjectNotFound, StorageError
from tako_backups.models import BackupKey
from tako_backups.storage.memory import MemoryStore
from tests.support.backups import take_backup

from .treecmp import describe

PREFIX = layout.backup_prefix("demo", "production", "la.1")


def _backup(store, root: Path, work: Path, key: BackupKey, **kw):  # type: ignore[no-untyped-def]
    kw.setdefault("server", "la.1")
    return take_backup(store, root, key, work=work, **kw)


@pytest.mark.parametrize("store_fixture", ["memory_store", "seaweed_store"])
def test_round_trip_of_generated_tree(
    request: pytest.FixtureRequest, store_fixture: str, dataset: Path, tmp_path: Path,
    key: BackupKey,
) -> None:
    store = request.getfixturevalue(store_fixture)
    result = _backup(store, dataset, tmp_path / "work", key)
    info = result.info
    assert info.archive_key == PREFIX + info.id + ".tar.zst.enc"
    assert info.manifest_key == PREFIX + info.id + ".json"
    assert json.loads(store.get_bytes(info.manifest_key)) == info.to_dict()
    index = catalog.read_index(store, PREFIX)
    assert [b.id for b in index.backups] == [info.id]
    assert store.head(info.archive_key).size == info.size_bytes
    assert list((tmp_path / "work").iterdir()) == []

    tree = restore_into(store, info, [key], tmp_path / "staging").tree
    skip = ("tako/channels.sqlite", "app/app.db-wal", "app/app.db-shm",
            "tako/workflows.sqlite-wal", "tako/workflows.sqlite-shm")
    assert describe(tree) == describe(dataset, skip=skip)
    assert not (tree / "tako/channels.sqlite").exists()
    assert (tree / "app/symlink-to-latest").is_symlink()
    assert (tree / "app/symlink-to-latest").readlink() == (dataset / "app/symlink-to-latest").readlink()
    assert result.stats.sqlite_files == 2


def test_peers_can_read_the_archive(memory_store: MemoryStore, dataset: Path, tmp_path: Path,
                                    key: BackupKey) -> None:
    """An independent AES-GCM, `zstd -d` and `tar -t` read what we wrote: Tako's bytes."""
    info = _backup(memory_store, dataset, tmp_path / "work", key).info
    enc = info.encryption
    cipher = AES.new(key.key, AES.MODE_GCM, nonce=base64.b64decode(enc.nonce_base64))
    plain = cipher.decrypt_and_verify(memory_store.objects[info.archive_key],
                                      base64.b64decode(enc.tag_base64))
    assert plain[:4] == b"\x28\xb5\x2f\xfd"
    (tmp_path / "a.tar.zst").write_bytes(plain)
    listing = subprocess.run(f"zstd -dc {tmp_path}/a.tar.zst | tar -tvf -", shell=True,
                             check=True, capture_output=True, text=True).stdout
    names = [line.split()[-1] if "->" not in line else line.split()[-3]
             for line in listing.splitlines()]
    assert names[:1] == ["app/"] and "tako/" in names
    assert "app/app.db" in names and "tako/workflows.sqlite" in names
    assert "tako/channels.sqlite" not in names
    assert not any(n.endswith(("-wal", "-shm")) for n in names)
    assert all(n.split("/")[0] in ("app", "tako") for n in names)
    assert any("symlink-to-latest -> uploads/" in line for line in listing.splitlines())
    frames = subprocess.run(["zstd", "-lv", str(tmp_path / "a.tar.zst")], capture_output=True,
                            text=True).stdout
    assert "# Zstandard Frames: 1" in frames


def test_backup_is_consistent_while_a_writer_commits(memory_store: MemoryStore, tmp_path: Path,
                                                     key: BackupKey) -> None:
    root = tmp_path / "data"
    (root / "app").mkdir(parents=True)
    (root / "tako").mkdir()
    db_path = root / "app" / "app.db"
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, payload TEXT)")
    conn.commit()
    stop = threading.Event()
    committed: list[int] = []

    def writer() -> None:
        w = sqlite3.connect(db_path, timeout=10)
        n = 0
        while not stop.is_set():
            n += 1
            w.execute("INSERT INTO t VALUES (?, ?)", (n, "x" * 2000))
            w.commit()
            committed.append(n)
        w.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while len(committed) < 200:
            threading.Event().wait(0.01)
        infos = [_backup(memory_store, root, tmp_path / "work", key).info for _ in range(3)]
    finally:
        stop.set()
        thread.join()
    for i, info in enumerate(infos):
        tree = restore_into(memory_store, info, [key], tmp_path / f"staging{i}").tree
        check = sqlite3.connect(tree / "app" / "app.db")
        assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        ids = [r[0] for r in check.execute("SELECT id FROM t ORDER BY id")]
        check.close()
        assert len(ids) >= 200
        assert ids == list(range(1, len(ids) + 1)), "restored rows are a prefix of the commits"
        assert len(ids) <= len(committed)


def test_restore_needs_the_key_the_manifest_names(memory_store: MemoryStore, dataset: Path,
                                                  tmp_path: Path, key: BackupKey,
                                                  other_key: BackupKey) -> None:
    info = _backup(memory_store, dataset, tmp_path / "work", key).info
    with pytest.raises(KeyNotFoundError, match=f"encrypted with key '{key.id}'"):
        restore_into(memory_store, info, [other_key], tmp_path / "staging")
    assert not (tmp_path / "staging").exists()
    tree = restore_into(memory_store, info, [other_key, key], tmp_path / "staging").tree
    assert (tree / "app" / "app.db").exists()


def test_missing_archive_object_is_reported(memory_store: MemoryStore, dataset: Path,
                                            tmp_path: Path, key: BackupKey) -> None:
    info = _backup(memory_store, dataset, tmp_path / "work", key).info
    memory_store.delete(info.archive_key)
    with pytest.raises(ObjectNotFound):
        restore_into(memory_store, info, [key], tmp_path / "staging")
    assert not (tmp_path / "staging").exists()


def test_failed_upload_leaves_nothing_on_the_bucket(memory_store: MemoryStore, dataset: Path,
                                                    tmp_path: Path, key: BackupKey) -> None:
    memory_store.fail_puts.add(".tar.zst.enc")
    with pytest.raises(StorageError):
        _backup(memory_store, dataset, tmp_path / "work", key)
    assert memory_store.objects == {}
    assert list((tmp_path / "work").iterdir()) == []


def test_retention_prunes_old_backups_in_tako_order(memory_store: MemoryStore, dataset: Path,
                                                    tmp_path: Path, key: BackupKey) -> None:
    day = 86_400
    now = 1_800_000_000
    oldest = _backup(memory_store, dataset, tmp_path / "w", key, now=now - 35 * day).info
    old = _backup(memory_store, dataset, tmp_path / "w", key, now=now - 34 * day).info
    floor = _backup(memory_store, dataset, tmp_path / "w", key, now=now - 33 * day).info
    edge = _backup(memory_store, dataset, tmp_path / "w", key, now=now - 30 * day).info
    memory_store.fail_deletes.add(old.manifest_key)  # delete errors are ignored
    new = _backup(memory_store, dataset, tmp_path / "w", key, now=now).info
    index = catalog.read_index(memory_store, PREFIX)
    # 30 days keeps `edge`; the floor of 3 intact backups keeps `floor` too.
    assert [b.id for b in index.backups] == [new.id, edge.id, floor.id]
    assert oldest.archive_key not in memory_store.objects
    assert old.archive_key not in memory_store.objects
    assert old.manifest_key in memory_store.objects
    assert edge.archive_key in memory_store.objects and floor.archive_key in memory_store.objects


def test_malformed_index_is_rebuilt_from_manifests(memory_store: MemoryStore, dataset: Path,
                                                   tmp_path: Path, key: BackupKey) -> None:
    first = _backup(memory_store, dataset, tmp_path / "w", key, now=1_800_000_000).info
    memory_store.put_bytes(layout.index_key(PREFIX), b"{broken")
    with pytest.raises(FormatError, match="Backup index is not valid JSON"):
        catalog.read_index(memory_store, PREFIX)
    second = _backup(memory_store, dataset, tmp_path / "w", key, now=1_800_000_100).info
    assert [b.id for b in catalog.read_index(memory_store, PREFIX).backups] == [second.id, first.id]


def test_find_backup_errors(memory_store: MemoryStore) -> None:
    from tako_backups.errors import NotFoundError

    with pytest.raises(NotFoundError, match="'nope' is not a backup id"):
        catalog.find_backup(memory_store, PREFIX, "nope")
    with pytest.raises(NotFoundError, match="^Backup not found: b1-AbCdEf12$"):
        catalog.find_backup(memory_store, PREFIX, "b1-AbCdEf12")
