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
from ..core.copies import Place, first_working
from ..core.drill import DrillResult
from ..errors import FormatError, NotFoundError, TakoError
from ..models import BackupBinding, BackupInfo
from ..policy import NotifySettings
from ..primitives.names import check_app_id
from ..remote.protocol import CAPABILITIES, PROTOCOL_VERSION, Reply, RuntimeSettings
from .alerts import Alerts
from .app_backups import AppBackups, StoreFactory
from .backup_runs import BackupRuns
from .copies import BackupCopies
from .drills import DRILL_INTERVAL, DrillLog, RestoreDrills
from .identity_key import read_server_identity
from .index_repair import IndexRepair
from .locks import AppLocks
from .notify import Notifier
from .operations import OperationRegistry
from .paths import ServerPaths
from .preview import preview_restore
from .reencryption import Reencryption
from .reports import Reports
from .restores import Restores
from .runtime import AppRuntime
from .safety import SafetyCopies
from .scheduled import ScheduledWork
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
    tree must leave), ``operations`` (the progress of running operations), ``copies`` (the second
    copy: its state, ``sync_copies`` and the places reads fall back to), ``alerts``
    (notifications, through ``notifier``, which the owner closes at shutdown), ``reports`` (list
    and status) and ``scheduled`` (what the scheduler runs); the RPC commands they answer are
    delegated to them.
    """

    def __init__(
        self, paths: ServerPaths, server_name: str, *, runtime: AppRuntime | None = None,
        state: StateStore | None = None, store_factory: StoreFactory | None = None,
        locks: AppLocks | None = None, clock: Callable[[], float] = time.time,
        deploy_lock_wait: float = 300.0, identity: str | None = None, keep_reserve: int | None = None,
        notifier: Notifier | None = None,
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
        self.notifier = notifier or Notifier()
        self.alerts = Alerts(self.notifier, server_name, clock, since=clock())
        self.copies = BackupCopies(self.backups, self.index, self.alerts)
        self.drills = RestoreDrills(self.backups, self.index, DrillLog(paths.state_dir), self.copies.places)
        self.reencryption = Reencryption(self.backups, self.index, self.copies)
        self.runs = BackupRuns(self.backups, self.copies)
        self.operations = OperationRegistry(clock)
        self.safety = SafetyCopies(self.backups, self.runs, self.operations, reserve=keep_reserve)
        self.restores = Restores(self.backups, self.index, self.runs, self.safety, self.operations, runtime,
                                 self.copies.places)
        self.reports = Reports(self.backups, self.index, self.drills, self.copies, self.safety, clock)
        self.scheduled = ScheduledWork(self.backups, self.runs, self.drills, self.copies, self.alerts,
                                       self.operations)
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
        return dict(self.backup_now_reply(app, backup).data)

    def backup_now_reply(self, app: str, backup: BackupBinding | None) -> Reply:
        """:meth:`backup_now` as the RPC answers it: with a copy, how the copy went (``copy``:
        ``{"bucket", "status": "ok" | "failed", "error"?, "state"}``) next to the BackupInfo."""
        check_app_id(app)
        with self.locks.hold(app), self.operations.running(app, "backup") as tracker:
            if backup is not None:
                self.backups.store_settings(app, backup)
            info, copy = self.runs.take_reporting(app, self.backups.settings(app), "manual", tracker)
        return Reply(info.to_dict(), {} if copy is None else {"copy": copy})

    def list_backups(self, app: str, why: bool = False) -> dict[str, Any]:
        """See :meth:`Reports.list_backups`."""
        return self.reports.list_backups(app, why)

    def backup_status(self, app: str) -> dict[str, Any]:
        """See :meth:`Reports.backup_status`."""
        return self.reports.backup_status(app)

    def backup_download_url(self, app: str, backup_id: str, source: str | None = None) -> dict[str, Any]:
        """``{"backup", "url", "expires_in_seconds"}`` (presigned GET, 900 s). With a copy, the
        link is the primary's unless its object is missing (or has another size) or its bucket
        cannot be reached, then the copy's; ``source`` (``primary`` or ``copy``) asks for one
        (e.g. after the primary's download failed its checksum), and the reply says which it
        is (``source``, ``source_bucket``, ``fallback_reason``).

        Raises NotFoundError (app settings, backup id, no such copy) or StorageError.
        """
        settings = self.backups.settings(app)
        places = self.copies.places(app, settings)
        if source is not None:
            places = [p for p in places if p.name == source]
            if not places:
                raise NotFoundError(f"App '{app}' has no {source} copy of its backups.")
        _, prefix = self.backups.location(app, settings)

        def link(place: Place) -> tuple[BackupInfo, str]:
            info = catalog.find_backup(place.store, prefix, backup_id)
            head = place.store.head(info.archive_key)
            if head is None or head.size != info.size_bytes:
                raise NotFoundError(f"The archive of backup {info.id} is missing or incomplete.")
            return info, place.store.presigned_get_url(info.archive_key, DOWNLOAD_URL_SECONDS)

        found = first_working(places, link)
        info, url = found.value
        out = {"backup": info.to_dict(), "url": url, "expires_in_seconds": DOWNLOAD_URL_SECONDS}
        if settings.copy is not None:
            out.update(found.source_fields())
        return out

    def restore_backup(self, app: str, backup_id: str, safety_backup: bool = True,
                       keep_hours: float | None = None) -> Reply:
        """See :meth:`Restores.restore_backup`."""
        return self.restores.restore_backup(app, backup_id, safety_backup, keep_hours)

    def restore_paths(self, app: str, backup_id: str, paths: list[str], safety_backup: bool = True,
                      keep_hours: float | None = None) -> Reply:
        """See :meth:`Restores.restore_paths`."""
        return self.restores.restore_paths(app, backup_id, paths, safety_backup, keep_hours)

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
                info, copy = self.runs.take_reporting(app, backup, "post-deploy", tracker)
        except TakoError as exc:
            log.warning("post-deploy backup of %s failed: %s", app, exc)
            self.alerts.backup_failed(app, backup, f"The post-deploy backup failed: {exc}")
            return {"status": "failed", "message": str(exc)}
        return {"status": "created", "id": info.id, "size_bytes": info.size_bytes,
                **({} if copy is None else {"copy": copy})}

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
            _, prefix = self.backups.location(app, settings)

            def preview_from(place: Place) -> dict[str, Any]:
                info = catalog.find_backup(place.store, prefix, backup_id)
                return preview_restore(app=app, info=info, store=place.store, keys=settings.backup_keys,
                                       paths=self.paths)

            found = first_working(self.copies.places(app, settings), preview_from)
            if settings.copy is None:
                return found.value
            return {**found.value, **found.source_fields()}

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

    def sync_copies(self, app: str) -> dict[str, Any]:
        """See :meth:`BackupCopies.sync`."""
        return self.copies.sync(app)

    def notify_test(self, app: str, notify: NotifySettings | None) -> dict[str, Any]:
        """Send a ``test`` event now to ``notify`` (else the app's stored notify settings) and
        wait for the answers: ``{"app", "results": {target: "delivered" | "failed (...)"}}``.
        Raises NotFoundError when there is nothing to send to."""
        check_app_id(app)
        if notify is None:
            state = self.state.load(app)
            notify = None if state is None or state.backup is None else state.backup.notify
        if notify is None:
            raise NotFoundError(f"App '{app}' has no notification settings on this server; add "
                                "[envs.<env>.notify] to tako-backups.toml and deploy.")
        return {"app": app, "results": self.alerts.test(app, notify)}

    # ----- scheduler hooks (see :class:`ScheduledWork`) -----

    def enabled_apps(self) -> list[str]:
        return self.scheduled.enabled_apps()

    def is_due(self, app: str, now: int) -> bool:
        return self.scheduled.is_due(app, now)

    def drill_due(self, app: str, now: int, interval: float = DRILL_INTERVAL) -> bool:
        return self.scheduled.drill_due(app, now, interval)

    def scheduled_drill(self, app: str) -> DrillResult | None:
        return self.scheduled.scheduled_drill(app)

    def scheduled_backup(self, app: str) -> BackupInfo:
        return self.scheduled.scheduled_backup(app)
