"""Taking one backup of an app on the server: clean up what earlier runs left, then run the
core's backup pipeline (which reads the index before uploading anything) with the app's
retention policy, to the copy's bucket too when the app has one."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from ..core import catalog, layout, leftovers, pipeline
from ..core.archive import ZSTD_IN_CALLER
from ..errors import FormatError, StorageError, TakoError
from ..models import BackupBinding, BackupInfo
from ..policy import policy_of
from ..primitives.names import check_app_id
from ..progress import ARCHIVE_UPLOAD, NO_PROGRESS, Progress, enter_phase
from ..storage.base import ObjectStore
from . import notes
from .app_backups import AppBackups
from .copies import BackupCopies

__all__ = ["BackupRuns"]

log = logging.getLogger(__name__)

LEFTOVER_AGE = 86_400


class BackupRuns:
    """Runs backups for the service (manual, scheduled, post-deploy, pre-restore). Thread-safe;
    the caller holds the app's lock."""

    def __init__(self, backups: AppBackups, copies: BackupCopies) -> None:
        self._backups = backups
        self._copies = copies
        self.started_at = time.time()

    def take(self, app: str, settings: BackupBinding, reason: str,
             progress: Progress = NO_PROGRESS) -> BackupInfo:
        """Back up the app's data with ``reason``; see :meth:`take_reporting`."""
        return self.take_reporting(app, settings, reason, progress)[0]

    def take_reporting(self, app: str, settings: BackupBinding, reason: str,
                       progress: Progress = NO_PROGRESS) -> tuple[BackupInfo, dict[str, Any] | None]:
        """Back up the app's data with ``reason``; the caller holds the app's lock. What earlier
        runs left on the bucket is cleaned up first, and a missing or unreadable index is rebuilt
        from the manifests while the new backup is recorded -- both when the bucket can be listed;
        otherwise they are skipped and the reply notes it (see :mod:`.notes`). With a copy, the
        backup goes to both buckets from one stream; returns the backup and how its copy went
        (the reply's ``copy`` field, None without a copy: a failed copy is recorded and announced,
        never an error). Raises StorageError, SnapshotError, ConfigError or TakoError (disk)."""
        name, env = check_app_id(app)
        data = self._backups.paths.ensure_data_dir(name, env)
        self._backups.paths.backup_work.mkdir(mode=0o700, parents=True, exist_ok=True)
        store = self._backups.store(settings.storage)
        clock = self._backups.clock
        now = int(clock())
        prefix = layout.backup_prefix(name, env, self._backups.server_name)
        copy_to = None if settings.copy is None else self._backups.store(settings.copy)
        with notes.collecting():
            self._clean_leftovers(app, settings, store, prefix, now)
            enter_phase(progress, ARCHIVE_UPLOAD, _size_estimate(store, prefix))
            try:
                result = pipeline.backup(
                    store, data_root=data, work_root=self._backups.paths.backup_work, app=name, env=env,
                    server=self._backups.server_name, key=settings.active_key,
                    retention_days=settings.retention_days, now=now, clock=clock, reason=reason,
                    progress=progress, policy=policy_of(settings), copy_to=copy_to,
                    archive_format=settings.format,
                )
            except OSError as exc:
                raise _disk_error(app, exc) from None
            if result.listing_denied:
                notes.listing_denied(settings.storage.bucket, app, "index self-healing")
        log.info("backed up %s as %s (%d bytes, %d pruned)", app, result.info.id,
                 result.info.size_bytes, len(result.pruned))
        return result.info, self._copies.after_backup(app, settings, result.info, result.copy)

    def upload_tree(self, app: str, settings: BackupBinding, tree: Path, reason: str, *, progress: Progress,
                    record_guard: Callable[[], AbstractContextManager[object]]) -> BackupInfo:
        """Back up ``tree`` (a kept tree, not the live data) as one of the app's backups, without
        holding the app's lock: ``record_guard`` (the lock) is held only while the backup is
        recorded. It runs beside the app, just started again on the restored data, so zstd works
        on the archiving thread: one core for the upload, the other left to the app, and 12 MB
        less memory than workers on every core. Neither leftovers nor the index are repaired first
        (both need the lock). Raises what :meth:`take` raises, and what ``progress`` or
        ``record_guard`` raise (a cancel)."""
        name, env = check_app_id(app)
        self._backups.paths.backup_work.mkdir(mode=0o700, parents=True, exist_ok=True)
        store = self._backups.store(settings.storage)
        copy_to = None if settings.copy is None else self._backups.store(settings.copy)
        try:
            result = pipeline.backup(
                store, data_root=tree, work_root=self._backups.paths.backup_work, app=name, env=env,
                server=self._backups.server_name, key=settings.active_key,
                retention_days=settings.retention_days, now=int(self._backups.clock()), reason=reason,
                progress=progress, record_guard=record_guard, policy=policy_of(settings), copy_to=copy_to,
                archive_format=settings.format, zstd_workers=ZSTD_IN_CALLER,
            )
        except OSError as exc:
            raise _disk_error(app, exc) from None
        log.info("backed up the kept tree of %s as %s (%d bytes)", app, result.info.id,
                 result.info.size_bytes)
        if result.copy is not None:
            try:
                with record_guard():  # the copy's record is the app's state: written under its lock
                    self._copies.after_backup(app, settings, result.info, result.copy)
            except Exception as exc:  # cancelled meanwhile: the next backup compares the two again
                log.info("the copy state of %s was not updated after the kept tree's upload: %s", app, exc)
        return result.info

    def _clean_leftovers(self, app: str, settings: BackupBinding, store: ObjectStore, prefix: str,
                         now: int) -> None:
        """Abort uploads and delete manifest-less archives that a crashed or failed run left: those
        begun before this server started, or over a day ago. Failures are only logged; a refused
        listing is noted."""
        try:
            since = max(self.started_at, now - LEFTOVER_AGE)
            left = leftovers.clean_leftovers(store, prefix, started_before=since)
        except StorageError as exc:
            log.warning("could not clean up after earlier backups of %s: %s", app, exc)
            return
        if left.listing_denied:
            notes.listing_denied(settings.storage.bucket, app, "leftover cleanup")
        if left.uploads_aborted or left.archives_deleted:
            log.info("cleaned up after earlier backups of %s: %d unfinished uploads aborted, "
                     "%d orphaned archives deleted", app, left.uploads_aborted, left.archives_deleted)


def _disk_error(app: str, exc: OSError) -> TakoError:
    where = f" ({exc.filename})" if exc.filename else ""
    return TakoError(f"Backup of app '{app}' failed{where}: {exc.strerror or exc}.")


def _size_estimate(store: ObjectStore, prefix: str) -> int | None:
    """About the size of the next backup: the bytes the newest backup holds (None when unknown)."""
    try:
        newest = catalog.read_index(store, prefix).backups
    except (StorageError, FormatError):
        return None
    return next((b.extras.bytes for b in newest if b.extras is not None), None) or None

