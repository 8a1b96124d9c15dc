"""The second copy of each backup (3-2-1): one encrypted stream into two buckets, a lagging copy
brought up to date, and reads that fall back to the copy.

Writing: :class:`CopyFeed` is the copy's side of one backup. The backup's upload to the primary
bucket is wrapped by :meth:`CopyFeed.tee`, so every encrypted chunk goes to the primary writer and
is handed to the copy's own thread, which uploads it to the copy bucket under the same key: one
archive pass, no temporary file, at most ``depth`` chunks waiting in between. A copy that fails,
or takes no data for ``stall_timeout`` seconds, is dropped (its upload aborted) while the
primary goes on; a slow copy slows the backup down (the queue is bounded), it never grows memory.
Once the primary is recorded, :meth:`CopyFeed.finish` completes the copy's upload, checks its size
against the manifest (the SHA-256 was computed once, by the sealer, over the very bytes both
writers got) and records the copy's own manifest and index (same prefix, same retention).

Syncing: :func:`copy_backup` streams one backup from one bucket to the other, hashing while it
streams, and records it there; :func:`missing_backups` says which backups a copy lacks.

Reading: :func:`first_working` runs an action on the primary, then on the copy when the primary
is unreachable, lacks the object or fails its checksum (:data:`FALLBACK_ERRORS`).
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ..errors import FormatError, IntegrityError, NotFoundError, StorageError, TakoError
from ..models import BackupInfo
from ..primitives.streams import Sink
from ..storage.base import ObjectStore, ObjectWriter
from . import catalog
from .crypto import CHECKSUM_MISMATCH

if TYPE_CHECKING:
    from ..policy import BackupPolicy

__all__ = ["FALLBACK_ERRORS", "COPY", "PRIMARY", "CopyFeed", "CopyOutcome", "Fallback", "Place",
           "copy_backup", "first_working", "missing_backups"]

log = logging.getLogger(__name__)

PRIMARY, COPY = "primary", "copy"
QUEUE_DEPTH = 4
STALL_TIMEOUT = 120.0
CANCEL_WAIT = 10.0
CHUNK = 1 << 20
FALLBACK_ERRORS = (StorageError, NotFoundError, IntegrityError)
_END = object()
T = TypeVar("T")


@dataclass(frozen=True)
class CopyOutcome:
    """How the copy of one backup went: ``ok``, or the one-line ``error``; ``pruned`` are the
    backups the copy's retention dropped."""

    ok: bool
    error: str | None = None
    pruned: list[BackupInfo] = field(default_factory=list)


