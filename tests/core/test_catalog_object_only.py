"""Recording backups as Tako does, with or without a listing: read the index before uploading,
archive, manifest, merge, index, retention deletes -- and a failure at any step after the upload
began leaves no object the index does not name."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tako_backups.core import catalog, layout, reindex
from tako_backups.core.pipeline import restore_into
from tako_backups.errors import FormatError, StorageAuthError, StorageError
from tako_backups.models import BackupIndex, BackupKey
from tako_backups.storage.memory import MemoryStore
from tests.support.backups import take_backup

PREFIX = layout.backup_prefix("demo", "production", "la-1")
DAY = 86_400
NOW = 1_800_000_000
LISTING = pytest.mark.parametrize("deny_list", [True, False], ids=["object-only", "with-list"])


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    (root / "app").mkdir(parents=True)
    (root / "tako").mkdir()
    (root / "app" / "notes.txt").write_text("hello\n")
    return root


def run(store: Any, tree: Path, key: BackupKey, **kw: Any):  # type: ignore[no-untyped-def]
    kw.setdefault("retention_days", 30)
    kw.setdefault("server", "La.1")
    return take_backup(store, tree, key, **kw)


def unnamed(store: MemoryStore) -> set[str]:
    """Archives and manifests under PREFIX that the index does not name (orphans)."""
    try:
        index = catalog.read_index(store, PREFIX)
    except FormatError:
        index = BackupIndex()
    named = {k for b in index.backups for k in (b.archive_key, b.manifest_key)}
    return {k for k in store.objects if k.startswith(PREFIX) and k != layout.index_key(PREFIX)} - named


class Recording(MemoryStore):
    """A memory store that logs each request, and can make one PUT land and then fail (a lost
    reply) or fail with any exception."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.log: list[str] = []
        self.land_then_fail: str | None = None
        self.raise_on_put: tuple[str, BaseException] | None = None
        self.fail_index_get: StorageError | None = None

    def get_bytes(self, key: str) -> bytes:
        self.log.append(f"GET {key.rsplit('/', 1)[-1]}")
        if self.fail_index_get is not None and key.endswith("index.json"):
            raise self.fail_index_get
        return super().get_bytes(key)

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        self.log.append(f"PUT {key.rsplit('/', 1)[-1].split('-', 1)[-1]}")
        if self.raise_on_put is not None and key.endswith(self.raise_on_put[0]):
            raise self.raise_on_put[1]
        super().put_bytes(key, data, content_type)
        if self.land_then_fail is not None and key.endswith(self.land_then_fail):
            raise StorageError(f"The reply to the upload of '{key}' was lost.")


@LISTING
def test_a_backup_is_recorded_in_takos_order_and_shape(tree: Path, key: BackupKey, deny_list: bool) -> None:
    store = Recording(deny_list=deny_list, deny_list_uploads=deny_list)
    ticks = iter([NOW + 7])
    result = run(store, tree, key, now=NOW, clock=lambda: next(ticks))
    info = result.info
    assert result.listing_denied is deny_list
    assert info.id.startswith(f"b{NOW}-")  # the id keeps the start ...
    assert info.created_at_unix_secs == NOW + 7  # ... created_at is taken once the archive is sealed
    assert (info.app, info.environment, info.server) == ("demo", "production", "la-1")
    assert info.archive_key == f"{PREFIX}{info.id}.tar.zst.enc"
    assert store.log[0] == "GET index.json"  # before anything is uploaded
    assert store.log[1:3] == [f"PUT {info.archive_key.rsplit('/', 1)[-1].split('-', 1)[-1]}",
                              f"PUT {info.manifest_key.rsplit('/', 1)[-1].split('-', 1)[-1]}"]
    assert store.log[-2:] == ["PUT index.json", "GET index.json"]  # written, then found as wanted
    manifest = store.objects[info.manifest_key]
    assert manifest == json.dumps(info.to_dict(), separators=(",", ":")).encode()
    assert not manifest.endswith(b"\n") and b" " not in manifest
    assert list(json.loads(manifest)) == ["id", "app", "environment", "server", "created_at_unix_secs",
                                          "size_bytes", "sha256_hex", "archive_key", "manifest_key",
                                          "encryption", "extras"]
    index = store.objects[layout.index_key(PREFIX)]
    assert index.startswith(b'{"version":1,"backups":[{"id":"') and not index.endswith(b"\n")
    assert store.content_types[info.manifest_key] == "application/json"
    assert store.content_types[layout.index_key(PREFIX)] == "application/json"
    assert store.content_types[info.archive_key] is None
    assert unnamed(store) == set()


