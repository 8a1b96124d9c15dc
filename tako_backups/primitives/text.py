"""Putting a value someone else chose (a name, an id, a message) into a one-line message."""

from __future__ import annotations

__all__ = ["printable"]


def printable(text: str, limit: int = 80) -> str:
    """``text`` safe to show on one line: control characters, lone surrogates and other
    unprintable characters escaped as Python escapes them (``\\n``, ``\\x00``, ``\\ud800``), and
    at most ``limit`` characters (the cut ends in ``...``)."""
    shown = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
    return shown if len(shown) <= limit else shown[: max(limit - 3, 0)] + "..."
