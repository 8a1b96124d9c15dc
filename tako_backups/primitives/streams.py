"""The byte sink every streaming stage writes into, and the pieces stages hand each other."""

from __future__ import annotations

from typing import Protocol, TypeAlias

__all__ = ["Piece", "Sink"]

Piece: TypeAlias = bytes | memoryview
"""A piece of a stream passed between stages: bytes, or a view of a larger buffer."""


class Sink(Protocol):
    """Anything bytes can be written to: a file, a cipher stage, an upload."""

    def write(self, data: Piece) -> int: ...
