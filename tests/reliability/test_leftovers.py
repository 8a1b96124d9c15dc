"""What the index merge and the leftover cleanup keep and what they remove (in-memory store).

The cleanup deletes only what no backup can be restored from; the merge drops only entries
whose archive is gone, and puts back a missing manifest of an entry whose archive is there.
"""

from __future__ import annotations

import os
from pathlib import Path

from tako_backups.core import catalog, layout, leftovers
from tako_backups.models import BackupIndex, BackupInfo, BackupKey
from tako_backups.storage.memory import MemoryStore
from tests.support.backups import take_backup

PREFIX = layout.backup_prefix("demo", "production", "la")
NOW = 1_800_000_000


def take(store: MemoryStore, tree: Path, work: Path, key: BackupKey, now: int) -> BackupInfo:
    return take_backup(store, tree, key, work=work, now=now).info


def test_cleanup_deletes_only_old_archives_that_nothing_names(small_tree: Path, tmp_path: Path,
                                                             key: BackupKey) -> None:
    store = MemoryStore()
    indexed = take(store, small_tree, tmp_path, key, NOW - 100)
    with_manifest = take(store, small_tree, tmp_path, key, NOW - 90)
    store.delete(indexed.manifest_key)  # named by the index only: still restorable, so kept
    old_orphan = layout.archive_key(PREFIX, "b1799999000-OldOrphn")
    new_orphan = layout.archive_key(PREFIX, "b1800000500-NewOrphn")
    other_app = layout.archive_key(layout.backup_prefix("other", "production", "la"), "b1-Orphan00")
    for k in (old_orphan, new_orphan, other_app):
        store.put_bytes(k, os.urandom(64))
    old_upload = store.open_writer(layout.archive_key(PREFIX, "b1799999001-Upload00"))
    old_upload.write(b"part")
    left = leftovers.clean_leftovers(store, PREFIX, started_before=NOW)
    assert left == leftovers.Leftovers(uploads_aborted=1, archives_deleted=1)
    assert old_orphan not in store.objects
    assert {new_orphan, other_app, indexed.archive_key, with_manifest.archive_key} <= set(store.objects)
    assert list(store.list_uploads(PREFIX)) == []

    store.put_bytes(layout.index_key(PREFIX), b"{not json")  # unreadable index: delete no archive
    store.put_bytes(old_orphan, b"again")
    assert leftovers.clean_leftovers(store, PREFIX, started_before=NOW + 10_000) == leftovers.Leftovers()
    assert old_orphan in store.objects


def test_recent_uploads_are_left_alone(tmp_path: Path) -> None:
    store = MemoryStore()
    writer = store.open_writer(layout.archive_key(PREFIX, "b1800000000-Running0"))
    writer.write(b"in flight")
    started = next(iter(store.list_uploads(PREFIX))).started_at
    assert leftovers.clean_leftovers(store, PREFIX, started_before=started) == leftovers.Leftovers()
    assert writer.commit() == 9


def test_the_merge_heals_a_lost_manifest_and_drops_an_entry_whose_archive_is_gone(
    small_tree: Path, tmp_path: Path, key: BackupKey,
) -> None:
    store = MemoryStore()
    lost_manifest = take(store, small_tree, tmp_path, key, NOW - 300)
    lost_archive = take(store, small_tree, tmp_path, key, NOW - 200)
    store.delete(lost_manifest.manifest_key)
    store.delete(lost_archive.archive_key)
    newest = take(store, small_tree, tmp_path, key, NOW)
    assert catalog.read_index(store, PREFIX) == BackupIndex(backups=[newest, lost_manifest])
    assert BackupInfo.from_json(store.get_bytes(lost_manifest.manifest_key)) == lost_manifest
    assert catalog.rebuild_index(store, PREFIX).backups == [newest, lost_manifest]
