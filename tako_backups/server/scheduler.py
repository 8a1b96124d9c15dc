"""Daily backups: Tako's due rule and a thread that checks every app hourly (first check at start).

An app is due when it has no backups, its newest is at least 86,400 s old, or its index cannot be
read; ``next_backup_at`` is the newest's ``created_at`` + 86,400, or now when there is none.
As our extension, each check also runs the restore drill of every app whose drill is due (weekly, on
the newest backup; see :mod:`.drills`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from ..core.drill import DrillResult
from ..errors import BusyError, TakoError
from ..models import BackupInfo
from .drills import DRILL_INTERVAL

__all__ = ["BACKUP_INTERVAL", "CHECK_INTERVAL", "Scheduler", "is_due", "next_backup_at"]

log = logging.getLogger(__name__)

BACKUP_INTERVAL = 86_400
CHECK_INTERVAL = 3_600.0


def next_backup_at(newest: BackupInfo | None, now: int) -> int:
    """When the next scheduled backup is due (unix seconds)."""
    return now if newest is None else newest.created_at_unix_secs + BACKUP_INTERVAL


def is_due(newest: BackupInfo | None, now: int) -> bool:
    """Due when there is no backup yet or the newest is at least a day old."""
    return newest is None or now - newest.created_at_unix_secs >= BACKUP_INTERVAL


class ScheduledApps(Protocol):
    """What the scheduler needs from the service."""

    def enabled_apps(self) -> list[str]: ...

    def is_due(self, app: str, now: int) -> bool: ...

    def scheduled_backup(self, app: str) -> BackupInfo: ...

    def drill_due(self, app: str, now: int, interval: float) -> bool: ...

    def scheduled_drill(self, app: str) -> DrillResult | None: ...


class Scheduler:
    """Checks every app with backups enabled each ``interval`` seconds, in a thread: due backups
    first, then due drills (one every ``drill_interval`` seconds per app)."""

    def __init__(self, apps: ScheduledApps, interval: float = CHECK_INTERVAL,
                 clock: Callable[[], float] = time.time, drill_interval: float = DRILL_INTERVAL) -> None:
        self._apps = apps
        self.interval = interval
        self.drill_interval = drill_interval
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread; its first check runs at once."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="tako-scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop after the backup in progress (waiting up to ``timeout`` s); True when it ended."""
        thread, self._thread = self._thread, None
        self._stop.set()
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def run_once(self) -> list[BackupInfo]:
        """Check every enabled app once and back up the due ones; returns the backups taken.

        Never raises: failures are logged, a busy app is skipped until the next check.
        """
        taken: list[BackupInfo] = []
        try:
            apps = self._apps.enabled_apps()
        except TakoError as exc:
            log.error("scheduler could not list apps: %s", exc)
            return taken
        for app in apps:
            if self._stop.is_set():
                break
            try:
                if not self._apps.is_due(app, int(self._clock())):
                    continue
                taken.append(self._apps.scheduled_backup(app))
            except BusyError:
                log.info("scheduled backup of %s skipped: a backup or restore is running", app)
            except TakoError as exc:
                log.error("scheduled backup of %s failed: %s", app, exc)
            except Exception:
                log.exception("scheduled backup of %s failed unexpectedly", app)
        return taken

    def run_drills(self) -> list[DrillResult]:
        """Drill the newest backup of every enabled app whose drill is due; returns the drills run
        (passed or failed). Drills take no app lock (they never touch live data), so they neither
        wait for nor block backups and restores. Never raises: errors are logged."""
        results: list[DrillResult] = []
        try:
            apps = self._apps.enabled_apps()
        except TakoError as exc:
            log.error("scheduler could not list apps: %s", exc)
            return results
        for app in apps:
            if self._stop.is_set():
                break
            try:
                if not self._apps.drill_due(app, int(self._clock()), self.drill_interval):
                    continue
                result = self._apps.scheduled_drill(app)
            except BusyError:
                log.info("drill of %s skipped: a backup or restore is running", app)
                continue
            except TakoError as exc:
                log.error("drill of %s could not run: %s", app, exc)
                continue
            except Exception:
                log.exception("drill of %s failed unexpectedly", app)
                continue
            if result is not None:
                results.append(result)
        return results

    def _loop(self) -> None:
        while not self._stop.is_set():
            for info in self.run_once():
                log.info("scheduled backup %s of %s/%s done", info.id, info.app, info.environment)
            if not self._stop.is_set():
                self.run_drills()
            self._stop.wait(self.interval)
