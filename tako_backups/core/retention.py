"""Retention: which index entries are old enough to drop, and dropping them.

Tako drops entries older than ``now - retention_days``. We add a floor: the newest
``floor`` backups that are intact (their archive exists with the manifest's size) are never
dropped, and age counts from the newest backup, so a server that stopped backing up never
loses its last good copies.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import StorageError
from ..models import BackupIndex, BackupInfo
from ..storage.base import ObjectStore

DAY = 86_400
DEFAULT_FLOOR = 3


def split_expired(
    index: BackupIndex, now: int, retention_days: int, *, floor: int = DEFAULT_FLOOR,
    intact: Callable[[BackupInfo], bool] | None = None,
) -> tuple[list[BackupInfo], list[BackupInfo]]:
    """(kept, expired), both newest first.

    An entry expires when it was created before ``reference - retention_days * 86400``, where
    the reference is the newest backup's time (or ``now`` when that is earlier), unless it is one
    of the newest ``floor`` entries for which ``intact`` holds (all entries count as intact when
    ``intact`` is None).
    """
    backups = list(index.backups)
    newest = max((b.created_at_unix_secs for b in backups), default=now)
    cutoff = min(now, newest) - retention_days * DAY
    protected: set[str] = set()
    for info in backups:
        if len(protected) >= floor:
            break
        if intact is None or intact(info):
            protected.add(info.id)
    kept = [b for b in backups if b.created_at_unix_secs >= cutoff or b.id in protected]
    expired = [b for b in backups if b not in kept]
    return kept, expired


def archive_intact(store: ObjectStore) -> Callable[[BackupInfo], bool]:
    """A predicate: the archive object exists with the size its manifest records."""

    def check(info: BackupInfo) -> bool:
        try:
            head = store.head(info.archive_key)
        except StorageError:
            return False
        return head is not None and head.size == info.size_bytes

    return check


def delete_backups(store: ObjectStore, backups: list[BackupInfo]) -> None:
    """Delete each backup's archive and manifest; delete errors are ignored (as Tako does)."""
    for info in backups:
        for key in (info.archive_key, info.manifest_key):
            try:
                store.delete(key)
            except StorageError:
                pass
