"""The server's backup, restore and deploy service: what each RPC command does, driving the core.

Every method takes the app id ``{name}/{env}`` and returns plain JSON-ready data in Tako's reply
shapes. Failures are TakoErrors whose messages name the app, the backup or the file involved and
never carry credentials. Backups, restores and deploys of one app hold that app's lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, cast

from .. import __version__
from ..core import catalog, layout, pipeline
from ..errors import FormatError, NotFoundError, RestoreError, StorageError, TakoError
from ..models import DEFAULT_RETENTION_DAYS, BackupBinding, BackupIndex, BackupInfo, StorageBinding
from ..primitives.names import check_app_id
from ..remote.protocol import COMMANDS, PROTOCOL, PUBLIC_COMMANDS, Reply, RuntimeSettings
from ..storage.base import ObjectStore
from .confidence import PRE_RESTORE, RestoreConfidence, safety_fields
from .drills import DrillLog
from .locks import AppLocks
from .paths import ServerPaths
from .restore import restore_over_live
from .runtime import AppRuntime
from .scheduler import is_due, next_backup_at
from .state import AppState, StateStore

__all__ = ["DOWNLOAD_URL_SECONDS", "BackupService", "StoreFactory"]

log = logging.getLogger(__name__)

DOWNLOAD_URL_SECONDS = 900
StoreFactory = Callable[[StorageBinding], ObjectStore]


def s3_store_factory(binding: StorageBinding) -> ObjectStore:
    from ..storage.s3 import S3Store

    return cast(ObjectStore, S3Store.from_binding(binding))


class BackupService(RestoreConfidence):
    """Runs the management commands for every app under one server data root. Thread-safe.

    Drills, previews, undo, reindex and re-encryption come from :class:`RestoreConfidence`.
    """

    def __init__(
        self, paths: ServerPaths, server_name: str, *, runtime: AppRuntime | None = None,
        state: StateStore | None = None, store_factory: StoreFactory = s3_store_factory,
        locks: AppLocks | None = None, clock: Callable[[], float] = time.time,
        deploy_lock_wait: float = 300.0,
    ) -> None:
        self.paths = paths
        self.server_name = server_name
        self.runtime = runtime
        self.state = state or StateStore(paths.state_dir)
        self.drills = DrillLog(paths.state_dir)
        self.locks = locks or AppLocks()
        self._store_factory = store_factory
        self._stores: dict[StorageBinding, ObjectStore] = {}
        self._stores_lock = threading.Lock()
        self._clock = clock
        self._deploy_lock_wait = deploy_lock_wait
        self.started_at = time.time()

    # ----- unsigned commands -----

    def hello(self) -> dict[str, Any]:
        return {"server": self.server_name, "protocol": PROTOCOL}

    def server_info(self) -> dict[str, Any]:
        return {"server": self.server_name, "protocol": PROTOCOL, "version": __version__,
                "commands": sorted(COMMANDS), "unsigned_commands": sorted(PUBLIC_COMMANDS)}

    # ----- backup commands -----

    def backup_now(self, app: str, backup: BackupBinding | None) -> dict[str, Any]:
        """Store ``backup`` (when given) and take a backup now; returns the new BackupInfo.

        Raises BusyError, NotFoundError (no settings), StorageError, SnapshotError, ConfigError.
        """
        check_app_id(app)
        with self.locks.hold(app):
            if backup is not None:
                self._store_settings(app, backup)
            return self._take_backup(app, self._settings(app), "manual").to_dict()

    def list_backups(self, app: str) -> dict[str, Any]:
        """``{"app", "backups", "index_rebuilt"}``, newest first; ``index_rebuilt`` says the index
        was missing or unreadable and was rebuilt from the manifests. Raises NotFoundError or
        StorageError."""
        found = self._read_index(app, self._settings(app))
        return {"app": app, "backups": [b.to_dict() for b in found.index.backups],
                "index_rebuilt": found.rebuilt}

    def backup_status(self, app: str) -> dict[str, Any]:
        """``{"app", "enabled", "retention_days", "last_backup", "next_backup_at_unix_secs"}`` plus
        our ``last_drill``, ``overdue`` and ``index_rebuilt``.

        An app without backup settings reports ``enabled: false``. Raises StorageError.
        """
        check_app_id(app)
        state = self.state.load(app)
        if state is None or state.backup is None:
            return {"app": app, "enabled": False, "retention_days": DEFAULT_RETENTION_DAYS,
                    "last_backup": None, "next_backup_at_unix_secs": None,
                    **self.status_fields(app, None, enabled=False, rebuilt=False)}
        now = int(self._clock())
        found = self._read_index(app, state.backup)
        newest = _first(found.index)
        return {"app": app, "enabled": True, "retention_days": state.backup.retention_days,
                "last_backup": None if newest is None else newest.to_dict(),
                "next_backup_at_unix_secs": next_backup_at(newest, now),
                **self.status_fields(app, newest, enabled=True, rebuilt=found.rebuilt)}

    def backup_download_url(self, app: str, backup_id: str) -> dict[str, Any]:
        """``{"backup", "url", "expires_in_seconds"}`` (presigned GET, 900 s).

        Raises NotFoundError (app settings or backup id) or StorageError.
        """
        settings = self._settings(app)
        store, prefix = self._location(app, settings)
        info = catalog.find_backup(store, prefix, backup_id)
        url = store.presigned_get_url(info.archive_key, DOWNLOAD_URL_SECONDS)
        return {"backup": info.to_dict(), "url": url, "expires_in_seconds": DOWNLOAD_URL_SECONDS}

    def restore_backup(self, app: str, backup_id: str, safety_backup: bool = True) -> Reply:
        """Restore ``backup_id`` over the app's live data; the reply's data is the restored
        BackupInfo and, when ``safety_backup``, the reply carries ``safety_backup_id``: the backup
        of the live tree taken (reason ``pre-restore``) once the backup is staged and the app
        stopped, just before the swap. If that backup fails, nothing is swapped.

        Raises BusyError, NotFoundError, IntegrityError, KeyNotFoundError, UnsafeArchiveError,
        FormatError, StorageError or RestoreError (see :func:`restore_over_live`).
        """
        check_app_id(app)
        with self.locks.hold(app):
            state = self.state.load(app)
            settings = self._settings(app, state)
            store, prefix = self._location(app, settings)
            info = catalog.find_backup(store, prefix, backup_id)
            runtime_settings = state.runtime if state is not None else None
            taken: list[BackupInfo] = []

            def take_safety_backup() -> None:
                try:
                    taken.append(self._take_backup(app, settings, PRE_RESTORE))
                except TakoError as exc:
                    raise RestoreError(
                        f"Could not take the safety backup of app '{app}' before restoring {info.id}: "
                        f"{exc} The live data was not touched; pass --no-safety-backup to restore "
                        "without one.") from None

            restore_over_live(
                app=app, info=info, store=store, keys=settings.backup_keys, paths=self.paths,
                runtime=self.runtime,
                start_after=runtime_settings is not None and runtime_settings.instances > 0,
                before_swap=take_safety_backup if safety_backup else None,
            )
            safety_id = taken[0].id if taken else None
            log.info("restored %s from %s (safety backup %s)", app, info.id, safety_id or "none")
            return Reply(info.to_dict(), safety_fields(safety_id))

    # ----- deploy -----

    def deploy(self, app: str, backup: BackupBinding | None,
               runtime: RuntimeSettings | None) -> dict[str, Any]:
        """Store the app's settings, (re)start it when it has a start command and instances > 0,
        then take the post-deploy backup. Returns Tako's finalize reply; a failed backup is
        reported there and never fails the deploy.

        Raises BusyError (another backup or restore kept the app busy too long), ConfigError
        (settings could not be stored, or the app could not start).
        """
        name, env = check_app_id(app)
        with self.locks.hold(app, wait=self._deploy_lock_wait):
            self.paths.ensure_data_dir(name, env)
            self.state.save(app, AppState(backup=backup, runtime=runtime))
            self._apply_runtime(app, runtime)
            return {"status": "finalized", "backup": self._post_deploy_backup(app, backup)}

    def _post_deploy_backup(self, app: str, backup: BackupBinding | None) -> dict[str, Any]:
        if backup is None:
            return {"status": "disabled"}
        try:
            info = self._take_backup(app, backup, "post-deploy")
        except TakoError as exc:
            log.warning("post-deploy backup of %s failed: %s", app, exc)
            return {"status": "failed", "message": str(exc)}
        return {"status": "created", "id": info.id, "size_bytes": info.size_bytes}

    def _apply_runtime(self, app: str, settings: RuntimeSettings | None) -> None:
        if self.runtime is None:
            return
        if settings is None or settings.instances == 0:
            self.runtime.stop(app)
            return
        name, env = check_app_id(app)
        self.runtime.configure(app, list(settings.start), settings.instances,
                               self.paths.data_dir(name, env), env=settings.env)
        self.runtime.restart(app)

    def resume_apps(self) -> None:
        """Configure and start every app whose stored runtime has instances > 0 (at server start).

        Never raises: an app that cannot start is logged and skipped.
        """
        if self.runtime is None:
            return
        for app in self.state.apps():
            try:
                state = self.state.load(app)
                if state is not None and state.runtime is not None and state.runtime.instances > 0:
                    self.paths.ensure_data_dir(*check_app_id(app))
                    self._apply_runtime(app, state.runtime)
            except TakoError as exc:
                log.error("could not start %s: %s", app, exc)

    # ----- scheduler hooks -----

    def enabled_apps(self) -> list[str]:
        """Apps with backup settings (those whose settings cannot be read are logged and left out)."""
        apps = []
        for app in self.state.apps():
            try:
                state = self.state.load(app)
            except TakoError as exc:
                log.error("skipping %s: %s", app, exc)
                continue
            if state is not None and state.backup is not None:
                apps.append(app)
        return apps

    def is_due(self, app: str, now: int) -> bool:
        """Tako's rule: no backups, newest at least a day old, or an unreadable index.

        Raises NotFoundError or StorageError.
        """
        settings = self._settings(app)
        store, prefix = self._location(app, settings)
        try:
            index = catalog.read_index(store, prefix)
        except FormatError:
            return True
        return is_due(_first(index), now)

    def scheduled_backup(self, app: str) -> BackupInfo:
        """Take a backup with the stored settings. Raises BusyError when the app is busy."""
        with self.locks.hold(app):
            return self._take_backup(app, self._settings(app), "scheduled")

    # ----- helpers -----

    def _settings(self, app: str, state: AppState | None = None) -> BackupBinding:
        state = state if state is not None else self.state.load(app)
        if state is None or state.backup is None:
            raise NotFoundError(
                f"App '{app}' has no backup settings on this server; run tako backups now or "
                "tako deploy first."
            )
        return state.backup

    def _store_settings(self, app: str, backup: BackupBinding) -> None:
        state = self.state.load(app) or AppState()
        self.state.save(app, state.with_backup(backup))

    def _take_backup(self, app: str, settings: BackupBinding, reason: str) -> BackupInfo:
        """Back up the app's data with ``reason``; the caller holds the app's lock. An index that
        is missing or unreadable is rebuilt first."""
        name, env = check_app_id(app)
        data = self.paths.ensure_data_dir(name, env)
        self.paths.backup_work.mkdir(mode=0o700, parents=True, exist_ok=True)
        store = self._store(settings.storage)
        now = int(self._clock())
        self._clean_leftovers(app, store, layout.backup_prefix(name, env, self.server_name), now)
        try:
            self._read_index(app, settings, locked=True)
        except StorageError as exc:
            log.warning("could not check the index of %s before backing up: %s", app, exc)
        try:
            result = pipeline.backup(
                store, data_root=data, work_root=self.paths.backup_work, app=name, env=env,
                server=self.server_name, key=settings.active_key,
                retention_days=settings.retention_days, now=now, reason=reason,
            )
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename else ""
            raise TakoError(f"Backup of app '{app}' failed{where}: {exc.strerror or exc}.") from None
        log.info("backed up %s as %s (%d bytes, %d pruned)", app, result.info.id,
                 result.info.size_bytes, len(result.pruned))
        return result.info

    def _clean_leftovers(self, app: str, store: ObjectStore, prefix: str, now: int) -> None:
        """Abort uploads and delete manifest-less archives that a crashed or failed run left: those
        begun before this server started, or over a day ago. Failures are only logged."""
        try:
            left = catalog.clean_leftovers(store, prefix, started_before=max(self.started_at, now - 86_400))
        except StorageError as exc:
            log.warning("could not clean up after earlier backups of %s: %s", app, exc)
            return
        if left.uploads_aborted or left.archives_deleted:
            log.info("cleaned up after earlier backups of %s: %d unfinished uploads aborted, "
                     "%d orphaned archives deleted", app, left.uploads_aborted, left.archives_deleted)

    def _location(self, app: str, settings: BackupBinding) -> tuple[ObjectStore, str]:
        name, env = check_app_id(app)
        return self._store(settings.storage), layout.backup_prefix(name, env, self.server_name)

    def _store(self, binding: StorageBinding) -> ObjectStore:
        with self._stores_lock:
            store = self._stores.get(binding)
            if store is None:
                if len(self._stores) >= 32:
                    self._stores.clear()
                store = self._stores[binding] = self._store_factory(binding)
            return store


def _first(index: BackupIndex) -> BackupInfo | None:
    return index.backups[0] if index.backups else None
