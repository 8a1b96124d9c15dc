"""Take a backup (snapshot → tar → zstd → AES-256-GCM → S3) and bring one back into staging."""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, BinaryIO, cast

from ..errors import FormatError, KeyNotFoundError
from ..models import DEFAULT_RETENTION_DAYS, REASONS, BackupExtras, BackupInfo, BackupKey
from ..policy import BackupPolicy
from ..primitives.names import sanitize_segment
from ..primitives.streams import Sink
from ..progress import NO_PROGRESS, Progress
from ..storage.base import ObjectStore
from . import catalog, layout
from .archive import ArchiveStats, write_archive
from .chunk_reader import ChunkReader
from .copies import CopyFeed
from .crypto import DecryptingReader, EncryptingWriter, Sealed
from .extract import ExtractResult, extract_stream
from .pipes import Prefetcher, ThreadedWriter

if TYPE_CHECKING:
    from .copies import CopyOutcome

CHUNK = 1 << 20
QUEUE_DEPTH = 2  # chunks of 1 MiB between two threads: deeper queues bought no speed (issue 14)
MAX_WINDOW = 128 << 20  # zstd frames needing a larger window are refused (Tako writes 2 MiB)


@dataclass(frozen=True)
class BackupResult:
    """A recorded backup: its manifest, what was archived, what retention dropped, whether the
    prefix could not be listed (so self-healing was skipped) and, when a copy was written, how
    that went."""

    info: BackupInfo
    stats: ArchiveStats
    pruned: list[BackupInfo]
    listing_denied: bool = False
    copy: CopyOutcome | None = None


@dataclass(frozen=True)
class Restored:
    """A backup extracted into staging: ``tree`` holds ``app/`` and ``tako/``; ``extracted``
    says what the extraction did (its :meth:`~.extract.ExtractResult.note` is for the reply)."""

    tree: Path
    extracted: ExtractResult


def backup(
    store: ObjectStore, *, data_root: Path, work_root: Path, app: str, env: str, server: str,
    key: BackupKey, retention_days: int = DEFAULT_RETENTION_DAYS, now: int | None = None,
    clock: Callable[[], float] | None = None, progress: Progress = NO_PROGRESS, reason: str = "manual",
    record_guard: Callable[[], AbstractContextManager[object]] | None = None,
    policy: BackupPolicy | None = None, copy_to: ObjectStore | None = None,
) -> BackupResult:
    """Back up ``data_root`` (``app/`` + ``tako/``) and record it on the bucket, in Tako's order.

    The index is read first (nothing is uploaded when it cannot be read); then the archive is
    streamed up, the manifest written, the index merged and written, and what retention dropped
    deleted (see :func:`catalog.record_backup`; ``policy`` replaces ``retention_days`` when
    given). With ``copy_to``, the one encrypted stream also goes to that store, which gets its own
    manifest and index under the same prefix (:class:`.copies.CopyFeed`); its failure never fails
    the backup but is reported in the result's ``copy``. The id's time is the start (``now``, else the
    clock); ``created_at_unix_secs`` is taken once the archive is sealed and hashed (from
    ``clock``; when only ``now`` is given, it is ``now``). The manifest's ``server`` is the
    sanitized label (the prefix segment); ``app`` and ``environment`` stay as given.
    ``work_root`` receives a ``{id}/`` folder for SQLite snapshots, removed afterwards. When any
    step after the archive upload began fails, its archive and manifest are deleted again unless
    the index names the backup. ``reason`` (one of :data:`REASONS`) goes into the manifest's
    extras with the file count, bytes and SQLite files. ``record_guard``, when given, is held
    while the backup is recorded (the server's app lock, for an upload that ran without it); if
    entering it raises, the uploaded archive is deleted again and the error raised. Raises
    SnapshotError, StorageError (``read backup index: ...`` before the upload) or FormatError.
    """
    if reason not in REASONS:
        raise FormatError(f"Unknown backup reason '{reason}' (known: {', '.join(REASONS)}).")
    finish_clock = clock if clock is not None else (None if now is not None else time.time)
    started = int(now) if now is not None else int((clock or time.time)())
    backup_id = layout.new_backup_id(started)
    prefix = layout.backup_prefix(app, env, server)
    catalog.check_index(store, prefix)
    scratch = work_root / backup_id
    scratch.mkdir(parents=True, mode=0o700)
    feed = None if copy_to is None else CopyFeed(copy_to, layout.archive_key(prefix, backup_id))
    try:
        progress.start(f"Backing up {app}/{env}")
        with store.open_writer(layout.archive_key(prefix, backup_id)) as upload:
            sink = upload if feed is None else feed.tee(upload)
            stats, sealed = write_sealed_archive(data_root, sink, scratch, key, progress)
            created = started if finish_clock is None else max(started, int(finish_clock()))
            upload.commit()
        progress.finish()
    except BaseException:
        if feed is not None:
            feed.cancel()
        catalog.discard_unrecorded(store, prefix, backup_id)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    info = BackupInfo(
        id=backup_id, app=app, environment=env, server=sanitize_segment(server),
        created_at_unix_secs=created, size_bytes=sealed.size_bytes, sha256_hex=sealed.sha256_hex,
        archive_key=layout.archive_key(prefix, backup_id),
        manifest_key=layout.manifest_key(prefix, backup_id), encryption=sealed.encryption,
        extras=BackupExtras(files=stats.files, bytes=stats.bytes,
                            sqlite_files=sorted(stats.sqlite_names), reason=reason),
    )
    try:
        with _entered(record_guard, store, prefix, backup_id):
            recorded = catalog.record_backup(store, prefix, info, retention_days=retention_days,
                                             now=created, policy=policy)
    except BaseException:
        if feed is not None:
            feed.cancel()
        raise
    rule = policy if policy is not None else BackupPolicy(retention_days=retention_days)
    copied = None if feed is None else feed.finish(info, prefix=prefix, policy=rule, now=created)
    return BackupResult(info, stats, recorded.expired, recorded.listing_denied, copied)


