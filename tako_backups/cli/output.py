"""All terminal output goes through :class:`Output`: plain text, or one JSON object with
``--json``. Messages go to stdout; warnings (``! ...``, as Tako), errors (``error: ...``) and
progress bars to stderr. Success lines read ``✔ ...``, as Tako's.

:class:`Output` also implements :class:`tako_backups.progress.Progress` with rich progress bars
(bytes and bytes/s) when stderr is a terminal, a plain line every few seconds on stderr when it
is not, and silence with ``--json``; :meth:`Output.server_progress` draws what long server
commands report (:mod:`.progress_view`) the same way.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from .progress_view import ServerProgress

_UNITS = ("KB", "MB", "GB", "TB", "PB")
PLAIN_EVERY = 5.0  # seconds between plain progress lines when stderr is not a terminal
PROGRESS_ENV = "TAKO_PROGRESS"
PROGRESS_MODES = ("off", "lines", "bars")


def format_size(size: int) -> str:
    """Tako's sizes, base 1024: ``999 bytes``, ``1.50 KB``, ``2.00 MB``."""
    if size < 1024:
        return f"{size} bytes"
    value = float(size)
    for unit in _UNITS:
        value /= 1024
        if value < 1024 or unit == _UNITS[-1]:
            return f"{value:.2f} {unit}"
    raise AssertionError("unreachable")


def format_local_time(unix_secs: int | float) -> str:
    """A unix time as local ``YYYY-MM-DD HH:MM:SS``."""
    return dt.datetime.fromtimestamp(unix_secs).strftime("%Y-%m-%d %H:%M:%S")


class Output:
    """Text or JSON output for one command run."""

    def __init__(self, *, json_mode: bool = False, verbose: bool = False, dry_run: bool = False) -> None:
        self.json_mode = json_mode
        self.verbose = verbose
        self.dry_run = dry_run
        self.emitted = False
        self._bar: Any = None
        self._task: Any = None
        self._step: dict[str, Any] | None = None  # the current step, for plain progress lines

    def heading(self, text: str) -> None:
        if not self.json_mode:
            typer.echo(typer.style(text, bold=True))

    def line(self, text: str = "") -> None:
        if not self.json_mode:
            typer.echo(text)

    def success(self, text: str) -> None:
        """Tako's success line: ``✔ {text}``."""
        if not self.json_mode:
            typer.echo(f"{typer.style('✔', fg='green')} {text}")

    def hint(self, text: str) -> None:
        if not self.json_mode:
            typer.echo(typer.style(text, dim=True))

    def would(self, text: str) -> None:
        """A dry-run step that was skipped: ``Would <text>``."""
        self.line(f"Would {text}")

    def dry_run_done(self, command: str, result: dict[str, Any], steps: Iterable[str],
                     nothing: str = "written or contacted") -> None:
        """End a ``--dry-run``: ``Would <step>`` for each skipped step, ``Dry run: nothing was
        <nothing>.``, then the JSON result with ``dry_run: true`` (kept where ``result`` has it)."""
        for step in steps:
            self.would(step)
        self.line(f"Dry run: nothing was {nothing}.")
        self.result(command, {**result, "dry_run": True})

    def warning(self, text: str) -> None:
        """Tako's warning line on stderr: ``! {text}``."""
        typer.echo(f"{typer.style('!', fg='yellow', bold=True)} {text}", err=True)

    def error(self, text: str) -> None:
        typer.echo(f"{typer.style('error:', fg='red', bold=True)} {text}", err=True)

    def detail(self, text: str) -> None:
        if self.verbose:
            typer.echo(text, err=True)

    def result(self, command: str, data: dict[str, Any] | None = None) -> None:
        """The command's final JSON object (``{"ok": true, "command": ..., **data}``); text mode
        prints nothing here."""
        if self.json_mode and not self.emitted:
            self.emitted = True
            typer.echo(json.dumps({"ok": True, "command": command, **(data or {})}))

    def failure(self, message: str, details: list[str] | None = None) -> None:
        """Report a failed command: ``error: ...`` lines on stderr and, with ``--json``, the
        ``{"ok": false, "error": {...}}`` object on stdout."""
        for item in details or []:
            self.error(item)
        self.error(message)
        if self.json_mode and not self.emitted:
            self.emitted = True
            error: dict[str, Any] = {"message": message}
            if details:
                error["errors"] = list(details)
            typer.echo(json.dumps({"ok": False, "error": error}))

    # Progress protocol -------------------------------------------------------------------------

    def _bars_enabled(self) -> bool:
        return self.progress_mode() == "bars"

    def start(self, description: str, total: int | None = None) -> None:
        self.finish()
        self._step = {"description": description, "total": total or 0, "done": 0,
                      "shown_at": time.monotonic()}
        if not self._bars_enabled():
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(binary_units=True),
                             TransferSpeedColumn(), TimeRemainingColumn(), console=Console(stderr=True),
                             transient=True)
        self._bar.start()
        self._task = self._bar.add_task(description, total=total)

    def advance(self, amount: int) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, amount)
            return
        step = self._step
        if step is None or self.progress_mode() != "lines":
            return
        step["done"] += amount
        now = time.monotonic()
        if now - step["shown_at"] >= PLAIN_EVERY:
            step["shown_at"] = now
            total = step["total"]
            share = f" of {format_size(total)} ({min(100, 100 * step['done'] // total)}%)" if total else ""
            typer.echo(f"{step['description']}: {format_size(step['done'])}{share}", err=True)

    def finish(self) -> None:
        self._step = None
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
            self._task = None

    def progress_mode(self) -> str:
        """How long operations are shown: ``bars`` on a terminal, ``lines`` (plain lines every few
        seconds on stderr) otherwise, ``off`` with ``--json``. ``TAKO_PROGRESS=off|lines|bars``
        overrides the choice (``--json`` always means ``off``); any other value is ``auto``."""
        if self.json_mode:
            return "off"
        chosen = os.environ.get(PROGRESS_ENV, "").strip().lower()
        if chosen in PROGRESS_MODES:
            return chosen
        return "bars" if sys.stderr.isatty() else "lines"

    def server_progress(self, description: str, servers: list[str]) -> ServerProgress:
        """A :class:`~.progress_view.ServerProgress` for a command running on ``servers``."""
        from .progress_view import ServerProgress

        return ServerProgress(description, servers, self.progress_mode())

    @contextlib.contextmanager
    def spinner(self, description: str) -> Iterator[None]:
        """While the block runs: a live spinner, ``description`` and the elapsed time on stderr
        (a terminal only, never with ``--json``); it is erased when the block ends."""
        if not self._bars_enabled():
            yield
            return
        from rich.console import Console
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        live = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                        console=Console(stderr=True), transient=True)
        live.add_task(description, total=None)
        with live:
            yield
