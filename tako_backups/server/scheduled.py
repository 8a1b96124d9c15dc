"""What the scheduler runs on the server (the :class:`~.scheduler.ScheduledApps` side): which apps
have backups, whether one is due (with the alarms of each round), and the scheduled backups and
drills, whose failures are announced."""

from __future__ import annotations

import logging

from ..core import catalog
from ..core.drill import DrillResult
from ..errors import BusyError, FormatError, TakoError
from ..models import BackupInfo
from ..policy import newest_regular, policy_of
from .alerts import Alerts
from .app_backups import AppBackups
from .backup_runs import BackupRuns
from .copies import BackupCopies
from .drills import DRILL_INTERVAL, RestoreDrills
from .operations import OperationRegistry
from .scheduler import is_due

__all__ = ["ScheduledWork"]

log = logging.getLogger(__name__)


class ScheduledWork:
    """Scheduled backups and drills of every app. Thread-safe."""

    def __init__(self, backups: AppBackups, runs: BackupRuns, drills: RestoreDrills, copies: BackupCopies,
                 alerts: Alerts, operations: OperationRegistry) -> None:
        self._backups = backups
        self._runs = runs
        self._drills = drills
        self._copies = copies
        self._alerts = alerts
        self._operations = operations

    def enabled_apps(self) -> list[str]:
        """Apps with backup settings (those whose settings cannot be read are logged and left out)."""
        apps = []
        for app in self._backups.state.apps():
            try:
                state = self._backups.state.load(app)
            except TakoError as exc:
                log.error("skipping %s: %s", app, exc)
                continue
            if state is not None and state.backup is not None:
                apps.append(app)
        return apps

    def is_due(self, app: str, now: int) -> bool:
        """Due when there is no regular backup, the newest regular one is at least the policy's
        ``every`` old (Tako's day by default), or the index is unreadable; meanwhile the alarms
        are raised (overdue backups, expiring credentials: :meth:`Alerts.watch`).

        Raises NotFoundError or StorageError.
        """
        settings = self._backups.settings(app)
        store, prefix = self._backups.location(app, settings)
        try:
            index = catalog.read_index(store, prefix)
        except FormatError:
            return True
        newest = newest_regular(index.backups)
        self._alerts.watch(app, settings, newest)
        return is_due(newest, now, policy_of(settings).every)

    def drill_due(self, app: str, now: int, interval: float = DRILL_INTERVAL) -> bool:
        """Whether the weekly drill of ``app`` is due."""
        return self._drills.is_due(app, now, interval)

    def scheduled_drill(self, app: str) -> DrillResult | None:
        """Drill the newest backup (None when there is none yet); a failed drill is announced.
        Raises StorageError."""
        result = self._drills.scheduled_drill(app)
        if result is not None and not result.ok:
            self._alerts.drill_failed(app, self._backups.settings(app), result.backup_id,
                                      result.message or "The drill failed.")
        return result

    def scheduled_backup(self, app: str) -> BackupInfo:
        """Bring a lagging copy up to date, then take a backup with the stored settings; a failed
        backup is announced (once until a backup succeeds again). Raises BusyError when the app
        is busy, and what the backup raises."""
        with self._backups.locks.hold(app), self._operations.running(app, "backup") as tracker:
            settings = self._backups.settings(app)
            if self._copies.lagging(app, settings):
                try:
                    self._copies.sync_locked(app, settings)
                except TakoError as exc:
                    log.warning("could not bring the copy of %s up to date: %s", app, exc)
            try:
                info = self._runs.take(app, settings, "scheduled", tracker)
            except BusyError:
                raise
            except TakoError as exc:
                self._alerts.scheduled_backup_failed(app, settings, str(exc))
                raise
            self._alerts.scheduled_backup_ok(app)
            return info