class CopyFeed:
    """The copy's side of one backup: a thread that uploads ``key`` to ``store`` from the chunks
    a :meth:`tee` hands over (see the module docstring). Its methods never raise."""

    def __init__(self, store: ObjectStore, key: str, *, depth: int = QUEUE_DEPTH,
                 stall_timeout: float | None = None, expected_size: int | None = None) -> None:
        self.store, self.key = store, key
        self.expected_size = expected_size
        self.stall_timeout = STALL_TIMEOUT if stall_timeout is None else stall_timeout
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._error: str | None = None
        self._cancelled = threading.Event()
        self._committed: int | None = None
        self._thread = threading.Thread(target=self._run, name="tako-copy", daemon=True)
        self._thread.start()

    @property
    def error(self) -> str | None:
        """Why the copy was dropped, or None while it goes on."""
        return self._error

    def tee(self, primary: Sink) -> Sink:
        """A sink that writes to ``primary`` (whose errors it raises) and feeds this copy."""
        return _Tee(primary, self)

    def feed(self, data: bytes | memoryview) -> None:
        """Hand ``data`` to the copy's thread; waits while ``depth`` chunks are queued, and drops
        the copy when it waits ``stall_timeout`` seconds."""
        if self._error is not None:
            return
        chunk = data if isinstance(data, bytes) else bytes(data)
        if not chunk:
            return
        try:
            self._queue.put(chunk, timeout=self.stall_timeout)
        except queue.Full:
            self._fail(f"The copy's bucket took no data for {self.stall_timeout:g} s.")
            self._cancelled.set()

    def cancel(self) -> None:
        """Drop the copy, for a backup that failed: its thread aborts the upload; waits for that
        (at most :data:`CANCEL_WAIT` seconds, in case its bucket hangs)."""
        self._fail("The backup did not finish.")
        self._cancelled.set()
        try:
            self._queue.put_nowait(_END)  # wakes the thread at once
        except queue.Full:
            pass
        self._thread.join(min(self.stall_timeout, CANCEL_WAIT))

    def finish(self, info: BackupInfo, *, prefix: str, policy: BackupPolicy, now: int) -> CopyOutcome:
        """Complete the copy's upload of ``info``'s archive, check its size and record the copy's
        manifest and index under ``prefix`` with ``policy`` at ``now``. When anything fails the
        copy's archive is removed again (or, when its bucket no longer answers, left for the
        leftover clean-up) and the outcome says why."""
        if self._error is None:
            try:
                self._queue.put(_END, timeout=self.stall_timeout)
            except queue.Full:
                self._fail(f"The copy's bucket took no data for {self.stall_timeout:g} s.")
        if self._error is not None:
            self._cancelled.set()
        self._thread.join(self.stall_timeout if self._error is None else 1.0)
        if self._thread.is_alive():
            self._fail(f"The copy's upload did not finish within {self.stall_timeout:g} s.")
            self._cancelled.set()
        if self._error is not None:
            return CopyOutcome(False, self._error)
        problem = _size_problem(self.store, info, self._committed)
        if problem is not None:
            _delete_quietly(self.store, info.archive_key)
            return CopyOutcome(False, problem)
        try:
            pruned = catalog.record_backup(self.store, prefix, info, policy=policy, now=now).expired
        except TakoError as exc:
            return CopyOutcome(False, f"Could not record the copy of {info.id}: {exc}")
        return CopyOutcome(True, pruned=pruned)

    def _fail(self, message: str) -> None:
        if self._error is None:
            self._error = message

    def _run(self) -> None:
        writer: ObjectWriter | None = None
        try:
            writer = self.store.open_writer(self.key, self.expected_size)
            while not self._cancelled.is_set():
                try:
                    chunk = self._queue.get(timeout=0.5)
                except queue.Empty:
                    continue
                if chunk is _END:
                    if self._error is None:
                        self._committed = writer.commit()
                        writer = None
                    return
                if self._error is None:
                    writer.write(chunk)  # type: ignore[arg-type]  # every other item is bytes
        except TakoError as exc:
            self._fail(f"Uploading the copy failed: {exc}")
        except Exception as exc:  # a bug must not take the primary down with it
            log.exception("the copy's upload of %s failed unexpectedly", self.key)
            self._fail(f"Uploading the copy failed unexpectedly ({exc.__class__.__name__}).")
        finally:
            if writer is not None:
                try:
                    writer.abort()
                except TakoError:
                    pass
            self._drain()

    def _drain(self) -> None:
        """Empty the queue, so a writer blocked on a full queue goes on at once."""
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return


class _Tee:
    """Writes to the primary sink, then feeds the copy (which never raises)."""

    def __init__(self, primary: Sink, copy: CopyFeed) -> None:
        self._primary, self._copy = primary, copy

    def write(self, data: bytes | memoryview) -> int:
        chunk = data if isinstance(data, bytes) else bytes(data)
        written = self._primary.write(chunk)
        self._copy.feed(chunk)
        return written


def _size_problem(store: ObjectStore, info: BackupInfo, committed: int | None) -> str | None:
    """Why the copy's archive does not match the manifest, or None."""
    if committed != info.size_bytes:
        return (f"The copy of {info.id} got {committed} bytes, not the {info.size_bytes} of the "
                "backup.")
    try:
        head = store.head(info.archive_key)
    except StorageError as exc:
        return f"Could not check the copy of {info.id}: {exc}"
    if head is None or head.size != info.size_bytes:
        return f"The copy of {info.id} is not on its bucket with {info.size_bytes} bytes after the upload."
    return None


