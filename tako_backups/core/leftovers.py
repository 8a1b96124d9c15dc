"""Cleaning up what crashed or failed backups left under a prefix: unfinished multipart uploads
and archives that never got a manifest. Both need a listing; without one they are skipped."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import FormatError, ListDenied
from ..storage.base import ObjectStore
from .catalog import read_index, try_list
from .layout import ARCHIVE_SUFFIX, is_backup_id, manifest_key

__all__ = ["Leftovers", "clean_leftovers"]


@dataclass(frozen=True)
class Leftovers:
    """What :func:`clean_leftovers` removed, and whether a listing it needed was refused."""

    uploads_aborted: int = 0
    archives_deleted: int = 0
    listing_denied: bool = False


def clean_leftovers(store: ObjectStore, prefix: str, *, started_before: float) -> Leftovers:
    """Remove what crashed or failed backups left under ``prefix`` before ``started_before``
    (unix seconds): unfinished multipart uploads are aborted, and archives that never got a
    manifest and that the index does not name are deleted. Each part is skipped when the store
    refuses its listing (``listing_denied``). Call it only while no other backup of this prefix
    runs (the server holds the app's lock). Raises StorageError.
    """
    aborted, denied = 0, False
    try:
        for upload in list(store.list_uploads(prefix)):
            if upload.started_at < started_before and "/" not in upload.key[len(prefix):]:
                store.abort_upload(upload)
                aborted += 1
    except ListDenied:
        denied = True
    try:
        indexed = {b.archive_key for b in read_index(store, prefix).backups}
    except FormatError:
        return Leftovers(aborted, 0, denied)
    listed = try_list(store, prefix)
    if listed is None:
        return Leftovers(aborted, 0, True)
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
    return Leftovers(aborted, deleted, denied)
