"""What each app's long operation is doing right now, for the ``operation_progress`` command.

A backup, restore or undo registers itself for its app (:meth:`OperationRegistry.running`) and
hands the :class:`Tracker` it gets to the core as its :class:`~tako_backups.progress.Progress`.
The tracker follows the named phases (``snapshot``, ``archive+upload``, ``download+extract``,
``swap``, ``verify``): each keeps its own bytes done and total; the rate is measured over the
last few seconds of the current phase. The background upload of a kept tree registers apart
(``background=True``), so it never hides the foreground operation of the same app.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ..core.pipes import release_free_memory

__all__ = ["OperationRegistry", "Tracker"]

RATE_WINDOW = 5.0
SAMPLE_EVERY = 0.2


@dataclass
class _Phase:
    done: int = 0
    total: int | None = None


class Tracker:
    """The progress of one operation (a :class:`~tako_backups.progress.Progress` that also
    follows phases). Thread-safe: the core advances it from its pipeline threads while
    ``operation_progress`` reads it."""

    def __init__(self, operation: str, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.operation = operation
        self.started_at = clock()
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._phases: dict[str, _Phase] = {}
        self._current: str | None = None
        self._samples: deque[tuple[float, int]] = deque()

    def phase(self, name: str, total: int | None = None) -> None:
        """Enter phase ``name`` (its bytes continue where they were when it is entered again);
        ``total`` in bytes when known."""
        with self._lock:
            entry = self._phases.setdefault(name, _Phase())
            if total is not None:
                entry.total = total
            if name != self._current:
                self._current = name
                self._samples = deque([(self._monotonic(), entry.done)])

    def start(self, description: str, total: int | None = None) -> None:
        """A core step begins: its ``total`` (when known) becomes the current phase's total."""
        if total is not None:
            with self._lock:
                if self._current is not None:
                    self._phases[self._current].total = total

    def advance(self, amount: int) -> None:
        with self._lock:
            if self._current is None:
                return
            entry = self._phases[self._current]
            entry.done += amount
            now = self._monotonic()
            if not self._samples or now - self._samples[-1][0] >= SAMPLE_EVERY:
                self._samples.append((now, entry.done))
                while len(self._samples) > 2 and now - self._samples[1][0] >= RATE_WINDOW:
                    self._samples.popleft()

    def finish(self) -> None:
        """A core step ended (the phase stays until the next one is entered)."""

    def to_dict(self) -> dict[str, Any]:
        """``{"operation", "phase", "bytes_done", "bytes_total", "bytes_per_second",
        "started_at_unix_secs"}``; ``bytes_total`` is null when unknown, ``phase`` null before
        the first phase."""
        with self._lock:
            entry = self._phases.get(self._current or "", _Phase())
            rate = 0.0
            if self._samples:
                since, done_then = self._samples[0]
                elapsed = self._monotonic() - since
                if elapsed > 0:
                    rate = max(0.0, (entry.done - done_then) / elapsed)
            return {"operation": self.operation, "phase": self._current, "bytes_done": entry.done,
                    "bytes_total": entry.total, "bytes_per_second": round(rate, 1),
                    "started_at_unix_secs": int(self.started_at)}


class OperationRegistry:
    """The running operations of every app (one foreground, one background each). Thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._running: dict[tuple[str, bool], Tracker] = {}

    @contextmanager
    def running(self, app: str, operation: str, *, background: bool = False) -> Iterator[Tracker]:
        """Register ``operation`` of ``app`` for the block and yield its tracker."""
        tracker = Tracker(operation, self._clock)
        key = (app, background)
        with self._lock:
            self._running[key] = tracker
        try:
            yield tracker
        finally:
            with self._lock:
                if self._running.get(key) is tracker:
                    del self._running[key]
            release_free_memory()  # an idle server gives back what the operation freed

    def progress(self, app: str, *, background: bool = False) -> dict[str, Any] | None:
        """What ``app``'s running operation is doing (see :meth:`Tracker.to_dict`), or None."""
        with self._lock:
            tracker = self._running.get((app, background))
        return None if tracker is None else tracker.to_dict()