def test_object_only_retention_deletes_by_key_and_leaves_no_orphans(tree: Path, key: BackupKey) -> None:
    store = MemoryStore(deny_list=True, deny_list_uploads=True)
    old = [run(store, tree, key, now=NOW - d * DAY).info for d in (40, 39, 38, 37)]
    new = run(store, tree, key, now=NOW)
    kept = catalog.read_index(store, PREFIX).backups
    # 30 days keeps only `new`; the floor of 3 intact backups (checked with HEAD) keeps two more.
    assert [b.id for b in kept] == [new.info.id, old[3].id, old[2].id]
    assert [b.id for b in new.pruned] == [old[1].id, old[0].id]
    for gone in old[:2]:
        assert gone.archive_key not in store.objects and gone.manifest_key not in store.objects
    assert unnamed(store) == set()
    tree_back = restore_into(store, kept[-1], [key], tree.parent / "staging").tree
    assert (tree_back / "app" / "notes.txt").read_text() == "hello\n"


def test_without_a_listing_the_floor_skips_backups_whose_archive_is_gone(tree: Path, key: BackupKey) -> None:
    store = MemoryStore(deny_list=True)
    old = [run(store, tree, key, now=NOW - d * DAY).info for d in (40, 39, 38, 37)]
    store.delete(old[3].archive_key)  # lost by hand: no listing shows it, HEAD does
    new = run(store, tree, key, now=NOW).info
    kept = [b.id for b in catalog.read_index(store, PREFIX).backups]
    assert kept == [new.id, old[2].id, old[1].id]  # the floor counts only intact archives
    assert old[3].manifest_key not in store.objects


@LISTING
@pytest.mark.parametrize("step", ["manifest", "index"])
def test_a_failed_write_after_the_upload_deletes_what_it_uploaded(tree: Path, key: BackupKey, deny_list: bool,
                                                                  step: str) -> None:
    store = MemoryStore(deny_list=deny_list, deny_list_uploads=deny_list)
    first = run(store, tree, key, now=NOW - 60).info
    store.fail_puts.add(".json" if step == "manifest" else "index.json")
    with pytest.raises(StorageError):
        run(store, tree, key, now=NOW)
    assert sorted(store.objects) == sorted([first.archive_key, first.manifest_key, layout.index_key(PREFIX)])
    assert unnamed(store) == set()


@LISTING
@pytest.mark.parametrize("what", [".tar.zst.enc", ".json"])
def test_an_upload_whose_reply_was_lost_is_deleted_again(tree: Path, key: BackupKey, deny_list: bool,
                                                         what: str) -> None:
    store = Recording(deny_list=deny_list)
    store.land_then_fail = what
    with pytest.raises(StorageError, match="was lost"):
        run(store, tree, key, now=NOW)
    assert store.objects == {}


@LISTING
def test_an_index_write_that_landed_keeps_the_backup(tree: Path, key: BackupKey, deny_list: bool) -> None:
    store = Recording(deny_list=deny_list)
    store.land_then_fail = "index.json"
    with pytest.raises(StorageError, match="was lost"):
        run(store, tree, key, now=NOW)
    index = catalog.read_index(store, PREFIX)
    assert len(index.backups) == 1
    assert index.backups[0].archive_key in store.objects and index.backups[0].manifest_key in store.objects
    assert unnamed(store) == set()


