"""Take a backup (snapshot → tar → zstd → AES-256-GCM → S3) and bring one back into staging."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import FormatError, KeyNotFoundError
from ..models import BackupIndex, BackupInfo, BackupKey
from ..progress import NO_PROGRESS, Progress
from ..storage.base import ObjectStore
from . import catalog, layout, retention
from .archive import ArchiveStats, write_archive
from .crypto import DecryptingReader, EncryptingWriter
from .extract import extract_stream


@dataclass(frozen=True)
class BackupResult:
    info: BackupInfo
    stats: ArchiveStats
    pruned: list[BackupInfo]


def backup(
    store: ObjectStore, *, data_root: Path, work_root: Path, app: str, env: str, server: str,
    key: BackupKey, retention_days: int, now: int | None = None,
    progress: Progress = NO_PROGRESS,
) -> BackupResult:
    """Back up ``data_root`` (``app/`` + ``tako/``) and record it on the bucket.

    Writes in Tako's order: archive, manifest, retention pruning, index. ``work_root`` receives
    a ``{id}/`` folder for SQLite snapshots, removed afterwards. Nothing is visible on the bucket
    if the archive upload fails. Raises SnapshotError, StorageError or FormatError.
    """
    created = int(time.time()) if now is None else now
    backup_id = layout.new_backup_id(created)
    prefix = layout.backup_prefix(app, env, server)
    scratch = work_root / backup_id
    scratch.mkdir(parents=True, mode=0o700)
    try:
        progress.start(f"Backing up {app}/{env}")
        with store.open_writer(layout.archive_key(prefix, backup_id)) as upload:
            enc = EncryptingWriter(upload, key)
            stats = write_archive(data_root, enc, scratch, progress)
            sealed = enc.finish()
            upload.commit()
        progress.finish()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    info = BackupInfo(
        id=backup_id, app=app, environment=env, server=server, created_at_unix_secs=created,
        size_bytes=sealed.size_bytes, sha256_hex=sealed.sha256_hex,
        archive_key=layout.archive_key(prefix, backup_id),
        manifest_key=layout.manifest_key(prefix, backup_id), encryption=sealed.encryption,
    )
    store.put_bytes(info.manifest_key, info.to_json())
    try:
        index = catalog.read_index(store, prefix)
    except FormatError:
        index = catalog.rebuild_index(store, prefix)
    others = [b for b in index.backups if b.id != info.id]
    kept, expired = retention.split_expired(
        BackupIndex(backups=[info, *others]), created, retention_days
    )
    retention.delete_backups(store, expired)
    catalog.write_index(store, prefix, BackupIndex(backups=kept))
    return BackupResult(info, stats, expired)


def pick_key(info: BackupInfo, keys: Iterable[BackupKey]) -> BackupKey:
    """The key the manifest names. Raises KeyNotFoundError listing what is known."""
    keys = list(keys)
    for key in keys:
        if key.id == info.encryption.key_id:
            return key
    known = ", ".join(k.id for k in keys) or "none"
    raise KeyNotFoundError(
        f"Backup {info.id} was encrypted with key '{info.encryption.key_id}', which is not among "
        f"the backup keys available ({known}); add the old key back to the env's backup_keys."
    )


def restore_into(
    store: ObjectStore, info: BackupInfo, keys: Iterable[BackupKey], staging: Path,
    progress: Progress = NO_PROGRESS,
) -> Path:
    """Download, check and extract ``info`` into ``staging/tree`` in one streaming pass.

    The archive is hashed while it streams; the extracted tree is returned only after size,
    SHA-256 and the GCM tag all verified. On any failure ``staging`` is removed and the error
    (IntegrityError, KeyNotFoundError, UnsafeArchiveError, FormatError, StorageError) raised.
    ``staging`` must not exist yet; its parent must.
    """
    key = pick_key(info, keys)
    staging.mkdir(mode=0o700)
    tree = staging / "tree"
    tree.mkdir()
    try:
        progress.start(f"Restoring {info.id}", info.size_bytes)
        with store.open_read(info.archive_key) as body:
            decrypt_and_extract(body, info, key, tree, progress)
        progress.finish()
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return tree


def decrypt_and_extract(source, info: BackupInfo, key: BackupKey, tree: Path,  # type: ignore[no-untyped-def]
                        progress: Progress = NO_PROGRESS) -> int:
    """Stream ciphertext from ``source`` into ``tree``; verify everything at the end.

    Returns the number of archive members. The caller must discard ``tree`` on any error.
    """
    import zstandard

    reader = DecryptingReader(_Counting(source, progress), info, key)
    dctx = zstandard.ZstdDecompressor()
    try:
        with dctx.stream_reader(reader, read_size=1 << 20, closefd=False) as plain:
            count = extract_stream(plain, tree)
            while plain.read(1 << 20):
                pass
    except zstandard.ZstdError:
        reader.verify()
        raise FormatError(f"Backup {info.id} is not a valid zstd stream.") from None
    except FormatError:
        reader.verify()
        raise
    reader.verify()
    return count


class _Counting:
    def __init__(self, source, progress: Progress) -> None:  # type: ignore[no-untyped-def]
        self._src, self._progress = source, progress

    def read(self, n: int = -1) -> bytes:
        data = self._src.read(n)
        self._progress.advance(len(data))
        return data
