"""Taking one backup of an app on the server: clean up what earlier runs left, make sure the
index is readable, then run the core's backup pipeline (to the copy's bucket too, when the app
has one) with the app's retention policy."""

from __future__ import annotations

import logging
import time
from typing import Any

from ..core import catalog, layout, pipeline
from ..errors import StorageError, TakoError
from ..models import BackupBinding, BackupInfo
from ..policy import policy_of
from ..primitives.names import check_app_id
from ..storage.base import ObjectStore
from .app_backups import AppBackups
from .copies import BackupCopies
from .index_repair import IndexRepair

__all__ = ["BackupRuns"]

log = logging.getLogger(__name__)

LEFTOVER_AGE = 86_400


class BackupRuns:
    """Runs backups for the service (manual, scheduled, post-deploy, pre-restore). Thread-safe;
    the caller holds the app's lock."""

    def __init__(self, backups: AppBackups, index: IndexRepair, copies: BackupCopies) -> None:
        self._backups = backups
        self._index = index
        self._copies = copies
        self.started_at = time.time()

    def take(self, app: str, settings: BackupBinding, reason: str) -> BackupInfo:
        """Back up the app's data with ``reason``; see :meth:`take_reporting`."""
        return self.take_reporting(app, settings, reason)[0]

    def take_reporting(self, app: str, settings: BackupBinding,
                       reason: str) -> tuple[BackupInfo, dict[str, Any] | None]:
        """Back up the app's data with ``reason``; the caller holds the app's lock. An index that
        is missing or unreadable is rebuilt first, and what earlier runs left on the bucket is
        cleaned up. With a copy, the backup goes to both buckets from one stream; returns the
        backup and how its copy went (the reply's ``copy`` field, None without a copy: a failed
        copy is recorded and announced, never an error). Raises StorageError, SnapshotError,
        ConfigError or TakoError (disk)."""
        name, env = check_app_id(app)
        data = self._backups.paths.ensure_data_dir(name, env)
        self._backups.paths.backup_work.mkdir(mode=0o700, parents=True, exist_ok=True)
        store = self._backups.store(settings.storage)
        now = int(self._backups.clock())
        self._clean_leftovers(app, store, layout.backup_prefix(name, env, self._backups.server_name), now)
        try:
            self._index.read(app, settings, locked=True)
        except StorageError as exc:
            log.warning("could not check the index of %s before backing up: %s", app, exc)
        copy_to = None if settings.copy is None else self._backups.store(settings.copy)
        try:
            result = pipeline.backup(
                store, data_root=data, work_root=self._backups.paths.backup_work, app=name, env=env,
                server=self._backups.server_name, key=settings.active_key,
                retention_days=settings.retention_days, now=now, reason=reason,
                policy=policy_of(settings), copy_to=copy_to,
            )
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename else ""
            raise TakoError(f"Backup of app '{app}' failed{where}: {exc.strerror or exc}.") from None
        log.info("backed up %s as %s (%d bytes, %d pruned)", app, result.info.id,
                 result.info.size_bytes, len(result.pruned))
        return result.info, self._copies.after_backup(app, settings, result.info, result.copy)

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