@LISTING
def test_any_exception_while_recording_cleans_up(tree: Path, key: BackupKey, deny_list: bool) -> None:
    store = Recording(deny_list=deny_list)
    store.raise_on_put = ("index.json", RuntimeError("boom"))
    with pytest.raises(RuntimeError, match="boom"):
        run(store, tree, key, now=NOW)
    assert store.objects == {}


def test_an_unreadable_index_stops_the_backup_before_any_upload(tree: Path, key: BackupKey) -> None:
    store = Recording(deny_list=True)
    store.fail_index_get = StorageAuthError("Storage endpoint x refused the credentials (AccessDenied).")
    with pytest.raises(StorageAuthError) as info:
        run(store, tree, key, now=NOW)
    assert str(info.value) == ("read backup index: Storage endpoint x refused the credentials "
                               "(AccessDenied).")
    assert store.objects == {} and [e for e in store.log if e.startswith("PUT")] == []
    assert not (tree.parent / "work").exists()


def test_a_malformed_index_without_a_listing_stops_the_backup(tree: Path, key: BackupKey) -> None:
    store = MemoryStore(deny_list=True)
    store.put_bytes(layout.index_key(PREFIX), b"{broken")
    with pytest.raises(FormatError) as info:
        run(store, tree, key, now=NOW)
    assert str(info.value) == "parse backup index: Backup index is not valid JSON (JSONDecodeError)."
    assert list(store.objects) == [layout.index_key(PREFIX)]
    with pytest.raises(FormatError, match="^parse backup index: "):
        reindex.read_or_rebuild(store, PREFIX)
    store.deny_list = False  # with a listing it heals
    assert reindex.read_or_rebuild(store, PREFIX).rebuilt_because == "unreadable"
    run(store, tree, key, now=NOW)
    assert len(catalog.read_index(store, PREFIX).backups) == 1


def test_a_lost_index_reads_as_empty_without_a_listing_and_is_rebuilt_with_one(tree: Path,
                                                                              key: BackupKey) -> None:
    store = MemoryStore(deny_list=True)
    first = run(store, tree, key, now=NOW).info
    store.delete(layout.index_key(PREFIX))
    found = reindex.read_or_rebuild(store, PREFIX)
    assert found.index.backups == [] and found.listing_denied and not found.rebuilt
    store.deny_list = False
    found = reindex.read_or_rebuild(store, PREFIX)
    assert [b.id for b in found.index.backups] == [first.id] and found.rebuilt_because == "missing"
    assert not found.listing_denied


def test_indented_manifests_and_indexes_from_older_versions_still_read(tree: Path, key: BackupKey) -> None:
    store = MemoryStore()
    info = run(store, tree, key, now=NOW).info
    store.put_bytes(info.manifest_key, (json.dumps(info.to_dict(), indent=2) + "\n").encode())
    index = {"version": 1, "backups": [info.to_dict()]}
    store.put_bytes(layout.index_key(PREFIX), (json.dumps(index, indent=2) + "\n").encode())
    assert catalog.read_index(store, PREFIX).backups == [info]
    assert catalog.read_manifest(store, PREFIX, info.id) == info


@LISTING
def test_a_reencryption_whose_index_write_fails_leaves_only_the_old_backup(
        tree: Path, key: BackupKey, other_key: BackupKey, deny_list: bool) -> None:
    from tako_backups.core.rekey import reencrypt_backup, swap_backup

    store = MemoryStore(deny_list=deny_list)
    old = run(store, tree, key, now=NOW).info
    new = reencrypt_backup(store, PREFIX, old, [key], other_key)
    assert new.manifest_key in store.objects and store.content_types[new.manifest_key] == "application/json"
    store.fail_puts.add("index.json")
    with pytest.raises(StorageError):
        swap_backup(store, PREFIX, old, new)
    assert catalog.read_index(store, PREFIX).backups == [old]
    assert unnamed(store) == set()
