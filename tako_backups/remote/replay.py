"""A bounded, thread-safe memory of used request nonces (replay protection).

Time is whole unix seconds, the same clock and rounding as the timestamp check: a nonce is kept
through ``last_second``, the last second its timestamp can still pass, and forgotten after it.
With a :class:`NonceJournal` every nonce is made durable before the request it belongs to may run,
so a restart forgets nothing that could still be replayed.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Iterable
from typing import Protocol

from tako_backups.errors import AuthError

__all__ = ["NonceCache", "NonceJournal"]


class NonceJournal(Protocol):
    """Durable storage of the nonces a :class:`NonceCache` holds."""

    def load(self) -> Iterable[tuple[str, int]]:
        """Every recorded ``(nonce, last_second)``, expired ones included. Raises ConfigError."""
        ...

    def append(self, nonce: str, last_second: int) -> None:
        """Record one nonce; it is durable when this returns. Raises ConfigError."""
        ...

    def rewrite(self, entries: list[tuple[str, int]]) -> None:
        """Replace the record with exactly ``entries``, atomically. Raises ConfigError."""
        ...

    @property
    def appended(self) -> int:
        """Entries appended since the last load or rewrite."""
        ...


class NonceCache:
    """Remembers each nonce through its last second; holds at most ``max_entries`` live nonces."""

    def __init__(self, max_entries: int, journal: NonceJournal | None = None, *, second: int = 0) -> None:
        """With ``journal``, load its nonces still live at ``second`` and compact it.

        Raises ConfigError when the journal cannot be read or rewritten.
        """
        self.max_entries = max_entries
        self._journal = journal
        self._lock = threading.Lock()
        self._expiry: dict[str, int] = {}
        self._heap: list[tuple[int, str]] = []
        if journal is not None:
            for nonce, last_second in journal.load():
                if last_second >= second and self._expiry.get(nonce, -1) < last_second:
                    self._expiry[nonce] = last_second
                    heapq.heappush(self._heap, (last_second, nonce))
            journal.rewrite(sorted(self._expiry.items(), key=lambda item: item[1]))

    def __len__(self) -> int:
        with self._lock:
            return len(self._expiry)

    def _evict(self, second: int) -> None:
        while self._heap and self._heap[0][0] < second:
            last_second, nonce = heapq.heappop(self._heap)
            if self._expiry.get(nonce) == last_second:
                del self._expiry[nonce]

    def seen(self, nonce: str, second: int) -> bool:
        """Whether ``nonce`` is remembered at ``second``."""
        with self._lock:
            self._evict(second)
            return nonce in self._expiry

    def add(self, nonce: str, last_second: int, second: int) -> bool:
        """Remember ``nonce`` through ``last_second``; False when it is remembered already (a replay).

        Raises AuthError when the cache is full of live nonces (refusing a request is safer than
        forgetting a nonce that could then be replayed), ConfigError when the journal cannot
        record it (the request must not run then).
        """
        with self._lock:
            self._evict(second)
            if nonce in self._expiry:
                return False
            if len(self._expiry) >= self.max_entries:
                raise AuthError("Too many signed requests in the replay window; try again shortly.")
            if self._journal is not None:
                self._journal.append(nonce, last_second)
            self._expiry[nonce] = last_second
            heapq.heappush(self._heap, (last_second, nonce))
            if self._journal is not None and self._journal.appended > max(1024, 2 * len(self._expiry)):
                self._journal.rewrite(sorted(self._expiry.items(), key=lambda item: item[1]))
            return True
