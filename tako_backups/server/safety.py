"""The safety copy of a restore: the replaced tree, kept on disk and uploaded in the background.

A restore keeps the tree it replaces (:mod:`.kept`) when the disk can afford it: after the
restored tree is staged, at least the reserve (the larger of 1 GiB and 5 % of the filesystem)
must stay free, or the safety backup is uploaded before the swap as it always was. The kept
tree is uploaded as a ``pre-restore`` backup by a background thread that does not hold the app's
lock (backups, deploys and drills of the app go on meanwhile); only recording the backup on the
bucket waits for the lock. The upload is then read back (size and SHA-256 against the manifest)
and the record says ``verified``. A failed upload is retried (after 5 minutes, doubling up to 6
hours), and every upload not yet verified is resumed at the next start.

While a kept tree is not verified, another restore of the app is refused (it would drop the
only copy of that data); an undo cancels the upload and swaps the tree back. A sweep drops each
verified kept tree once its grace period is over, or early when the disk runs below the reserve.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import threading
import time
from typing import Any

from ..core import catalog
from ..errors import BusyError, IntegrityError, RestoreError, TakoError
from ..models import PRE_RESTORE, BackupInfo
from ..progress import ARCHIVE_UPLOAD, VERIFY, Progress, enter_phase
from .app_backups import AppBackups
from .backup_runs import BackupRuns
from .kept import FAILED, UPLOADED, VERIFIED, KeptTrees
from .locks import AppLocks
from .operations import OperationRegistry

__all__ = ["RESERVE_FRACTION", "RESERVE_MIN", "SafetyCopies", "UploadCancelled"]

log = logging.getLogger(__name__)

RESERVE_MIN = 1 << 30
RESERVE_FRACTION = 0.05
RETRY_FIRST, RETRY_MAX = 300, 6 * 3600
SWEEP_INTERVAL = 60.0
CHUNK = 1 << 20


class UploadCancelled(TakoError):
    """The background upload of a kept tree was cancelled (an undo, or the server stopping)."""


class SafetyCopies:
    """Kept trees and their background uploads, for every app of the server. Thread-safe."""

    def __init__(self, backups: AppBackups, runs: BackupRuns, operations: OperationRegistry, *,
                 reserve: int | None = None, sweep_interval: float = SWEEP_INTERVAL) -> None:
        self.kept = KeptTrees(backups.paths)
        self._backups, self._runs, self._operations = backups, runs, operations
        self._reserve = reserve
        self._sweep_interval = sweep_interval
        self._lock = threading.Lock()
        self._uploads: dict[str, tuple[threading.Thread, threading.Event]] = {}
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None

    # ----- before a swap -----

    def check_replaceable(self, app: str) -> None:
        """Raise when the app's kept tree is not in the bucket yet: replacing it would lose it.
        BusyError while it uploads, RestoreError when its upload failed."""
        current = self.kept.get(app)
        if current is None or current.record.in_bucket():
            return
        if self.uploading(app):
            raise BusyError(f"The data the last restore of app '{app}' replaced is still uploading as its "
                            "safety backup; try again once it is done, or run `tako backups undo` to swap "
                            "it back.")
        why = (current.record.message or "unknown error").rstrip(".")
        raise RestoreError(
            f"The data the last restore of app '{app}' replaced is kept at {current.tree} but is not in the "
            f"bucket yet (its upload failed: {why}; tako-server "
            "retries it). Restoring again would lose it: run `tako backups undo` to swap it back, or "
            f"remove {current.folder} on the server to give it up.")

    def room_to_keep(self, estimate: int) -> str | None:
        """None when keeping the replaced tree leaves the reserve free once ``estimate`` more bytes
        are staged; else why not (for the reply)."""
        usage = shutil.disk_usage(self._backups.paths.root)
        reserve = self.reserve(usage.total)
        if usage.free - estimate >= reserve:
            return None
        return (f"only {usage.free >> 20} MiB free for about {estimate >> 20} MiB of restored data, and "
                f"keeping the replaced data on disk would leave less than {reserve >> 20} MiB free")

    def reserve(self, total: int) -> int:
        return self._reserve if self._reserve is not None else max(RESERVE_MIN, int(total * RESERVE_FRACTION))

    # ----- background uploads -----

    def upload_later(self, app: str) -> None:
        """Start uploading the app's kept tree in the background (no-op when one runs)."""
        with self._lock:
            running = self._uploads.get(app)
            if running is not None and running[0].is_alive():
                return
            if self._stop.is_set():
                return
            cancelled = threading.Event()
            thread = threading.Thread(target=self._upload, args=(app, cancelled), daemon=True,
                                      name=f"tako-safety-{app}")
            self._uploads[app] = (thread, cancelled)
            thread.start()

    def uploading(self, app: str) -> bool:
        with self._lock:
            running = self._uploads.get(app)
        return running is not None and running[0].is_alive()

    def cancel(self, app: str, timeout: float = 60.0) -> bool:
        """Cancel the app's upload and wait for it to stop. Returns True when none runs any more."""
        with self._lock:
            running = self._uploads.get(app)
        if running is None:
            return True
        running[1].set()
        running[0].join(timeout)
        return not running[0].is_alive()

    def wait(self, app: str, timeout: float) -> bool:
        """Wait until the app's upload (if any) ended. Returns True when none runs."""
        with self._lock:
            running = self._uploads.get(app)
        if running is not None:
            running[0].join(timeout)
            return not running[0].is_alive()
        return True

    def start(self) -> None:
        """Resume every upload not yet verified, and start the sweep (every minute)."""
        for app in self.kept.apps():
            self.upload_later(app)
        self._sweeper = threading.Thread(target=self._sweep_loop, daemon=True, name="tako-safety-sweep")
        self._sweeper.start()

    def close(self, timeout: float = 30.0) -> None:
        """Stop the sweep and cancel the uploads (they resume at the next start)."""
        self._stop.set()
        with self._lock:
            running = list(self._uploads.values())
        for _thread, cancelled in running:
            cancelled.set()
        deadline = time.monotonic() + timeout
        for thread, _cancelled in running:
            thread.join(max(0.0, deadline - time.monotonic()))
        if self._sweeper is not None:
            self._sweeper.join(max(0.0, deadline - time.monotonic()))

    def sweep(self, now: int) -> list[str]:
        """Drop verified kept trees whose grace period is over (or any verified one while the disk
        is below the reserve) and retry failed uploads that are due. Returns what was done."""
        done = []
        for app in self.kept.apps():
            current = self.kept.get(app)
            if current is None or self.uploading(app):
                continue
            record = current.record
            if record.in_bucket() and now >= record.drop_at_unix_secs:
                self.kept.drop(app, f"its grace period of {record.keep_hours:g} h is over")
                done.append(f"dropped {app}")
            elif record.in_bucket() and self.room_to_keep(0) is not None:
                self.kept.drop(app, "the disk ran below its reserve; it is in the bucket as "
                                    f"{record.backup_id}")
                done.append(f"dropped {app}")
            elif not record.in_bucket() and now >= record.retry_at_unix_secs:
                self.upload_later(app)
                done.append(f"uploading {app}")
        return done

    def status(self, app: str) -> dict[str, Any] | None:
        """The app's kept tree for ``backup_status`` (with the upload's progress), or None."""
        current = self.kept.get(app)
        if current is None:
            return None
        record = current.record
        return {"kept_at_unix_secs": record.kept_at_unix_secs, "replaced_by": record.replaced_by,
                "upload": record.upload, "backup_id": record.backup_id, "message": record.message,
                "drop_at_unix_secs": record.drop_at_unix_secs,
                "progress": self._operations.progress(app, background=True)}

    def _sweep_loop(self) -> None:
        while not self._stop.wait(self._sweep_interval):
            try:
                self.sweep(int(self._backups.clock()))
            except Exception:
                log.exception("the sweep of kept trees failed")

    def _upload(self, app: str, cancelled: threading.Event) -> None:
        current = self.kept.get(app)
        if current is None or current.record.in_bucket():
            return
        record = current.record
        try:
            with self._operations.running(app, "safety-backup", background=True) as tracker:
                progress = _Cancellable(tracker, cancelled)
                settings = self._backups.settings(app)
                store, prefix = self._backups.location(app, settings)
                if record.upload == UPLOADED and record.backup_id is not None:
                    info = catalog.find_backup(store, prefix, record.backup_id)
                else:
                    enter_phase(progress, ARCHIVE_UPLOAD)
                    info = self._runs.upload_tree(
                        app, settings, current.tree, PRE_RESTORE, progress=progress,
                        record_guard=lambda: _LockWhenFree(self._backups.locks, app, cancelled))
                    record = record.with_upload(UPLOADED, backup_id=info.id, message=None)
                    self.kept.update(app, record)
                enter_phase(progress, VERIFY, info.size_bytes)
                read_back(store, info, progress)
                record = record.with_upload(VERIFIED, message=None,
                                            verified_at_unix_secs=int(self._backups.clock()))
                self.kept.update(app, record)
                log.info("the kept tree of %s is in the bucket as %s (verified)", app, info.id)
        except UploadCancelled:
            log.info("stopped uploading the kept tree of %s (it resumes later)", app)
        except (TakoError, OSError) as exc:
            if cancelled.is_set():
                log.info("stopped uploading the kept tree of %s: %s", app, exc)
                return
            wait = min(RETRY_MAX, RETRY_FIRST * 2 ** record.attempts)
            verify_again = record.upload == UPLOADED and not isinstance(exc, IntegrityError)
            failed = record.with_upload(UPLOADED if verify_again else FAILED, message=str(exc),
                                        attempts=record.attempts + 1,
                                        retry_at_unix_secs=int(self._backups.clock()) + wait)
            log.error("could not upload the kept tree of %s (retried in %d s): %s", app, wait, exc)
            try:
                self.kept.update(app, failed)
            except OSError as write_exc:
                log.error("could not update the record of the kept tree of %s: %s", app, write_exc)


