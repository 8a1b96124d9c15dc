"""Notes a reply carries next to Tako's ``data`` (our ``"notes": [...]`` field), collected while
one command runs.

A command's reply ``data`` stays in Tako's shape; what the user should know besides (today: that
the bucket cannot be listed, so self-healing is off) goes into ``notes``, each note once per reply.
:func:`collecting` opens the collection for the current thread's command (nested calls share it);
:func:`listing_denied` adds the note and logs it once per collection.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator
from typing import Any

from ..primitives.text import printable
from ..remote.protocol import Reply

__all__ = ["NOTES", "collecting", "listing_denied", "listing_denied_note", "with_notes"]

log = logging.getLogger(__name__)

NOTES = "notes"
_current: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("tako_reply_notes", default=None)


def listing_denied_note(bucket: str) -> str:
    """The note for a bucket whose listing the credentials may not do."""
    shown = printable(bucket, 200)
    return f"Self-healing is off for bucket '{shown}': listing is denied to these credentials."


@contextlib.contextmanager
def collecting() -> Iterator[list[str]]:
    """Collect notes until the block ends; inside an open collection, the same list."""
    notes = _current.get()
    if notes is not None:
        yield notes
        return
    notes = []
    token = _current.set(notes)
    try:
        yield notes
    finally:
        _current.reset(token)


def listing_denied(bucket: str, app: str, skipped: str) -> None:
    """Note that ``bucket`` cannot be listed; the first time in this collection, log which step
    of ``app`` was ``skipped`` (e.g. "leftover cleanup and index rebuild")."""
    note = listing_denied_note(bucket)
    notes = _current.get()
    if notes is not None and note in notes:
        return
    if notes is not None:
        notes.append(note)
    log.warning("listing bucket %s is denied: %s of %s skipped (self-healing is off)", bucket, skipped, app)


def with_notes(data: Any, notes: list[str]) -> Any:
    """``data`` (reply data or a :class:`Reply`) with ``notes`` next to it; unchanged without notes."""
    if not notes:
        return data
    if isinstance(data, Reply):
        return Reply(data.data, {**data.extra, NOTES: list(notes)})
    return Reply(data, {NOTES: list(notes)})
