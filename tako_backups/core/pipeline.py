"""Take a backup (snapshot → tar → zstd → AES-256-GCM → S3) and bring one back into staging."""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, TypeVar, cast

from ..errors import FormatError, KeyNotFoundError
from ..models import DEFAULT_RETENTION_DAYS, REASONS, BackupExtras, BackupInfo, BackupKey
from ..policy import BackupPolicy
from ..primitives.names import sanitize_segment
from ..primitives.streams import Piece
from ..progress import NO_PROGRESS, Progress
from ..storage.base import ObjectStore
from . import catalog, layout
from .archive import ZSTD_THREADS, ArchiveStats
from .chunk_reader import ChunkReader
from .copies import CopyFeed
from .crypto import Sealed
from .extract import ExtractResult, extract_stream
from .format_v2 import FORMAT_V2, V1CeilingReached
from .formats import QUEUE_DEPTH, FormatPlan, open_tar_stream, plan_format, write_v1, write_v2
from .pipes import Prefetcher

if TYPE_CHECKING:
    from .copies import CopyOutcome



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
    archive_format: int | None = None, zstd_workers: int = ZSTD_THREADS,
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
    entering it raises, the uploaded archive is deleted again and the error raised.

    The archive is format 1 (Tako's) unless ``archive_format`` is 2 (the settings' ``format``)
    or the data could pass format 1's ceiling (:func:`.formats.plan_format`, from one walk of the
    tree before the upload). A format-1 upload that passes the ceiling anyway (files grew) is
    aborted -- its upload, the copy's, its snapshots -- and the backup starts over in format 2,
    under the same id. ``zstd_workers`` goes to :func:`.archive.compressor` (format 1).
    Raises SnapshotError, StorageError (``read backup index: ...`` before the upload) or
    FormatError.
    """
    if reason not in REASONS:
        raise FormatError(f"Unknown backup reason '{reason}' (known: {', '.join(REASONS)}).")
    finish_clock = clock if clock is not None else (None if now is not None else time.time)
    started = int(now) if now is not None else int((clock or time.time)())
    backup_id = layout.new_backup_id(started)
    prefix = layout.backup_prefix(app, env, server)
    catalog.check_index(store, prefix)
    scratch = work_root / backup_id
    plan = plan_format(data_root, archive_format)
    archive_key = layout.archive_key(prefix, backup_id)
    feed: CopyFeed | None = None
    try:
        progress.start(f"Backing up {app}/{env}")
        try:
            feed = _copy_feed(copy_to, archive_key, plan)
            stats, sealed, layout_extras = _upload(store, archive_key, feed, plan.format, plan,
                                                   data_root, scratch, key, progress, zstd_workers)
        except V1CeilingReached:
            _discard_attempt(store, prefix, backup_id, feed, scratch)
            progress.start(f"Backing up {app}/{env} again, in format 2 (the archive passed "
                           "format 1's size limit)")
            feed = _copy_feed(copy_to, archive_key, plan)
            stats, sealed, layout_extras = _upload(store, archive_key, feed, FORMAT_V2, plan,
                                                   data_root, scratch, key, progress, zstd_workers)
        created = started if finish_clock is None else max(started, int(finish_clock()))
        progress.finish()
    except BaseException:
        _discard_attempt(store, prefix, backup_id, feed, scratch)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    info = BackupInfo(
        id=backup_id, app=app, environment=env, server=sanitize_segment(server),
        created_at_unix_secs=created, size_bytes=sealed.size_bytes, sha256_hex=sealed.sha256_hex,
        archive_key=layout.archive_key(prefix, backup_id),
        manifest_key=layout.manifest_key(prefix, backup_id), encryption=sealed.encryption,
        extras=BackupExtras(files=stats.files, bytes=stats.bytes,
                            sqlite_files=sorted(stats.sqlite_names), reason=reason, **layout_extras),
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


def _copy_feed(copy_to: ObjectStore | None, archive_key: str, plan: FormatPlan) -> CopyFeed | None:
    return None if copy_to is None else CopyFeed(copy_to, archive_key, expected_size=plan.bound)


def _upload(store: ObjectStore, archive_key: str, feed: CopyFeed | None, fmt: int, plan: FormatPlan,
            data_root: Path, scratch: Path, key: BackupKey, progress: Progress,
            zstd_workers: int) -> tuple[ArchiveStats, Sealed, dict[str, int]]:
    """One attempt: archive ``data_root`` in format ``fmt`` up to ``archive_key`` (and the copy),
    committed. Returns the stats, the manifest's crypto fields and the format-2 layout extras
    (empty for format 1). Raises V1CeilingReached (format 1 only) and what the writers raise; the
    upload is aborted then, and the caller discards the rest (:func:`_discard_attempt`)."""
    scratch.mkdir(parents=True, mode=0o700)
    with store.open_writer(archive_key, plan.bound) as upload:
        sink = upload if feed is None else feed.tee(upload)
        if fmt == FORMAT_V2:
            stats, chunked = write_v2(data_root, sink, scratch, key, progress)
            sealed, layout_extras = chunked.sealed, chunked.extras()
        else:
            stats, sealed = write_v1(data_root, sink, scratch, key, progress, ceiling=plan.ceiling,
                                     zstd_workers=zstd_workers)
            layout_extras = {}
        upload.commit()
    return stats, sealed, layout_extras


def _discard_attempt(store: ObjectStore, prefix: str, backup_id: str, feed: CopyFeed | None,
                     scratch: Path) -> None:
    """After a failed attempt: drop the copy's upload, delete what the bucket holds of the
    backup unless the index names it, and remove the snapshots."""
    if feed is not None:
        feed.cancel()
    catalog.discard_unrecorded(store, prefix, backup_id)
    shutil.rmtree(scratch, ignore_errors=True)


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
                        progress: Progress = NO_PROGRESS,
                        wanted: Callable[[str], bool] | None = None) -> ExtractResult:
    """Stream the archive from ``source`` (either format) into ``tree``; verify everything at the end.

    Returns what :func:`extract_stream` reports (``wanted``: only the members it accepts are
    written). A tampered archive raises IntegrityError even where extraction failed first. The
    caller must discard ``tree`` on any error.
    """
    return read_verified_tar(source, info, key, lambda tar: extract_stream(tar, tree, wanted=wanted),
                             progress)


T = TypeVar("T")


def read_verified_tar(source, info: BackupInfo, key: BackupKey,  # type: ignore[no-untyped-def]
                      consume: Callable[[BinaryIO], T], progress: Progress = NO_PROGRESS) -> T:
    """Hand the tar stream of the archive ``source`` (either format) to ``consume``, then read
    what it left and verify everything (size, SHA-256 and the GCM tag; in format 2 every chunk
    and the footer); returns what ``consume`` returned, only once all of it verified.

    Reading ``source``, SHA-256, AES-GCM and zstd run on a helper thread
    (:func:`.formats.open_tar_stream`); ``consume`` runs on this one, fed through a queue of at
    most ``QUEUE_DEPTH`` pieces of at most 1 MiB. Whatever ``consume`` did is unverified until
    this returns: on any error the caller discards it. Raises IntegrityError, FormatError, and
    what ``consume`` raises.
    """
    stream = open_tar_stream(source, info, key)

    def produce(put: Callable[[Piece], None]) -> None:
        for chunk in stream.chunks():
            put(chunk)

    with Prefetcher(produce, depth=QUEUE_DEPTH, name="tako-unseal") as chunks:
        reported = 0

        def next_chunk() -> Piece | None:
            nonlocal reported
            chunk = chunks.get()
            done = stream.bytes_read
            if done > reported:
                progress.advance(done - reported)
                reported = done
            return chunk

        try:
            result = consume(cast(BinaryIO, ChunkReader(next_chunk)))
            while next_chunk():
                pass
        except FormatError:
            chunks.stop()
            stream.verify()
            raise
    stream.verify()
    progress.advance(stream.bytes_read - reported)
    return result
