"""Waiting for something another thread or process does, with a deadline and a message."""

from __future__ import annotations

import time
from collections.abc import Callable

POLL = 0.02


def wait_for(condition: Callable[[], object], what: str = "the condition", *, timeout: float = 20.0) -> None:
    """Poll ``condition`` until it is truthy; fail the test naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(POLL)
