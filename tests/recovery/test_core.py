"""The recovery core over a MemoryStore: manifest extras, drills, tree comparison, the
self-healing index and re-encryption."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from tako_backups.core import catalog, layout, rekey
from tako_backups.core.drill import DrillResult, run_drill
from tako_backups.core.pipeline import restore_into
from tako_backups.core.reindex import read_or_rebuild, reindex
from tako_backups.core.treediff import compare_trees
from tako_backups.errors import FormatError, IntegrityError
from tako_backups.models import BackupExtras, BackupIndex, BackupInfo, BackupKey
from tako_backups.storage.memory import MemoryStore
from tests.recovery.conftest import sql
from tests.support.backups import take_backup

PREFIX = layout.backup_prefix("demo", "production", "la")
NOW = 1_800_000_000


def take(store: MemoryStore, tree: Path, work: Path, key: BackupKey, now: int = NOW,
         reason: str = "manual") -> BackupInfo:
    return take_backup(store, tree, key, work=work, now=now, reason=reason).info


def test_backups_record_files_bytes_sqlite_files_and_reason(memory_store: MemoryStore, tree: Path,
                                                           tmp_path: Path, key: BackupKey) -> None:
    info = take(memory_store, tree, tmp_path / "w", key, reason="pre-restore")
    files = [p for p in tree.rglob("*") if p.is_file()]
    snapshot_sizes = {}
    restored = restore_into(memory_store, info, [key], tmp_path / "staging").tree
    for rel in ("app/notes.db", "tako/workflows.sqlite"):
        snapshot_sizes[rel] = (restored / rel).stat().st_size
    plain = sum(p.stat().st_size for p in files if p.suffix not in (".db", ".sqlite"))
    assert info.extras == BackupExtras(files=len(files), bytes=plain + sum(snapshot_sizes.values()),
                                       sqlite_files=["app/notes.db", "tako/workflows.sqlite"],
                                       reason="pre-restore")
    assert BackupInfo.from_json(memory_store.get_bytes(info.manifest_key)) == info
    with pytest.raises(FormatError, match=r"^Unknown backup reason 'later' \(known: manual, scheduled, "
                                          r"post-deploy, pre-restore, reencrypt\)\.$"):
        take(memory_store, tree, tmp_path / "w", key, reason="later")


def test_a_drill_restores_checks_and_compares_with_the_manifest(memory_store: MemoryStore, tree: Path,
                                                                tmp_path: Path, key: BackupKey) -> None:
    info = take(memory_store, tree, tmp_path / "w", key)
    scratch = tmp_path / "drills"
    result = run_drill(memory_store, info, [key], scratch, clock=lambda: NOW + 5)
    assert (result.backup_id, result.at_unix_secs, result.ok) == (info.id, NOW + 5, True)
    assert result.message is None
    assert 0 < result.seconds < 30
    assert list(scratch.iterdir()) == []
    assert DrillResult.from_dict(result.to_dict()) == dataclasses.replace(
        result, seconds=round(result.seconds, 3))

    assert info.extras is not None
    lying = dataclasses.replace(info, extras=dataclasses.replace(info.extras, files=info.extras.files + 1))
    failed = run_drill(memory_store, lying, [key], scratch, clock=lambda: NOW)
    assert (failed.ok, failed.message) == (False, (
        f"Backup {info.id} restored {info.extras.files} files ({info.extras.bytes} bytes) but its manifest "
        f"records {info.extras.files + 1} files ({info.extras.bytes} bytes)."))
    one_db = dataclasses.replace(info.extras, sqlite_files=["app/notes.db"])
    renamed = dataclasses.replace(info, extras=one_db)
    assert run_drill(memory_store, renamed, [key], scratch).message == (
        f"Backup {info.id} restored other SQLite files than its manifest records (unexpected "
        "tako/workflows.sqlite).")

    without_extras = dataclasses.replace(info, extras=None)  # a backup Tako made: nothing to compare
    assert run_drill(memory_store, without_extras, [key], scratch).ok

    damaged = bytearray(memory_store.objects[info.archive_key])
    damaged[100] ^= 1
    memory_store.objects[info.archive_key] = bytes(damaged)
    broken = run_drill(memory_store, info, [key], scratch)
    assert (broken.ok, broken.message) == (False, "Downloaded backup checksum did not match manifest.")
    del memory_store.objects[info.archive_key]
    assert run_drill(memory_store, info, [key], scratch).ok is False
    assert list(scratch.iterdir()) == []


def test_tree_comparison_lists_files_and_row_count_deltas(tree: Path, tmp_path: Path) -> None:
    staged = tmp_path / "staged"
    shutil.copytree(tree, staged)
    sql(tree / "app" / "notes.db", "INSERT INTO notes (body) VALUES ('gone again')")
    sql(tree / "app" / "notes.db", "DELETE FROM notes WHERE body = 'gone again'")
    assert (tree / "app" / "notes.db").read_bytes() != (staged / "app" / "notes.db").read_bytes()
    assert compare_trees(tree, staged).to_dict()["counts"] == {"added": 0, "removed": 0, "changed": 0,
                                                              "unchanged": 4}  # same rows: unchanged
    (tree / "app" / "uploads" / "a.txt").write_text("edited upload\n")
    (tree / "app" / "uploads" / "b.bin").write_bytes(bytes(reversed(range(256))) * 8)  # same size
    (tree / "app" / "new.txt").write_text("only live\n")
    (staged / "app" / "gone-live.txt").write_text("only in the backup\n")
    (tree / "app" / "notes.db-wal").write_bytes(b"companions are part of the database")
    (tree / "tako" / "channels.sqlite").write_bytes(b"a restore always drops this")
    sql(tree / "app" / "notes.db", "DELETE FROM notes WHERE id > 30")
    sql(tree / "app" / "notes.db", "CREATE TABLE later (x)")
    sql(tree / "app" / "notes.db", "INSERT INTO later VALUES (1)")

    diff = compare_trees(tree, staged).to_dict()
    assert diff["added"] == [{"path": "app/gone-live.txt", "size_before": None, "size_after": 19}]
    assert diff["removed"] == [{"path": "app/new.txt", "size_before": 10, "size_after": None}]
    notes_size = ((tree / "app" / "notes.db").stat().st_size, (staged / "app" / "notes.db").stat().st_size)
    assert diff["changed"] == [
        {"path": "app/notes.db", "size_before": notes_size[0], "size_after": notes_size[1]},
        {"path": "app/uploads/a.txt", "size_before": 14, "size_after": 13},
        {"path": "app/uploads/b.bin", "size_before": 2048, "size_after": 2048},
    ]
    assert diff["counts"] == {"added": 1, "removed": 1, "changed": 3, "unchanged": 1}
    assert diff["truncated"] is False
    assert diff["tables"] == [
        {"file": "app/notes.db", "table": "later", "before": 1, "after": None, "delta": -1},
        {"file": "app/notes.db", "table": "notes", "before": 30, "after": 40, "delta": 10},
        {"file": "app/notes.db", "table": "tags", "before": 2, "after": 2, "delta": 0},
    ]
    assert compare_trees(tmp_path / "nothing-live", staged).to_dict()["counts"] == {
        "added": 5, "removed": 0, "changed": 0, "unchanged": 0}


def test_the_index_heals_from_manifests(memory_store: MemoryStore, tree: Path, tmp_path: Path,
                                        key: BackupKey) -> None:
    assert read_or_rebuild(memory_store, PREFIX).rebuilt_because is None  # nothing yet: not a rebuild
    first = take(memory_store, tree, tmp_path / "w", key, now=NOW)
    second = take(memory_store, tree, tmp_path / "w", key, now=NOW + 60)
    index_key = layout.index_key(PREFIX)
    good = memory_store.objects[index_key]
    assert read_or_rebuild(memory_store, PREFIX).rebuilt_because is None
    del memory_store.objects[index_key]
    found = read_or_rebuild(memory_store, PREFIX)
    assert (found.rebuilt_because, [b.id for b in found.index.backups]) == ("missing", [second.id, first.id])
    assert index_key not in memory_store.objects  # reading never writes
    memory_store.objects[index_key] = b'{"version": 1, "backups": [{"id": 3}]}'
    found = read_or_rebuild(memory_store, PREFIX)
    assert (found.rebuilt_because, found.index.backups) == ("unreadable", [second, first])
    memory_store.objects[second.manifest_key] = b"not json"  # a damaged manifest is left out
    assert reindex(memory_store, PREFIX).backups == [first]
    assert BackupIndex.from_json(memory_store.objects[index_key]).backups == [first]
    assert good != memory_store.objects[index_key]


def test_reencryption_moves_a_backup_to_the_new_key(memory_store: MemoryStore, tree: Path, tmp_path: Path,
                                                    key: BackupKey, new_key: BackupKey) -> None:
    old = take(memory_store, tree, tmp_path / "w", key, now=NOW)
    safety = take(memory_store, tree, tmp_path / "w", key, now=NOW + 1, reason="pre-restore")
    new = rekey.reencrypt_backup(memory_store, PREFIX, old, [key], new_key)
    assert new.id != old.id and new.id.startswith(f"b{NOW}-")
    assert (new.created_at_unix_secs, new.size_bytes) == (NOW, old.size_bytes)
    assert new.encryption.key_id == new_key.id
    assert old.extras is not None
    assert new.extras == dataclasses.replace(old.extras, reason="reencrypt")
    assert BackupInfo.from_json(memory_store.get_bytes(new.manifest_key)) == new
    rekey.swap_backup(memory_store, PREFIX, old, new)
    assert old.archive_key not in memory_store.objects and old.manifest_key not in memory_store.objects
    assert [b.id for b in catalog.read_index(memory_store, PREFIX).backups] == [safety.id, new.id]
    restored = restore_into(memory_store, new, [new_key], tmp_path / "restored").tree
    upload = Path("app") / "uploads" / "b.bin"
    assert (restored / upload).read_bytes() == (tree / upload).read_bytes()
    moved = rekey.reencrypt_backup(memory_store, PREFIX, safety, [key], new_key)
    assert moved.extras is not None and moved.extras.reason == "pre-restore"  # undo still finds it

    damaged = bytearray(memory_store.objects[safety.archive_key])
    damaged[-1] ^= 1
    memory_store.objects[safety.archive_key] = bytes(damaged)
    before = set(memory_store.objects)
    with pytest.raises(IntegrityError, match="^Downloaded backup checksum did not match manifest.$"):
        rekey.reencrypt_backup(memory_store, PREFIX, safety, [key], new_key)
    assert set(memory_store.objects) == before  # nothing committed for a damaged archive
    assert list(memory_store.list_uploads(PREFIX)) == []

