"""The server's backup, restore and deploy service: what each RPC command does, driving the core.

Every method takes the app id ``{name}/{env}`` and returns plain JSON-ready data in Tako's reply
shapes. Failures are TakoErrors whose messages name the app, the backup or the file involved and
never carry credentials. Backups, restores and deploys of one app hold that app's lock.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

from .. import __version__
from ..core import catalog
from ..core.drill import DrillResult
from ..errors import FormatError, TakoError
from ..models import BackupBinding, BackupIndex, BackupInfo
from ..policy import newest_regular
from ..primitives.names import check_app_id
from ..remote.protocol import CAPABILITIES, PROTOCOL_VERSION, Reply, RuntimeSettings
from .app_backups import AppBackups, StoreFactory, s3_store_factory
from .backup_runs import BackupRuns
from .drills import DRILL_INTERVAL, DrillLog, RestoreDrills
from .identity_key import read_server_identity
from .index_repair import IndexRepair
from .locks import AppLocks
from .operations import OperationRegistry
from .paths import ServerPaths
from .preview import preview_restore
from .reencryption import Reencryption
from .restores import Restores
from .runtime import AppRuntime
from .safety import SafetyCopies
from .scheduler import is_due, next_backup_at
from .state import AppState, StateStore

__all__ = ["DOWNLOAD_URL_SECONDS", "TAKO_RUNTIME_DEFAULTS", "BackupService", "StoreFactory"]

log = logging.getLogger(__name__)

DOWNLOAD_URL_SECONDS = 900
# server_info fields that describe parts of Tako's server we do not have (its proxy, ACME, metrics,
# management socket): Tako's defaults, or the honest "none" (docs/TAKO-DIFFERENCES.md).
TAKO_RUNTIME_DEFAULTS: dict[str, Any] = {
    "mode": "normal", "socket": "/var/run/tako/tako.sock", "http_port": 80, "https_port": 443,
    "no_acme": True, "acme_staging": False, "acme_email": None, "renewal_interval_hours": 12,
    "standby": False, "metrics_port": None,
}


class BackupService:
    """Runs the management commands for every app under one server data root. Thread-safe.

    It holds its collaborators: ``backups`` (settings, stores, bucket prefixes), ``runs`` (taking
    one backup), ``index`` (the self-healing index and ``reindex``), ``drills`` (restore drills and
    their records), ``reencryption`` (key rotation), ``restores`` (restore and undo), ``safety``
    (kept trees and their background uploads; ``keep_reserve`` overrides the free space a kept
    tree must leave) and ``operations`` (the progress of running operations); the RPC commands
    they answer are delegated to them.
    """

    def __init__(
        self, paths: ServerPaths, server_name: str, *, runtime: AppRuntime | None = None,
        state: StateStore | None = None, store_factory: StoreFactory = s3_store_factory,
        locks: AppLocks | None = None, clock: Callable[[], float] = time.time,
        deploy_lock_wait: float = 300.0, identity: str | None = None, keep_reserve: int | None = None,
    ) -> None:
        """``identity`` is the fingerprint ``hello`` reports (default: that of the data root's
        ``identity.key`` if there is one; ``serve`` makes it); ``keep_reserve`` overrides the free
        space a kept tree must leave. Raises ConfigError when the identity key cannot be read."""
        self.paths = paths
        self.server_name = server_name
        self.identity = identity if identity is not None else read_server_identity(paths.root)
        self.started_at = int(clock())
        self.runtime = runtime
        self.state = state or StateStore(paths.state_dir)
        self.locks = locks or AppLocks()
        self.backups = AppBackups(paths, server_name, self.state, self.locks, store_factory, clock)
        self.index = IndexRepair(self.backups)
        self.drills = RestoreDrills(self.backups, self.index, DrillLog(paths.state_dir))
        self.reencryption = Reencryption(self.backups, self.index)
        self.runs = BackupRuns(self.backups)
        self.operations = OperationRegistry(clock)
        self.safety = SafetyCopies(self.backups, self.runs, self.operations, reserve=keep_reserve)
        self.restores = Restores(self.backups, self.index, self.runs, self.safety, self.operations, runtime)
        self._clock = clock
        self._deploy_lock_wait = deploy_lock_wait

    # ----- unsigned commands -----

    def hello(self, protocol_version: int) -> dict[str, Any]:
        """Tako's HelloResponse: ``protocol_version``, ``server_version`` (our package version),
        ``capabilities`` (:data:`~tako_backups.remote.protocol.CAPABILITIES`) and
        ``server_identity``. Raises FormatError with Tako's text when the client speaks another
        protocol version."""
        if protocol_version != PROTOCOL_VERSION:
            raise FormatError(
                f"Protocol version mismatch: client={protocol_version} server={PROTOCOL_VERSION}")
        return {"protocol_version": PROTOCOL_VERSION, "server_version": __version__,
                "capabilities": list(CAPABILITIES), "server_identity": self.identity}

    def server_info(self) -> dict[str, Any]:
        """Tako's ServerRuntimeInfo: what we know (pid, start time, data dir, name, identity) and,
        for the parts of Tako's server we do not have, :data:`TAKO_RUNTIME_DEFAULTS`."""
        return {**TAKO_RUNTIME_DEFAULTS, "pid": os.getpid(),
                "process_started_at_unix_secs": self.started_at, "data_dir": str(self.paths.root),
                "server_name": self.server_name, "server_identity": self.identity}

    # ----- backup commands -----

    def backup_now(self, app: str, backup: BackupBinding | None) -> dict[str, Any]:
        """Store ``backup`` (when given) and take a backup now; returns the new BackupInfo.

        Raises BusyError, NotFoundError (no settings), StorageError, SnapshotError, ConfigError.
        """
        check_app_id(app)
        with self.locks.hold(app), self.operations.running(app, "backup") as tracker:
            if backup is not None:
                self.backups.store_settings(app, backup)
            return self.runs.take(app, self.backups.settings(app), "manual", tracker).to_dict()

    def list_backups(self, app: str) -> dict[str, Any]:
        """``{"app", "backups", "index_rebuilt"}``, newest first; ``index_rebuilt`` says the index
        was missing or unreadable and was rebuilt from the manifests. Raises NotFoundError or
        StorageError."""
        found = self.index.read(app, self.backups.settings(app))
        return {"app": app, "backups": [b.to_dict() for b in found.index.backups],
                "index_rebuilt": found.rebuilt}

    def backup_status(self, app: str) -> dict[str, Any]:
        """``{"app", "enabled", "retention_days", "last_backup", "next_backup_at_unix_secs"}`` plus,
        when backups are enabled, our ``last_drill``, ``last_ok_drill``, ``overdue``,
        ``index_rebuilt`` and, while the last restore's replaced tree is kept, ``kept_tree``
        (:meth:`SafetyCopies.status`). The next backup is due a period after the newest regular
        backup (pre-restore ones do not count).

        An app without backup settings reports Tako's ``enabled: false`` shape exactly (every other
        field null). Raises StorageError.
        """
        check_app_id(app)
        state = self.state.load(app)
        if state is None or state.backup is None:
            return {"app": app, "enabled": False, "retention_days": None, "last_backup": None,
                    "next_backup_at_unix_secs": None}
        now = int(self._clock())
        found = self.index.read(app, state.backup)
        newest, regular = _first(found.index), newest_regular(found.index.backups)
        return {"app": app, "enabled": True, "retention_days": state.backup.retention_days,
                "last_backup": None if newest is None else newest.to_dict(),
                "next_backup_at_unix_secs": next_backup_at(regular, now),
                **self.drills.status_fields(app, regular, enabled=True, rebuilt=found.rebuilt),
                **_present("kept_tree", self.safety.status(app))}

    def backup_download_url(self, app: str, backup_id: str) -> dict[str, Any]:
        """``{"backup", "url", "expires_in_seconds"}`` (presigned GET, 900 s).

        Raises NotFoundError (app settings or backup id) or StorageError.
        """
        settings = self.backups.settings(app)
        store, prefix = self.backups.location(app, settings)
        info = catalog.find_backup(store, prefix, backup_id)
        url = store.presigned_get_url(info.archive_key, DOWNLOAD_URL_SECONDS)
        return {"backup": info.to_dict(), "url": url, "expires_in_seconds": DOWNLOAD_URL_SECONDS}

    def restore_backup(self, app: str, backup_id: str, safety_backup: bool = True,
                       keep_hours: float | None = None) -> Reply:
        """See :meth:`Restores.restore_backup`."""
        return self.restores.restore_backup(app, backup_id, safety_backup, keep_hours)

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
            with self.operations.running(app, "backup") as tracker:
                info = self.runs.take(app, backup, "post-deploy", tracker)
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

    # ----- our extensions: previews, undo, and the collaborators' commands -----

    def restore_preview(self, app: str, backup_id: str) -> dict[str, Any]:
        """What restoring ``backup_id`` would change (see :func:`preview_restore`); nothing is
        swapped. Raises BusyError, NotFoundError, IntegrityError, KeyNotFoundError, FormatError,
        UnsafeArchiveError, StorageError or RestoreError."""
        check_app_id(app)
        with self.locks.hold(app):
            settings = self.backups.settings(app)
            store, prefix = self.backups.location(app, settings)
            info = catalog.find_backup(store, prefix, backup_id)
            return preview_restore(app=app, info=info, store=store, keys=settings.backup_keys,
                                   paths=self.paths)

    def undo_restore(self, app: str, safety_backup: bool = True, keep_hours: float | None = None) -> Reply:
        """See :meth:`Restores.undo_restore`."""
        return self.restores.undo_restore(app, safety_backup, keep_hours)

    def operation_progress(self, app: str) -> dict[str, Any] | None:
        """What the app's running backup, restore or undo is doing (phase, bytes done and total,
        rate; see :meth:`Tracker.to_dict`), or None when none runs. Never waits for the app."""
        check_app_id(app)
        return self.operations.progress(app)

    def drill_backup(self, app: str, backup_id: str | None = None) -> dict[str, Any]:
        """See :meth:`RestoreDrills.drill_backup`."""
        return self.drills.drill_backup(app, backup_id)

    def reindex(self, app: str) -> dict[str, Any]:
        """See :meth:`IndexRepair.reindex`."""
        return self.index.reindex(app)

    def reencrypt_backups(self, app: str, backup: BackupBinding | None) -> dict[str, Any]:
        """See :meth:`Reencryption.reencrypt_backups`."""
        return self.reencryption.reencrypt_backups(app, backup)

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
        """Tako's rule: no backups, newest at least a day old, or an unreadable index; the newest
        counts only regular backups (:func:`~tako_backups.policy.newest_regular`): a pre-restore
        safety backup of the data a restore replaced does not make the app look backed up.

        Raises NotFoundError or StorageError.
        """
        settings = self.backups.settings(app)
        store, prefix = self.backups.location(app, settings)
        try:
            index = catalog.read_index(store, prefix)
        except FormatError:
            return True
        return is_due(newest_regular(index.backups), now)

    def drill_due(self, app: str, now: int, interval: float = DRILL_INTERVAL) -> bool:
        """Whether the weekly drill of ``app`` is due."""
        return self.drills.is_due(app, now, interval)

    def scheduled_drill(self, app: str) -> DrillResult | None:
        """Drill the newest backup (None when there is none yet). Raises StorageError."""
        return self.drills.scheduled_drill(app)

    def scheduled_backup(self, app: str) -> BackupInfo:
        """Take a backup with the stored settings. Raises BusyError when the app is busy."""
        with self.locks.hold(app), self.operations.running(app, "backup") as tracker:
            return self.runs.take(app, self.backups.settings(app), "scheduled", tracker)

    # ----- helpers -----


def _present(name: str, value: Any) -> dict[str, Any]:
    return {} if value is None else {name: value}


def _first(index: BackupIndex) -> BackupInfo | None:
    return index.backups[0] if index.backups else None
