"""A tiny progress protocol. The core reports through it; the CLI implements it with rich."""

from __future__ import annotations

from typing import Protocol


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
