"""A tiny progress protocol. The core reports through it; the CLI implements it with rich, the
server with its registry of running operations (which also follows the named phases below)."""

from __future__ import annotations

from typing import Protocol

SNAPSHOT = "snapshot"
ARCHIVE_UPLOAD = "archive+upload"
DOWNLOAD_EXTRACT = "download+extract"
SWAP = "swap"
VERIFY = "verify"
PHASES = (SNAPSHOT, ARCHIVE_UPLOAD, DOWNLOAD_EXTRACT, SWAP, VERIFY)


class Progress(Protocol):
    """Receives progress of one long step at a time."""

    def start(self, description: str, total: int | None = None) -> None:
        """A new step begins; ``total`` is in bytes when known."""

    def advance(self, amount: int) -> None:
        """``amount`` more bytes of the current step are done."""

    def finish(self) -> None:
        """The current step ended."""


class NoProgress:
    """Progress that goes nowhere."""

    def start(self, description: str, total: int | None = None) -> None:
        pass

    def advance(self, amount: int) -> None:
        pass

    def finish(self) -> None:
        pass


NO_PROGRESS: Progress = NoProgress()


def enter_phase(progress: Progress, name: str, total: int | None = None) -> None:
    """Tell ``progress`` that the current step entered phase ``name`` (one of :data:`PHASES`;
    ``total`` in bytes when known) when it follows phases, as the server's registry does: its
    ``phase(name, total)`` method is called. Any other Progress ignores it. Never raises."""
    phase = getattr(progress, "phase", None)
    if callable(phase):
        phase(name, total)
