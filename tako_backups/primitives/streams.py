"""The byte sink every streaming stage writes into."""

from __future__ import annotations

from typing import Protocol

__all__ = ["Sink"]


class Sink(Protocol):
    """Anything bytes can be written to: a file, a cipher stage, an upload."""

    def write(self, data: bytes | memoryview) -> int: ...
