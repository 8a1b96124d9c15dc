"""Scheduled backups and drills: the due rule and a thread that checks every app each minute.

Due rule: an app is due when it has no regular backup, or its newest regular backup is at least
``every`` seconds old (the app's policy; Tako's 86,400 by default); ``next_backup_at`` is that
backup's ``created_at`` + ``every``, or now when there is none. Pre-restore safety backups do not
count (:func:`~tako_backups.policy.newest_regular`): restoring must not push the next backup a
whole period away. Since due-ness is measured from the newest backup and not from a timetable, a
server that was down for days takes one backup when it is back, not one per missed period.

The thread checks every ``interval`` seconds (60: a backup starts within a minute of its due time;
first check at start) and hands due work to worker threads, at most ``max_jobs`` at once and never
two of the same app (the service's app lock also refuses a backup while another backup or restore
of that app runs). A check or job that fails is retried after ``retry_first`` seconds, doubling up
to ``retry_max``. As our extension, each check also runs the restore drill of every app whose drill is
due (weekly, on the newest backup; see :mod:`.drills`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..core.drill import DrillResult
from ..errors import BusyError, TakoError
from ..models import BackupInfo
from ..policy import DEFAULT_EVERY
from .drills import DRILL_INTERVAL

__all__ = ["BACKUP_INTERVAL", "CHECK_INTERVAL", "ScheduledApps", "Scheduler", "is_due", "next_backup_at"]

log = logging.getLogger(__name__)

BACKUP_INTERVAL = DEFAULT_EVERY
CHECK_INTERVAL = 60.0
MAX_JOBS = 2
RETRY_FIRST = 300.0
RETRY_MAX = 3_600.0
BACKUP, DRILL = "backup", "drill"


def next_backup_at(newest: BackupInfo | None, now: int, every: int = BACKUP_INTERVAL) -> int:
    """When the next scheduled backup is due (unix seconds); ``newest`` is the newest regular
    backup (:func:`~tako_backups.policy.newest_regular`), or None."""
    return now if newest is None else newest.created_at_unix_secs + every


def is_due(newest: BackupInfo | None, now: int, every: int = BACKUP_INTERVAL) -> bool:
    """Due when there is no regular backup yet or the newest is at least ``every`` seconds old."""
    return now >= next_backup_at(newest, now, every)


class ScheduledApps(Protocol):
    """What the scheduler needs from the service. ``is_due`` applies :func:`is_due` with the app's
    policy to its index (True when the index cannot be read); the scheduled methods raise BusyError
    when the app is busy and TakoError when they fail."""

    def enabled_apps(self) -> list[str]: ...

    def is_due(self, app: str, now: int) -> bool: ...

    def scheduled_backup(self, app: str) -> BackupInfo: ...

    def drill_due(self, app: str, now: int, interval: float) -> bool: ...

    def scheduled_drill(self, app: str) -> DrillResult | None: ...


@dataclass
class _Job:
    kind: str
    app: str
    thread: threading.Thread | None = None
    result: Any = None
    done: threading.Event = field(default_factory=threading.Event)


class Scheduler:
    """Checks every app with backups enabled each ``interval`` seconds, in a thread, and runs due
    backups and drills in worker threads (see the module docstring). Thread-safe."""

    def __init__(self, apps: ScheduledApps, interval: float = CHECK_INTERVAL,
                 clock: Callable[[], float] = time.time, drill_interval: float = DRILL_INTERVAL, *,
                 max_jobs: int = MAX_JOBS, retry_first: float = RETRY_FIRST,
                 retry_max: float = RETRY_MAX) -> None:
        self._apps = apps
        self.interval = interval
        self.drill_interval = drill_interval
        self.retry_first, self.retry_max = retry_first, retry_max
        self._clock = clock
        self._slots = threading.BoundedSemaphore(max_jobs)
        self._guard = threading.Lock()
        self._running: dict[tuple[str, str], _Job] = {}
        self._retry: dict[tuple[str, str], tuple[float, float]] = {}  # key -> (not before, last delay)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._starved = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread; its first check runs at once."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="tako-scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop checking and wait up to ``timeout`` s for running jobs; True when none is left."""
        thread, self._thread = self._thread, None
        self._stop.set()
        self._wake.set()
        deadline = time.monotonic() + timeout
        if thread is not None:
            thread.join(timeout)
        with self._guard:
            jobs = list(self._running.values())
        for job in jobs:
            job.done.wait(max(0.0, deadline - time.monotonic()))
        return (thread is None or not thread.is_alive()) and all(job.done.is_set() for job in jobs)

    def run_once(self) -> list[BackupInfo]:
        """Check every enabled app now, back up the due ones and wait for them; returns the backups
        taken. Never raises: failures are logged, a busy app is skipped until the next check."""
        jobs = self._check(BACKUP, wait=True)
        for job in jobs:
            job.done.wait()
        return [job.result for job in jobs if job.result is not None]

    def run_drills(self) -> list[DrillResult]:
        """Drill the newest backup of every enabled app whose drill is due and wait for them;
        returns the drills run (passed or failed). Drills take no app lock (they never touch live
        data), so they neither wait for nor block backups and restores. Never raises."""
        jobs = self._check(DRILL, wait=True)
        for job in jobs:
            job.done.wait()
        return [job.result for job in jobs if job.result is not None]

    def busy(self, app: str) -> bool:
        """True while a scheduled backup or drill of ``app`` runs."""
        with self._guard:
            return (BACKUP, app) in self._running or (DRILL, app) in self._running

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            self._check(BACKUP, wait=False)
            if not self._stop.is_set():
                self._check(DRILL, wait=False)
            self._wake.wait(self.interval)

    def _check(self, kind: str, wait: bool) -> list[_Job]:
        """Start a job for every due app of ``kind``; with ``wait``, wait for a free slot rather than
        leaving the rest for the next check. Returns the jobs started."""
        try:
            apps = self._apps.enabled_apps()
        except TakoError as exc:
            log.error("scheduler could not list apps: %s", exc)
            return []
        started = []
        for app in apps:
            if self._stop.is_set():
                break
            key, now = (kind, app), self._clock()
            with self._guard:
                if key in self._running or now < self._retry.get(key, (0.0, 0.0))[0]:
                    continue
            try:
                due = (self._apps.is_due(app, int(now)) if kind == BACKUP
                       else self._apps.drill_due(app, int(now), self.drill_interval))
            except Exception as exc:
                self._failed(key, f"could not check the {kind} of {app}", exc)
                continue
            if not due:
                continue
            if not self._slots.acquire(blocking=wait):
                self._starved = True  # the next job to finish wakes the loop
                break
            job = _Job(kind, app)
            with self._guard:
                self._running[key] = job
            job.thread = threading.Thread(target=self._run, args=(job,), daemon=True,
                                          name=f"tako-{kind}-{app}")
            job.thread.start()
            started.append(job)
        return started

    def _run(self, job: _Job) -> None:
        key = (job.kind, job.app)
        try:
            if job.kind == BACKUP:
                job.result = self._apps.scheduled_backup(job.app)
                log.info("scheduled backup %s of %s/%s done", job.result.id, job.result.app,
                         job.result.environment)
            else:
                job.result = self._apps.scheduled_drill(job.app)
            with self._guard:
                self._retry.pop(key, None)
        except BusyError:
            what = "scheduled backup" if job.kind == BACKUP else "drill"
            log.info("%s of %s skipped: a backup or restore is running", what, job.app)
            with self._guard:  # try again at the next check, not at once
                self._retry[key] = (self._clock() + self.interval, self._retry.get(key, (0.0, 0.0))[1])
        except Exception as exc:
            what = "scheduled backup of" if job.kind == BACKUP else "drill of"
            self._failed(key, f"{what} {job.app} failed", exc)
        finally:
            with self._guard:
                self._running.pop(key, None)
            self._slots.release()
            job.done.set()
            if self._starved:
                self._starved = False
                self._wake.set()

    def _failed(self, key: tuple[str, str], what: str, exc: Exception) -> None:
        """Log a failure and hold ``key`` back: retry_first, then doubling up to retry_max."""
        with self._guard:
            last = self._retry.get(key, (0.0, 0.0))[1]
            delay = min(self.retry_max, last * 2) if last else self.retry_first
            self._retry[key] = (self._clock() + delay, delay)
        if isinstance(exc, TakoError):
            log.error("%s: %s (next try in %ds)", what, exc, delay)
        else:
            log.exception("%s unexpectedly (next try in %ds)", what, delay)
