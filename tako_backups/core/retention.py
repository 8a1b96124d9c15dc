"""Retention: which index entries are old enough to drop, and dropping them."""

from __future__ import annotations

from ..errors import StorageError
from ..models import BackupIndex, BackupInfo
from ..storage.base import ObjectStore

DAY = 86_400


def split_expired(
    index: BackupIndex, now: int, retention_days: int
) -> tuple[list[BackupInfo], list[BackupInfo]]:
    """(kept, expired): entries created before ``now - retention_days * 86400`` expire."""
    cutoff = now - retention_days * DAY
    kept = [b for b in index.backups if b.created_at_unix_secs >= cutoff]
    expired = [b for b in index.backups if b.created_at_unix_secs < cutoff]
    return kept, expired


def delete_backups(store: ObjectStore, backups: list[BackupInfo]) -> None:
    """Delete each backup's archive and manifest; delete errors are ignored (as Tako does)."""
    for info in backups:
        for key in (info.archive_key, info.manifest_key):
            try:
                store.delete(key)
            except StorageError:
                pass