@contextmanager
def _entered(guard: Callable[[], AbstractContextManager[object]] | None, store: ObjectStore,
             prefix: str, backup_id: str) -> Iterator[None]:
    """Hold ``guard`` (when given) for the block; if entering it fails, delete what the backup
    uploaded (see :func:`catalog.discard_unrecorded`) and raise."""
    if guard is None:
        yield
        return
    held = guard()
    try:
        held.__enter__()
    except BaseException:
        catalog.discard_unrecorded(store, prefix, backup_id)
        raise
    with contextlib.ExitStack() as stack:
        stack.push(held)
        yield


def write_sealed_archive(data_root: Path, sink: Sink, scratch: Path, key: BackupKey,
                         progress: Progress = NO_PROGRESS) -> tuple[ArchiveStats, Sealed]:
    """Archive ``data_root`` (tar + zstd), encrypt and hash it into ``sink``; the upload's stage.

    Reading files and tar run on this thread, zstd on its own workers, and AES-GCM + SHA-256 +
    ``sink.write`` on one more thread, joined by a queue of at most 2 chunks of 1 MiB. Raises
    SnapshotError, OSError, or what ``sink.write`` raises (StorageError).
    """
    enc = EncryptingWriter(sink, key)
    with ThreadedWriter(enc, depth=QUEUE_DEPTH, name="tako-seal") as sealer:
        stats = write_archive(data_root, sealer, scratch, progress)
    return stats, enc.finish()


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
) -> Restored:
    """Download, check and extract ``info`` into ``staging/tree`` in one streaming pass.

    The archive is hashed while it streams; the extracted tree is returned only after size,
    SHA-256 and the GCM tag all verified, with what the extraction reported. On any failure
    ``staging`` is removed and the error (IntegrityError, KeyNotFoundError, UnsafeArchiveError,
    FormatError, StorageError, OSError) raised.
    ``staging`` must not exist yet; its parent must.
    """
    key = pick_key(info, keys)
    staging.mkdir(mode=0o700)
    tree = staging / "tree"
    tree.mkdir()
    try:
        progress.start(f"Restoring {info.id}", info.size_bytes)
        with store.open_read(info.archive_key) as body:
            extracted = decrypt_and_extract(body, info, key, tree, progress)
        progress.finish()
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Restored(tree, extracted)


def decrypt_and_extract(source, info: BackupInfo, key: BackupKey, tree: Path,  # type: ignore[no-untyped-def]
                        progress: Progress = NO_PROGRESS) -> ExtractResult:
    """Stream ciphertext from ``source`` into ``tree``; verify everything at the end.

    Reading ``source``, SHA-256, AES-GCM and zstd (window at most 128 MiB) run on a helper
    thread; tar extraction runs on this one, fed through a queue of at most 2 chunks of 1 MiB.
    Returns what :func:`extract_stream` reports. The caller must discard ``tree`` on any error.
    """
    import zstandard

    reader = DecryptingReader(source, info, key)

    def produce(put: Callable[[bytes], None]) -> None:
        dctx = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW)
        with dctx.stream_reader(cast(IO[bytes], reader), read_size=CHUNK, closefd=False) as plain:
            while chunk := plain.read(CHUNK):
                put(chunk)

    with Prefetcher(produce, depth=QUEUE_DEPTH, name="tako-unseal") as chunks:
        reported = 0

        def next_chunk() -> bytes | None:
            nonlocal reported
            chunk = chunks.get()
            done = reader.bytes_read
            if done > reported:
                progress.advance(done - reported)
                reported = done
            return chunk

        try:
            result = extract_stream(cast(BinaryIO, ChunkReader(next_chunk)), tree)
            while next_chunk():
                pass
        except zstandard.ZstdError:
            chunks.stop()
            reader.verify()
            raise FormatError(f"Backup {info.id} is not a valid zstd stream.") from None
        except FormatError:
            chunks.stop()
            reader.verify()
            raise
    reader.verify()
    progress.advance(reader.bytes_read - reported)
    return result