def _delete_quietly(store: ObjectStore, key: str) -> None:
    try:
        store.delete(key)
    except StorageError:
        pass


def missing_backups(backups: Sequence[BackupInfo], copy: ObjectStore, prefix: str) -> list[BackupInfo]:
    """The ``backups`` (newest first) that ``copy`` lacks: not in its index, or whose archive is
    missing or has another size there. Raises StorageError when the copy cannot be read."""
    try:
        present = {b.id for b in catalog.read_index(copy, prefix).backups}
    except FormatError:
        present = set()
    missing = []
    for info in backups:
        head = copy.head(info.archive_key) if info.id in present else None
        if head is None or head.size != info.size_bytes:
            missing.append(info)
    return missing


def copy_backup(source: ObjectStore, target: ObjectStore, prefix: str, info: BackupInfo, *,
                policy: BackupPolicy, now: int) -> list[BackupInfo]:
    """Stream ``info``'s archive from ``source`` to ``target`` (SHA-256 and size checked while it
    streams; nothing is committed unless they match the manifest), then record it in
    ``target``'s index under ``prefix`` with ``policy``. Returns what ``target``'s retention
    dropped. Raises IntegrityError (the source object does not match its manifest),
    StorageError (ObjectNotFound when the source lacks it)."""
    digest, size = hashlib.sha256(), 0
    with (source.open_read(info.archive_key) as body,
          target.open_writer(info.archive_key, info.size_bytes) as upload):
        while chunk := body.read(CHUNK):
            size += len(chunk)
            if size > info.size_bytes:
                raise IntegrityError(f"{CHECKSUM_MISMATCH} ({info.id} is larger than its manifest says)")
            digest.update(chunk)
            upload.write(chunk)
        if size != info.size_bytes or digest.hexdigest() != info.sha256_hex:
            raise IntegrityError(f"{CHECKSUM_MISMATCH} ({info.id})")
        upload.commit()
    return catalog.record_backup(target, prefix, info, policy=policy, now=now).expired


@dataclass(frozen=True)
class Place:
    """One place a backup may be read from: ``name`` (:data:`PRIMARY` or :data:`COPY`), its store
    and bucket."""

    name: str
    store: ObjectStore
    bucket: str


@dataclass(frozen=True)
class Fallback(Generic[T]):
    """What :func:`first_working` got: the ``value``, where from, and why earlier places failed."""

    value: T
    used: Place
    failures: tuple[str, ...] = ()

    @property
    def fell_back(self) -> bool:
        return bool(self.failures)

    def source_fields(self) -> dict[str, Any]:
        """Which copy was used, for a reply: ``source``, ``source_bucket`` and, after a
        fallback, ``fallback_reason`` (why the earlier places failed)."""
        out: dict[str, Any] = {"source": self.used.name, "source_bucket": self.used.bucket}
        if self.failures:
            out["fallback_reason"] = "; ".join(self.failures)
        return out


def first_working(places: Sequence[Place], action: Callable[[Place], T]) -> Fallback[T]:
    """``action`` on each place in turn until one does not raise one of :data:`FALLBACK_ERRORS`
    (unreachable, missing, checksum); other errors are raised at once. When every place fails,
    the last error is raised, its message naming every place's failure."""
    failures: list[str] = []
    for n, place in enumerate(places):
        try:
            return Fallback(action(place), place, tuple(failures))
        except FALLBACK_ERRORS as exc:
            failures.append(f"{place.name} (bucket {place.bucket}): {exc}")
            if n == len(places) - 1:
                if len(places) == 1:
                    raise
                raise type(exc)(f"Every copy failed: {'; '.join(failures)}") from None
    raise ValueError("first_working needs at least one place.")
