"""Read and write the bucket's manifests and ``index.json`` under one backup prefix.

The index is merged, never blindly overwritten: :func:`record_backup` re-reads it, lists the
prefix and keeps every backup whose objects are there, so two writers finishing at once (two
processes on one prefix, or a core caller without the server's app lock) never drop each other's
entry, and no failure leaves the index naming an archive or manifest that is missing.

Listing is optional, as it is for Tako (which needs only GetObject, PutObject and DeleteObject):
when the store refuses a listing (:class:`~tako_backups.errors.ListDenied`), recording falls back
to Tako's read-index -> merge -> write-index, and the self-healing parts that need a listing
(adopting manifests the index lacks, dropping entries whose archive is gone, rebuilding a lost
index, cleaning up leftovers) are skipped; results say so (``listing_denied``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import FormatError, ListDenied, NotFoundError, ObjectNotFound, StorageError
from ..models import DEFAULT_RETENTION_DAYS, JSON_CONTENT_TYPE, BackupIndex, BackupInfo, sort_newest_first
from ..policy import BackupPolicy
from ..primitives.text import printable
from ..storage.base import ObjectStore
from . import retention
from .layout import (
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
    store.put_bytes(index_key(prefix), ordered.to_json(), JSON_CONTENT_TYPE)


def write_manifest(store: ObjectStore, info: BackupInfo) -> None:
    """Write the manifest ``{id}.json`` (one PUT, as Tako writes it). Raises StorageError."""
    store.put_bytes(info.manifest_key, info.to_json(), JSON_CONTENT_TYPE)


def read_manifest(store: ObjectStore, prefix: str, backup_id: str) -> BackupInfo:
    """The manifest ``{id}.json``. Raises NotFoundError when it does not exist."""
    try:
        data = store.get_bytes(manifest_key(prefix, backup_id))
    except ObjectNotFound:
        raise NotFoundError(f"Backup not found: {printable(backup_id)}") from None  # Tako's text
    return BackupInfo.from_json(data)


def check_backup_id(backup_id: str) -> None:
    """Raises NotFoundError when ``backup_id`` is not shaped like a backup id."""
    if not is_backup_id(backup_id) or "\n" in backup_id:
        raise NotFoundError(
            f"'{printable(backup_id)}' is not a backup id (expected b<unix seconds>-<8 chars>, "
            "see `tako backups list`)."
        )


def find_backup(store: ObjectStore, prefix: str, backup_id: str) -> BackupInfo:
    """Look a backup up in the index, falling back to its manifest.

    Raises NotFoundError for an unknown id and FormatError for a malformed document.
    """
    check_backup_id(backup_id)
    try:
        found = read_index(store, prefix).find(backup_id)
    except FormatError:
        found = None
    return found if found is not None else read_manifest(store, prefix, backup_id)


def list_prefix(store: ObjectStore, prefix: str) -> dict[str, int]:
    """Every object under ``prefix``: key -> size. Raises ListDenied or StorageError."""
    return {obj.key: obj.size for obj in store.list(prefix)}


def try_list(store: ObjectStore, prefix: str) -> dict[str, int] | None:
    """:func:`list_prefix`, or None when the store refuses to list (the one place that turns a
    refused listing into "no listing"). Raises StorageError for any other failure."""
    try:
        return list_prefix(store, prefix)
    except ListDenied:
        return None


def rebuild_index(store: ObjectStore, prefix: str) -> BackupIndex:
    """An index of every readable manifest under ``prefix`` whose archive exists (malformed
    manifests and manifests without an archive are left out). Raises ListDenied or StorageError."""
    listed = list_prefix(store, prefix)
    return BackupIndex(backups=sort_newest_first(list(_listed_manifests(store, prefix, listed, {}).values())))


def check_index(store: ObjectStore, prefix: str) -> None:
    """Tako's step before anything is uploaded: read the index (missing = empty). A malformed
    index is fine when the prefix can be listed (recording rebuilds it from the manifests), and
    stops the backup when it cannot.

    Raises StorageError ``read backup index: ...`` or FormatError ``parse backup index: ...``.
    """
    try:
        read_index(store, prefix)
    except FormatError as exc:
        try:
            next(iter(store.list(prefix)), None)
        except ListDenied:
            raise FormatError(f"parse backup index: {exc}") from None
    except StorageError as exc:
        raise type(exc)(f"read backup index: {exc}") from None


@dataclass(frozen=True)
class Recorded:
    """What :func:`record_backup` did: the backups retention dropped (their objects deleted) and
    whether the prefix could not be listed (so the merge ran without self-healing)."""

    expired: list[BackupInfo]
    listing_denied: bool = False


def record_backup(
    store: ObjectStore, prefix: str, info: BackupInfo, *, retention_days: int = DEFAULT_RETENTION_DAYS,
    now: int, policy: BackupPolicy | None = None,
) -> Recorded:
    """Record a backup whose archive is on the bucket: manifest, index, then retention deletes.

    Retention is ``policy`` (:func:`.retention.select`) when given, else Tako's age rule of
    ``retention_days``; either way with the floor of the newest 3 intact backups.

    The index is written before anything expired is deleted, so a failure at any step never
    leaves it naming a missing object. Each round re-reads the index, lists the prefix (when the
    store allows it), keeps the entries whose archive is present, adds manifests of other finished
    backups it lacks and applies retention; it writes only when that differs from what it read,
    and stops once a re-read finds the index as wanted (at most MERGE_ROUNDS writes). Without a
    listing every entry of the index is kept (Tako's merge). Expired backups' objects are deleted
    (delete errors are ignored, as Tako does).

    Raises StorageError (or FormatError: a malformed index that cannot be rebuilt without a
    listing); then the manifest and archive are deleted again unless the index names the backup
    (:func:`discard_unrecorded`), so a failure leaves no object the index does not name.
    """
    listing = True
    expired: dict[str, BackupInfo] = {}
    wanted: list[BackupInfo] = []
    rule = policy if policy is not None else BackupPolicy(retention_days=retention_days)
    try:
        write_manifest(store, info)
        for _ in range(MERGE_ROUNDS):
            current, listed = _read_for_merge(store, prefix, listing)
            listing = listed is not None
            wanted, dropped = _merge(store, prefix, info, current, listed, rule, now)
            expired.update((b.id, b) for b in dropped)
            if current is not None and current.backups == wanted:
                break
            write_index(store, prefix, BackupIndex(backups=wanted))
    except BaseException:
        discard_unrecorded(store, prefix, info.id)
        raise
    kept_ids = {b.id for b in wanted}
    gone = [b for b in expired.values() if b.id not in kept_ids]
    retention.delete_backups(store, gone)
    return Recorded(sort_newest_first(gone), listing_denied=not listing)


def _read_for_merge(store: ObjectStore, prefix: str,
                    listing: bool) -> tuple[BackupIndex | None, dict[str, int] | None]:
    """(the index, or None when malformed; the listing, or None when refused or ``listing`` is
    off). Raises FormatError for a malformed index without a listing, StorageError."""
    try:
        current: BackupIndex | None = read_index(store, prefix)
        problem = None
    except FormatError as exc:
        current, problem = None, exc
    listed = try_list(store, prefix) if listing else None
    if current is None and listed is None:
        raise FormatError(f"parse backup index: {problem}")
    return current, listed


def _merge(
    store: ObjectStore, prefix: str, info: BackupInfo, current: BackupIndex | None,
    listed: dict[str, int] | None, policy: BackupPolicy, now: int,
) -> tuple[list[BackupInfo], list[BackupInfo]]:
    """(entries wanted newest first, entries expired). Without ``listed`` nothing is adopted or
    dropped for a missing object, and the retention floor checks archives with HEAD requests."""
    entries = {b.id: b for b in (current.backups if current is not None else [])}
    entries[info.id] = info
    if listed is not None:
        entries.update(_listed_manifests(store, prefix, listed, entries))

    def present(b: BackupInfo) -> bool:
        return (listed is None or b.id == info.id or not b.archive_key.startswith(prefix)
                or b.archive_key in listed)

    head_intact = retention.archive_intact(store)

    def intact(b: BackupInfo) -> bool:
        if b.id == info.id:
            return True
        if listed is None:
            return head_intact(b)
        return present(b) and listed.get(b.archive_key, b.size_bytes) == b.size_bytes

    known = BackupIndex(backups=sort_newest_first(list(entries.values())))
    chosen = retention.select(known.backups, policy, now, intact=intact)
    wanted = [k.info for k in chosen.kept if present(k.info)]
    expired = chosen.expired
    if listed is not None:
        for b in wanted:
            if b.id != info.id and b.manifest_key.startswith(prefix) and b.manifest_key not in listed:
                _restore_manifest(store, b)
    return wanted, expired


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
        write_manifest(store, info)
    except StorageError:
        pass


def discard_unrecorded(store: ObjectStore, prefix: str, backup_id: str) -> None:
    """After a failed backup: unless the index names ``backup_id`` (its write landed before the
    failure), delete its manifest, then its archive. Needs no listing; best effort (an index that
    cannot be read counts as not naming it, delete errors are ignored)."""
    try:
        if read_index(store, prefix).find(backup_id) is not None:
            return
    except (FormatError, StorageError):
        pass
    for key in (manifest_key(prefix, backup_id), archive_key(prefix, backup_id)):
        try:
            store.delete(key)
        except StorageError:
            pass

