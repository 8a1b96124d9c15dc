"""Taking one backup of an app on the server: clean up what earlier runs left, make sure the
index is readable, then run the core's backup pipeline."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from ..core import catalog, layout, pipeline
from ..errors import StorageError, TakoError
from ..models import BackupBinding, BackupInfo
from ..primitives.names import check_app_id
from ..progress import ARCHIVE_UPLOAD, NO_PROGRESS, Progress, enter_phase
from ..storage.base import ObjectStore
from .app_backups import AppBackups
from .index_repair import IndexRepair

__all__ = ["BackupRuns"]

log = logging.getLogger(__name__)

LEFTOVER_AGE = 86_400


class BackupRuns:
    """Runs backups for the service (manual, scheduled, post-deploy, pre-restore). Thread-safe;
    the caller holds the app's lock."""

    def __init__(self, backups: AppBackups, index: IndexRepair) -> None:
        self._backups = backups
        self._index = index
        self.started_at = time.time()

    def take(self, app: str, settings: BackupBinding, reason: str,
             progress: Progress = NO_PROGRESS) -> BackupInfo:
        """Back up the app's data with ``reason``; the caller holds the app's lock. An index that
        is missing or unreadable is rebuilt first, and what earlier runs left on the bucket is
        cleaned up. Raises StorageError, SnapshotError, ConfigError or TakoError (disk)."""
        name, env = check_app_id(app)
        data = self._backups.paths.ensure_data_dir(name, env)
        self._backups.paths.backup_work.mkdir(mode=0o700, parents=True, exist_ok=True)
        store = self._backups.store(settings.storage)
        now = int(self._backups.clock())
        self._clean_leftovers(app, store, layout.backup_prefix(name, env, self._backups.server_name), now)
        estimate = None
        try:
            newest = self._index.read(app, settings, locked=True).index.backups
            estimate = next((b.extras.bytes for b in newest if b.extras is not None), None) or None
        except StorageError as exc:
            log.warning("could not check the index of %s before backing up: %s", app, exc)
        enter_phase(progress, ARCHIVE_UPLOAD, estimate)  # about the size of the last backup
        try:
            result = pipeline.backup(
                store, data_root=data, work_root=self._backups.paths.backup_work, app=name, env=env,
                server=self._backups.server_name, key=settings.active_key,
                retention_days=settings.retention_days, now=now, reason=reason, progress=progress,
            )
        except OSError as exc:
            raise _disk_error(app, exc) from None
        log.info("backed up %s as %s (%d bytes, %d pruned)", app, result.info.id,
                 result.info.size_bytes, len(result.pruned))
        return result.info

    def upload_tree(self, app: str, settings: BackupBinding, tree: Path, reason: str, *, progress: Progress,
                    record_guard: Callable[[], AbstractContextManager[object]]) -> BackupInfo:
        """Back up ``tree`` (a kept tree, not the live data) as one of the app's backups, without
        holding the app's lock: ``record_guard`` (the lock) is held only while the backup is
        recorded. Neither leftovers nor the index are repaired first (both need the lock). Raises
        what :meth:`take` raises, and what ``progress`` or ``record_guard`` raise (a cancel)."""
        name, env = check_app_id(app)
        self._backups.paths.backup_work.mkdir(mode=0o700, parents=True, exist_ok=True)
        store = self._backups.store(settings.storage)
        try:
            result = pipeline.backup(
                store, data_root=tree, work_root=self._backups.paths.backup_work, app=name, env=env,
                server=self._backups.server_name, key=settings.active_key,
                retention_days=settings.retention_days, now=int(self._backups.clock()), reason=reason,
                progress=progress, record_guard=record_guard,
            )
        except OSError as exc:
            raise _disk_error(app, exc) from None
        log.info("backed up the kept tree of %s as %s (%d bytes)", app, result.info.id,
                 result.info.size_bytes)
        return result.info

    def _clean_leftovers(self, app: str, store: ObjectStore, prefix: str, now: int) -> None:
        """Abort uploads and delete manifest-less archives that a crashed or failed run left: those
        begun before this server started, or over a day ago. Failures are only logged."""
        try:
            since = max(self.started_at, now - LEFTOVER_AGE)
            left = catalog.clean_leftovers(store, prefix, started_before=since)
        except StorageError as exc:
            log.warning("could not clean up after earlier backups of %s: %s", app, exc)
            return
        if left.uploads_aborted or left.archives_deleted:
            log.info("cleaned up after earlier backups of %s: %d unfinished uploads aborted, "
                     "%d orphaned archives deleted", app, left.uploads_aborted, left.archives_deleted)


def _disk_error(app: str, exc: OSError) -> TakoError:
    where = f" ({exc.filename})" if exc.filename else ""
    return TakoError(f"Backup of app '{app}' failed{where}: {exc.strerror or exc}.")
