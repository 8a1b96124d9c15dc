"""The nonces of accepted signed requests, kept in ``state/seen-nonces`` across restarts.

One line per nonce, ``{last_second} {nonce}``, appended and fsynced before the request runs. At
start the live lines are read back and the file is rewritten with only them (temp file, fsync,
rename); while running it is compacted the same way once it holds about twice as many lines as
live nonces, so its size follows the replay window. A line torn by a crash was never
acknowledged (its request never ran), so unreadable lines are skipped.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import ConfigError
from ..primitives.atomic_files import write_atomic

__all__ = ["NonceFile"]

_LINE = re.compile(rb"([0-9]{1,15}) ([A-Za-z0-9_-]{16,128})")


class NonceFile:
    """A :class:`~tako_backups.remote.replay.NonceJournal` in one file (mode 0600).

    Not thread-safe on its own: the nonce cache calls it under its lock.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None
        self._appended = 0
        self._torn = False

    @property
    def appended(self) -> int:
        return self._appended

    def load(self) -> list[tuple[str, int]]:
        """Every readable ``(nonce, last_second)`` line; none when the file does not exist.

        Raises ConfigError when it cannot be read.
        """
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise ConfigError(f"Cannot read the request nonces in {self.path}: {exc.strerror}.") from None
        entries = []
        for line in data.split(b"\n"):
            match = _LINE.fullmatch(line)
            if match:
                entries.append((match[2].decode("ascii"), int(match[1])))
        self._appended = 0
        return entries

    def append(self, nonce: str, last_second: int) -> None:
        """Append one line and fsync it. Raises ConfigError (then the request must not run)."""
        line = f"{last_second} {nonce}\n".encode("ascii")
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            record = (b"\n" if self._torn else b"") + line
            if os.write(self._fd, record) != len(record):
                raise OSError(28, os.strerror(28))  # a short write: the disk is full
            os.fsync(self._fd)
        except OSError as exc:
            self._torn = True  # a partial line may be left: start the next one on a line of its own
            raise ConfigError(f"Cannot record the request nonce in {self.path}: {exc.strerror}.") from None
        self._torn = False
        self._appended += 1

    def rewrite(self, entries: list[tuple[str, int]]) -> None:
        """Replace the file with exactly ``entries`` (crash-safe). Raises ConfigError."""
        text = "".join(f"{last_second} {nonce}\n" for nonce, last_second in entries).encode("ascii")
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            write_atomic(self.path, text, mode=0o600)
        except OSError as exc:
            raise ConfigError(f"Cannot rewrite the request nonces in {self.path}: {exc.strerror}.") from None
        self.close()
        self._appended = 0
        self._torn = False

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