def read_back(store: Any, info: BackupInfo, progress: Progress) -> None:
    """Read ``info``'s archive back from the bucket: its size and SHA-256 must be the manifest's,
    and the manifest on the bucket must be ``info``. Raises IntegrityError, NotFoundError or
    StorageError (and what ``progress`` raises)."""
    digest, size = hashlib.sha256(), 0
    with store.open_read(info.archive_key) as body:
        while chunk := body.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            progress.advance(len(chunk))
    if size != info.size_bytes or digest.hexdigest() != info.sha256_hex:
        raise IntegrityError(f"The safety backup {info.id} read back from the bucket does not match "
                             "its manifest (size or SHA-256).")
    prefix = info.manifest_key[: -len(f"{info.id}.json")]
    if catalog.read_manifest(store, prefix, info.id) != info:
        raise IntegrityError(f"The manifest of the safety backup {info.id} on the bucket is not the one "
                             "written.")


class _Cancellable:
    """A Progress that raises UploadCancelled at the next step once ``cancelled`` is set."""

    def __init__(self, inner: Any, cancelled: threading.Event) -> None:
        self._inner, self._cancelled = inner, cancelled

    def _check(self) -> None:
        if self._cancelled.is_set():
            raise UploadCancelled("The upload of the kept tree was cancelled.")

    def phase(self, name: str, total: int | None = None) -> None:
        self._check()
        self._inner.phase(name, total)

    def start(self, description: str, total: int | None = None) -> None:
        self._check()
        self._inner.start(description, total)

    def advance(self, amount: int) -> None:
        self._check()
        self._inner.advance(amount)

    def finish(self) -> None:
        self._inner.finish()


class _LockWhenFree:
    """The app's lock, waited for as long as it takes unless the upload is cancelled (an undo
    holding the lock cancels the upload; waiting for it blindly would deadlock)."""

    def __init__(self, locks: AppLocks, app: str, cancelled: threading.Event) -> None:
        self._locks, self._app, self._cancelled = locks, app, cancelled
        self._held: Any = None

    def __enter__(self) -> _LockWhenFree:
        while True:
            if self._cancelled.is_set() or self._locks.closed:
                raise UploadCancelled("The upload of the kept tree was cancelled.")
            held = self._locks.hold(self._app, wait=0.5)
            try:
                held.__enter__()
            except BusyError:
                continue
            self._held = held
            return self

    def __exit__(self, *exc: Any) -> None:
        self._held.__exit__(*exc)

