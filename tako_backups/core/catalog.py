"""Read and write the bucket's manifests and ``index.json`` under one backup prefix.

The index is merged, never blindly overwritten: :func:`record_backup` re-reads it, lists the
prefix and keeps every backup whose objects are there, so two writers finishing at once (two
processes on one prefix, or a core caller without the server's app lock) never drop each other's
entry, and no failure leaves the index naming an archive or manifest that is missing.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import FormatError, NotFoundError, ObjectNotFound, StorageError
from ..models import DEFAULT_RETENTION_DAYS, BackupIndex, BackupInfo, sort_newest_first
from ..policy import BackupPolicy
from ..primitives.text import printable
from ..storage.base import ObjectStore
from . import retention
from .layout import (
    ARCHIVE_SUFFIX,
    MANIFEST_SUFFIX,
    archive_key,
    index_key,
    is_backup_id,
    manifest_key,
)

MERGE_ROUNDS = 8


def read_index(store: ObjectStore, prefix: str) -> BackupIndex:
    """The index under ``prefix``; a missing index means no backups.

    Raises FormatError when the index exists but is malformed, StorageError when unreadable.
    """
    try:
        data = store.get_bytes(index_key(prefix))
    except ObjectNotFound:
        return BackupIndex()
    return BackupIndex.from_json(data)


def write_index(store: ObjectStore, prefix: str, index: BackupIndex) -> None:
    """Replace the index (one PUT: readers see the old or the new one, never a mix)."""
    ordered = BackupIndex(backups=sort_newest_first(list(index.backups)))
    store.put_bytes(index_key(prefix), ordered.to_json())


def read_manifest(store: ObjectStore, prefix: str, backup_id: str) -> BackupInfo:
    """The manifest ``{id}.json``. Raises NotFoundError when it does not exist."""
    try:
        data = store.get_bytes(manifest_key(prefix, backup_id))
    except ObjectNotFound:
        raise NotFoundError(f"Backup not found: {printable(backup_id)}") from None  # Tako's text
    return BackupInfo.from_json(data)


def find_backup(store: ObjectStore, prefix: str, backup_id: str) -> BackupInfo:
    """Look a backup up in the index, falling back to its manifest.

    Raises NotFoundError for an unknown id and FormatError for a malformed document.
    """
    if not is_backup_id(backup_id) or "\n" in backup_id:
        raise NotFoundError(
            f"'{printable(backup_id)}' is not a backup id (expected b<unix seconds>-<8 chars>, "
            "see `tako backups list`)."
        )
    try:
        found = read_index(store, prefix).find(backup_id)
    except FormatError:
        found = None
    return found if found is not None else read_manifest(store, prefix, backup_id)


def rebuild_index(store: ObjectStore, prefix: str) -> BackupIndex:
    """An index of every readable manifest under ``prefix`` whose archive exists (malformed
    manifests and manifests without an archive are left out). Raises StorageError."""
    listed = list_prefix(store, prefix)
    return BackupIndex(backups=sort_newest_first(list(_listed_manifests(store, prefix, listed, {}).values())))


def list_prefix(store: ObjectStore, prefix: str) -> dict[str, int]:
    """Every object under ``prefix``: key -> size. Raises StorageError."""
    return {obj.key: obj.size for obj in store.list(prefix)}


def record_backup(
    store: ObjectStore, prefix: str, info: BackupInfo, *, retention_days: int = DEFAULT_RETENTION_DAYS,
    now: int, policy: BackupPolicy | None = None,
) -> list[BackupInfo]:
    """Record a backup whose archive is on the bucket: manifest, index, then retention deletes.

    Retention is ``policy`` (:func:`.retention.select`) when given, else Tako's age rule of
    ``retention_days``; either way with the floor of the newest 3 intact backups.

    The index is written before anything expired is deleted, so a failure at any step never
    leaves it naming a missing object. Each round re-reads the index, lists the prefix, keeps
    the entries whose archive is present, adds manifests of other finished backups it lacks and
    applies retention; it writes only when that differs from what it read, and stops once a
    re-read finds the index as wanted (at most MERGE_ROUNDS writes). Returns the expired
    backups, whose objects were deleted (delete errors are ignored, as Tako does).

    Raises StorageError when the manifest or index cannot be written; when the manifest cannot,
    the archive is deleted again (best effort) so no orphan is left.
    """
    try:
        store.put_bytes(info.manifest_key, info.to_json())
    except StorageError:
        _discard_unrecorded(store, info)
        raise
    expired: dict[str, BackupInfo] = {}
    wanted: list[BackupInfo] = []
    rule = policy if policy is not None else BackupPolicy(retention_days=retention_days)
    for _ in range(MERGE_ROUNDS):
        current, wanted, dropped = _merge(store, prefix, info, rule, now)
        expired.update((b.id, b) for b in dropped)
        if current is not None and current.backups == wanted:
            break
        write_index(store, prefix, BackupIndex(backups=wanted))
    kept_ids = {b.id for b in wanted}
    gone = [b for b in expired.values() if b.id not in kept_ids]
    retention.delete_backups(store, gone)
    return sort_newest_first(gone)


def _merge(
    store: ObjectStore, prefix: str, info: BackupInfo, policy: BackupPolicy, now: int
) -> tuple[BackupIndex | None, list[BackupInfo], list[BackupInfo]]:
    """(index as read or None when malformed, entries wanted newest first, entries expired)."""
    try:
        current: BackupIndex | None = read_index(store, prefix)
    except FormatError:
        current = None
    listed = list_prefix(store, prefix)
    entries = {b.id: b for b in (current.backups if current is not None else [])}
    entries[info.id] = info
    entries.update(_listed_manifests(store, prefix, listed, entries))

    def present(b: BackupInfo) -> bool:
        return b.id == info.id or not b.archive_key.startswith(prefix) or b.archive_key in listed

    def intact(b: BackupInfo) -> bool:
        return b.id == info.id or (present(b) and listed.get(b.archive_key, b.size_bytes) == b.size_bytes)

    known = BackupIndex(backups=sort_newest_first(list(entries.values())))
    chosen = retention.select(known.backups, policy, now, intact=intact)
    wanted = [k.info for k in chosen.kept if present(k.info)]
    expired = chosen.expired
    for b in wanted:
        if b.id != info.id and b.manifest_key.startswith(prefix) and b.manifest_key not in listed:
            _restore_manifest(store, b)
    return current, wanted, expired


def _listed_manifests(
    store: ObjectStore, prefix: str, listed: dict[str, int], known: dict[str, BackupInfo]
) -> dict[str, BackupInfo]:
    """Manifests in ``listed`` whose id is not in ``known`` and whose archive is listed too."""
    found = {}
    for key in listed:
        name = key[len(prefix):]
        if "/" in name or not name.endswith(MANIFEST_SUFFIX):
            continue
        backup_id = name[: -len(MANIFEST_SUFFIX)]
        if not is_backup_id(backup_id) or backup_id in known:
            continue
        if archive_key(prefix, backup_id) not in listed:
            continue
        try:
            manifest = BackupInfo.from_json(store.get_bytes(key))
        except (FormatError, ObjectNotFound):
            continue
        if manifest.id == backup_id:
            found[backup_id] = manifest
    return found


def _restore_manifest(store: ObjectStore, info: BackupInfo) -> None:
    """Put back the manifest of an indexed backup whose archive is still there (best effort)."""
    try:
        store.put_bytes(info.manifest_key, info.to_json())
    except StorageError:
        pass


def _discard_unrecorded(store: ObjectStore, info: BackupInfo) -> None:
    """After a failed manifest write: delete the manifest (in case it landed), then the archive."""
    try:
        store.delete(info.manifest_key)
        store.delete(info.archive_key)
    except StorageError:
        pass


@dataclass(frozen=True)
class Leftovers:
    """What :func:`clean_leftovers` removed."""

    uploads_aborted: int = 0
    archives_deleted: int = 0


def clean_leftovers(store: ObjectStore, prefix: str, *, started_before: float) -> Leftovers:
    """Remove what crashed or failed backups left under ``prefix`` before ``started_before``
    (unix seconds): unfinished multipart uploads are aborted, and archives that never got a
    manifest and that the index does not name are deleted. Call it only while no other backup of
    this prefix runs (the server holds the app's lock). Raises StorageError.
    """
    aborted = 0
    for upload in list(store.list_uploads(prefix)):
        if upload.started_at < started_before and "/" not in upload.key[len(prefix):]:
            store.abort_upload(upload)
            aborted += 1
    try:
        indexed = {b.archive_key for b in read_index(store, prefix).backups}
    except FormatError:
        return Leftovers(aborted, 0)
    listed = list_prefix(store, prefix)
    deleted = 0
    for key in listed:
        name = key[len(prefix):]
        if "/" in name or not name.endswith(ARCHIVE_SUFFIX) or key in indexed:
            continue
        backup_id = name[: -len(ARCHIVE_SUFFIX)]
        if not is_backup_id(backup_id) or manifest_key(prefix, backup_id) in listed:
            continue
        if int(backup_id[1:].split("-", 1)[0]) < started_before:
            store.delete(key)
            deleted += 1
    return Leftovers(aborted, deleted)
