"""What is announced about an app's backups, to the notify settings it was deployed with.

:class:`Alerts` turns what the server sees into :mod:`.notify` events: a failed scheduled or
post-deploy backup (``backup_failed``), a failed drill (``drill_failed``), a copy that failed or
lags (``copy_lagging``), no good backup for ``every`` x 1.5 + 1 h (``backup_overdue``, once per
newest backup) and storage credentials that expire within 14 days (``credentials_expiring``, once
per bucket and date). It never raises and never blocks: delivery is the notifier's, in the
background. Apps without notify settings are skipped.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from typing import Any

from ..errors import TakoError
from ..models import BackupBinding, BackupInfo, StorageBinding
from ..policy import NotifySettings, policy_of
from .notify import Event, Notifier, is_overdue, overdue_after

__all__ = ["EXPIRY_WARNING_DAYS", "Alerts"]

log = logging.getLogger(__name__)

EXPIRY_WARNING_DAYS = 14


class Alerts:
    """Sends the events of every app through one :class:`~.notify.Notifier`. Thread-safe."""

    def __init__(self, notifier: Notifier, server: str, clock: Callable[[], float], since: float) -> None:
        """``since``: when this server started (an app with no backup at all counts as overdue
        from then)."""
        self.notifier = notifier
        self.server = server
        self._clock = clock
        self._since = int(since)
        self._lock = threading.Lock()
        self._outages: dict[str, int] = {}  # app -> scheduled backups that succeeded so far

    def backup_failed(self, app: str, settings: BackupBinding | None, error: str) -> None:
        self._send(app, settings, "backup_failed", error=error)

    def scheduled_backup_failed(self, app: str, settings: BackupBinding, error: str) -> None:
        """A failed scheduled backup, announced once until one succeeds again (the scheduler
        retries failures every few minutes)."""
        with self._lock:
            outage = self._outages.get(app, 0)
        self._send(app, settings, "backup_failed", error=f"The scheduled backup failed: {error}",
                   once=f"outage-{outage}")

    def scheduled_backup_ok(self, app: str) -> None:
        with self._lock:
            self._outages[app] = self._outages.get(app, 0) + 1

    def drill_failed(self, app: str, settings: BackupBinding | None, backup_id: str, error: str) -> None:
        self._send(app, settings, "drill_failed", backup_id=backup_id, error=error)

    def copy_lagging(self, app: str, settings: BackupBinding | None, backup_id: str | None,
                     error: str | None) -> None:
        bucket = settings.copy.bucket if settings is not None and settings.copy is not None else "?"
        self._send(app, settings, "copy_lagging", backup_id=backup_id,
                   error=f"The copy in bucket {bucket} lags behind: {error or 'backups are missing.'}")

    def watch(self, app: str, settings: BackupBinding, newest: BackupInfo | None) -> None:
        """The checks of each scheduler round: overdue backups and expiring credentials."""
        if settings.notify is None:
            return
        now = int(self._clock())
        every = policy_of(settings).every
        if is_overdue(newest, now, every, self._since):
            hours = overdue_after(every) / 3_600
            since = "no backup yet" if newest is None else f"the newest is {newest.id}"
            self._send(app, settings, "backup_overdue", backup_id=None if newest is None else newest.id,
                       error=f"No good backup for more than {hours:g} hours ({since}).",
                       once=newest.id if newest is not None else "none")
        for label, storage in (("backup storage", settings.storage), ("copy storage", settings.copy)):
            left = days_left(storage, now)
            if storage is not None and left is not None and left <= EXPIRY_WARNING_DAYS:
                when = "expired" if left < 0 else f"expire on {storage.expires_on}"
                self._send(app, settings, "credentials_expiring",
                           error=f"The credentials of the {label} (bucket {storage.bucket}) {when}; "
                                 "renew them with `tako storages credentials` and deploy.",
                           once=f"{storage.bucket}:{storage.expires_on}")

    def test(self, app: str, notify: NotifySettings) -> dict[str, str]:
        """Deliver a ``test`` event now, in this thread: shown target -> outcome."""
        event = Event.for_app("test", app, self.server, int(self._clock()),
                              error="This is a test notification from tako-server.")
        return self.notifier.try_now(notify, event)

    def _send(self, app: str, settings: BackupBinding | None, kind: str, *, backup_id: str | None = None,
              error: str | None = None, once: str | None = None) -> None:
        if settings is None or settings.notify is None:
            return
        try:
            event = Event.for_app(kind, app, self.server, int(self._clock()), backup_id=backup_id,
                                  error=error)
        except TakoError as exc:  # a bad app id: nothing to tell anyone about
            log.error("cannot announce %s for %s: %s", kind, app, exc)
            return
        self.notifier.send(settings.notify, event, once=once)


def days_left(storage: StorageBinding | None, now: int) -> int | None:
    """Whole days from ``now`` (UTC) until the storage's credentials expire; None without a date."""
    if storage is None or storage.expires_on is None:
        return None
    today = dt.datetime.fromtimestamp(now, dt.UTC).date()
    return (dt.date.fromisoformat(storage.expires_on) - today).days


def notify_summary(settings: BackupBinding) -> dict[str, Any] | None:
    """The ``notify`` field of ``backup_status``: what is told and where, no secrets."""
    return None if settings.notify is None else settings.notify.summary()
