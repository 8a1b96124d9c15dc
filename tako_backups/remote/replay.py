"""A bounded, thread-safe memory of recently used request nonces (replay protection)."""

from __future__ import annotations

import heapq
import threading

from tako_backups.errors import AuthError


class NonceCache:
    """Remembers each nonce until its expiry time; holds at most ``max_entries`` live nonces."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._expiry: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []

    def __len__(self) -> int:
        with self._lock:
            return len(self._expiry)

    def _evict(self, now: float) -> None:
        while self._heap and self._heap[0][0] < now:
            expires_at, nonce = heapq.heappop(self._heap)
            if self._expiry.get(nonce) == expires_at:
                del self._expiry[nonce]

    def seen(self, nonce: str, now: float) -> bool:
        """Whether nonce was recorded and has not expired by now."""
        with self._lock:
            self._evict(now)
            return nonce in self._expiry

    def add(self, nonce: str, expires_at: float, now: float) -> bool:
        """Record nonce until expires_at; False when it is already recorded (a replay).

        Raises AuthError when the cache is full of live nonces: refusing a request is safer
        than forgetting a nonce that could then be replayed.
        """
        with self._lock:
            self._evict(now)
            if nonce in self._expiry:
                return False
            if len(self._expiry) >= self.max_entries:
                raise AuthError("Too many signed requests in the replay window; try again shortly.")
            self._expiry[nonce] = expires_at
            heapq.heappush(self._heap, (expires_at, nonce))
            return True
