"""One lock per app, so the scheduler, backup_now, restore_backup and deploy never overlap."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import BusyError

__all__ = ["SHUTTING_DOWN", "AppLocks", "busy_message"]

SHUTTING_DOWN = "tako-server is shutting down; try again once it is back."


def busy_message(app: str) -> str:
    return f"A backup or restore of app '{app}' is already running."


class AppLocks:
    """Named non-reentrant locks, one per app id. Thread-safe."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._closed = False

    @contextmanager
    def hold(self, app: str, wait: float = 0.0) -> Iterator[None]:
        """Hold ``app``'s lock for the block; wait up to ``wait`` seconds for it (0: not at all).

        Raises BusyError when the lock is still taken or the locks are closed.
        """
        lock = self._lock_for(app)
        if self._closed:
            raise BusyError(SHUTTING_DOWN)
        acquired = lock.acquire(timeout=wait) if wait > 0 else lock.acquire(blocking=False)
        if not acquired:
            raise BusyError(busy_message(app))
        try:
            yield
        finally:
            lock.release()

    def close(self, timeout: float) -> bool:
        """Refuse new work and wait up to ``timeout`` s for the running work to end (at shutdown).

        Returns True when nothing is running any more.
        """
        with self._guard:
            self._closed = True
            locks = list(self._locks.values())
        deadline = time.monotonic() + timeout
        for lock in locks:
            if not lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
                return False
        return True

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (the server is shutting down)."""
        return self._closed

    def busy(self, app: str) -> bool:
        """Whether something holds ``app``'s lock right now."""
        return self._lock_for(app).locked()

    def _lock_for(self, app: str) -> threading.Lock:
        with self._guard:
            lock = self._locks.get(app)
            if lock is None:
                lock = self._locks[app] = threading.Lock()
            return lock
