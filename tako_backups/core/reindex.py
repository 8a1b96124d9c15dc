"""The self-healing index: read ``index.json``, or rebuild it from the manifests when it is gone
(while manifests are there) or unreadable -- when the bucket can be listed."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import FormatError, ListDenied, ObjectNotFound
from ..models import BackupIndex, BackupInfo
from ..storage.base import ObjectStore
from . import catalog
from .layout import index_key

__all__ = ["IndexRead", "read_or_rebuild", "reindex", "replace_entry"]


@dataclass(frozen=True)
class IndexRead:
    """The index, why it had to be rebuilt from manifests (None: it was read as it is), and
    whether a rebuild was wanted but the bucket refused the listing it needs."""

    index: BackupIndex
    rebuilt_because: str | None = None  # "missing" | "unreadable"
    listing_denied: bool = False

    @property
    def rebuilt(self) -> bool:
        return self.rebuilt_because is not None


def read_or_rebuild(store: ObjectStore, prefix: str) -> IndexRead:
    """Read the index under ``prefix``; when it is missing but manifests exist, or it is not a
    valid index, rebuild it from the manifests (nothing is written: see :func:`reindex`).

    A missing index without manifests is an empty index, not a rebuild; so is a missing index
    when the bucket cannot be listed (``listing_denied``). Raises FormatError ``parse backup
    index: ...`` for an invalid index that cannot be rebuilt without a listing, StorageError.
    """
    try:
        data = store.get_bytes(index_key(prefix))
    except ObjectNotFound:
        try:
            rebuilt = catalog.rebuild_index(store, prefix)
        except ListDenied:
            return IndexRead(BackupIndex(), None, listing_denied=True)
        return IndexRead(rebuilt, "missing" if rebuilt.backups else None)
    try:
        return IndexRead(BackupIndex.from_json(data))
    except FormatError as exc:
        try:
            return IndexRead(catalog.rebuild_index(store, prefix), "unreadable")
        except ListDenied:
            raise FormatError(f"parse backup index: {exc}") from None


def reindex(store: ObjectStore, prefix: str) -> BackupIndex:
    """Rebuild the index from every manifest under ``prefix`` whose archive exists, and write it
    (one PUT). Raises StorageError."""
    index = catalog.rebuild_index(store, prefix)
    catalog.write_index(store, prefix, index)
    return index


def replace_entry(store: ObjectStore, prefix: str, old: BackupInfo, new: BackupInfo) -> BackupIndex:
    """Write the index with ``new`` in place of ``old`` (``new`` is added when ``old`` is not
    there; an unreadable index is rebuilt from manifests first). The caller holds the prefix's
    only writer (the server's app lock). Raises StorageError."""
    current = read_or_rebuild(store, prefix).index
    kept = [b for b in current.backups if b.id not in (old.id, new.id)]
    index = BackupIndex(backups=[*kept, new])
    catalog.write_index(store, prefix, index)
    return index
