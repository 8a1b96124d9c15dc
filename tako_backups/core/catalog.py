"""Read and write the bucket's manifests and ``index.json`` under one backup prefix."""

from __future__ import annotations

from ..errors import FormatError, NotFoundError, ObjectNotFound
from ..models import BackupIndex, BackupInfo, sort_newest_first
from ..storage.base import ObjectStore
from .layout import MANIFEST_SUFFIX, index_key, is_backup_id, manifest_key


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
        raise NotFoundError(f"Backup '{backup_id}' was not found.") from None
    return BackupInfo.from_json(data)


def find_backup(store: ObjectStore, prefix: str, backup_id: str) -> BackupInfo:
    """Look a backup up in the index, falling back to its manifest.

    Raises NotFoundError for an unknown id and FormatError for a malformed document.
    """
    if not is_backup_id(backup_id):
        raise NotFoundError(
            f"'{backup_id}' is not a backup id (expected b<unix seconds>-<8 chars>, "
            "see `tako backups list`)."
        )
    try:
        found = read_index(store, prefix).find(backup_id)
    except FormatError:
        found = None
    return found if found is not None else read_manifest(store, prefix, backup_id)


def rebuild_index(store: ObjectStore, prefix: str) -> BackupIndex:
    """An index made from every readable manifest under ``prefix`` (malformed ones are left out)."""
    backups = []
    for obj in store.list(prefix):
        name = obj.key[len(prefix):]
        if "/" in name or not name.endswith(MANIFEST_SUFFIX):
            continue
        backup_id = name[: -len(MANIFEST_SUFFIX)]
        if not is_backup_id(backup_id):
            continue
        try:
            backups.append(BackupInfo.from_json(store.get_bytes(obj.key)))
        except (FormatError, ObjectNotFound):
            continue
    return BackupIndex(backups=sort_newest_first(backups))
