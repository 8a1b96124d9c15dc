"""What a long server command is doing, drawn while it runs: one progress bar per server on a
terminal (stderr), plain lines every few seconds when stderr is not a terminal, nothing with
``--json``.

:func:`~.targets.call_servers` polls each server's ``operation_progress`` while its call runs and
hands every answer to :meth:`ServerProgress.update`: ``{"operation", "phase", "bytes_done",
"bytes_total", "bytes_per_second", "started_at_unix_secs"}`` or None (nothing running yet).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from typing import IO, Any

from .output import PLAIN_EVERY, format_size

__all__ = ["ServerProgress", "progress_text"]


def progress_text(server: str, data: dict[str, Any]) -> str:
    """``{server}: {phase} {done} of {total} ({pct}%), {rate}/s`` (parts left out when unknown)."""
    phase = data.get("phase") or data.get("operation") or "working"
    done, total = _int(data.get("bytes_done")), _int(data.get("bytes_total"))
    text = f"{server}: {phase} {format_size(done)}"
    if total:
        text += f" of {format_size(total)} ({min(100, 100 * done // total)}%)"
    rate = data.get("bytes_per_second")
    if isinstance(rate, (int, float)) and rate > 0:
        text += f", {format_size(int(rate))}/s"
    return text


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


class ServerProgress:
    """The progress of one command on several servers. Use as a context manager; ``mode`` is
    ``bars`` (rich, on a terminal), ``lines`` (plain lines on ``stream``) or ``off``."""

    def __init__(self, description: str, servers: Sequence[str], mode: str, *,
                 stream: IO[str] | None = None, clock: Callable[[], float] = time.monotonic,
                 every: float = PLAIN_EVERY) -> None:
        self.mode = mode
        self._description = description
        self._servers = list(servers)
        self._stream = stream
        self._clock = clock
        self._every = every
        self._last_line: dict[str, float] = {}
        self._bars: Any = None
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> ServerProgress:
        if self.mode == "bars":
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

            self._bars = Progress(TextColumn("{task.description}"), BarColumn(),
                                  DownloadColumn(binary_units=True), TextColumn("{task.fields[rate]}"),
                                  TimeElapsedColumn(), console=Console(stderr=True), transient=True)
            self._bars.start()
            for server in self._servers:
                self._tasks[server] = self._bars.add_task(f"{server}: {self._description}", total=None,
                                                          rate="")
        started = self._clock()
        self._last_line = dict.fromkeys(self._servers, started)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bars is not None:
            self._bars.stop()
            self._bars = None

    def update(self, server: str, data: dict[str, Any] | None) -> None:
        """Show ``server``'s latest answer (None: nothing reported yet)."""
        if data is None or self.mode == "off":
            return
        if self.mode == "bars" and self._bars is not None and server in self._tasks:
            rate = data.get("bytes_per_second")
            shown = f"{format_size(int(rate))}/s" if isinstance(rate, (int, float)) and rate > 0 else ""
            total = _int(data.get("bytes_total")) or None
            self._bars.update(self._tasks[server], description=f"{server}: {data.get('phase') or 'working'}",
                              total=total, completed=_int(data.get("bytes_done")), rate=shown)
            return
        now = self._clock()
        if self.mode == "lines" and now - self._last_line.get(server, now) >= self._every:
            self._last_line[server] = now
            stream = self._stream if self._stream is not None else sys.stderr
            stream.write(progress_text(server, data) + "\n")
            stream.flush()
