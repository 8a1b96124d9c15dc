"""Re-encrypt a backup under another key: a new archive object and manifest, same plaintext.

The archive is streamed, in its own format (:func:`.formats.reseal`): format 1 is download →
SHA-256 + AES-GCM decrypt (old key) → AES-GCM encrypt (new key) + SHA-256 → multipart upload;
format 2 is read chunk by chunk (each verified) and sealed again as a new format-2 object under
the new key, with the old footer's member table. The new upload is committed only after the old
archive's size, SHA-256 and tags verified, so a damaged archive is never copied under a new
name. The backup keeps its ``created_at_unix_secs`` (retention is unchanged) and gets a new id.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from ..errors import StorageError
from ..models import PRE_RESTORE, BackupInfo, BackupKey
from ..progress import NO_PROGRESS, Progress
from ..storage.base import ObjectStore
from . import catalog, layout, reindex
from .formats import reseal
from .pipeline import pick_key

__all__ = ["REENCRYPT_REASON", "reencrypt_backup", "retire_backup", "swap_backup"]

REENCRYPT_REASON = "reencrypt"
KEPT_REASONS = (PRE_RESTORE,)


def reencrypt_backup(
    store: ObjectStore, prefix: str, info: BackupInfo, keys: Iterable[BackupKey], target: BackupKey,
    progress: Progress = NO_PROGRESS,
) -> BackupInfo:
    """Write ``info``'s archive again under ``target`` as a new backup (archive, then manifest)
    and return its manifest; the index and ``info``'s objects are left as they are (see
    :func:`reindex.replace_entry` and :func:`retire_backup`).

    The extras are kept with the reason ``reencrypt`` (a ``pre-restore`` backup stays one, so
    ``undo`` still finds it). Raises KeyNotFoundError, IntegrityError (nothing is left behind)
    or StorageError.
    """
    old_key = pick_key(info, keys)
    new_id = layout.new_backup_id(info.created_at_unix_secs)
    archive = layout.archive_key(prefix, new_id)
    progress.start(f"Re-encrypting {info.id}", info.size_bytes)
    with store.open_read(info.archive_key) as body, store.open_writer(archive, info.size_bytes) as upload:
        resealed = reseal(body, info, old_key, upload, target, progress)
        upload.commit()
    progress.finish()
    extras = info.extras
    if extras is not None:
        changes: dict[str, Any] = dict(resealed.layout or {})
        if extras.reason not in KEPT_REASONS:
            changes["reason"] = REENCRYPT_REASON
        extras = replace(extras, **changes)
    sealed = resealed.sealed
    new = replace(info, id=new_id, size_bytes=sealed.size_bytes, sha256_hex=sealed.sha256_hex,
                  archive_key=archive, manifest_key=layout.manifest_key(prefix, new_id),
                  encryption=sealed.encryption, extras=extras)
    try:
        catalog.write_manifest(store, new)
    except StorageError:
        _delete_quietly(store, new.manifest_key, new.archive_key)
        raise
    return new


def swap_backup(store: ObjectStore, prefix: str, old: BackupInfo, new: BackupInfo) -> None:
    """Point the index at ``new`` instead of ``old``, then delete ``old``'s manifest and archive
    (the manifest first: an archive without a manifest is cleaned up later, a manifest without
    an archive is ignored). Raises StorageError when the index cannot be written: ``old`` then
    stays and ``new``'s objects are deleted unless the index names it; delete errors are ignored."""
    try:
        reindex.replace_entry(store, prefix, old, new)
    except BaseException:
        catalog.discard_unrecorded(store, prefix, new.id)
        raise
    retire_backup(store, old)


def retire_backup(store: ObjectStore, info: BackupInfo) -> None:
    """Delete a backup's manifest, then its archive; errors are ignored."""
    _delete_quietly(store, info.manifest_key, info.archive_key)


def _delete_quietly(store: ObjectStore, *keys: str) -> None:
    for key in keys:
        try:
            store.delete(key)
        except StorageError:
            pass
