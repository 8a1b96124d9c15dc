"""Test-only: run `tako-server` with a crash point armed, for the crash-during-restore tests.

    TAKO_TEST_CRASH_AT=<point> python -m tests.security.crash_launcher serve --data-dir ...

The shipped server has no crash hook: this launcher wraps the functions the restore calls (in
this process only) so that the server kills itself with SIGKILL at one point of a restore, then
runs the real ``tako_backups.server.cli.main``. Points, in the order a restore meets them:

- ``download``: half-way through the archive stream (download, decrypt and extract are one
  pass, so some files are already in the staging tree);
- ``staged``: the archive is downloaded, verified and extracted; the app is still running;
- ``stopped``: the app is stopped and the staged tree cleaned; nothing renamed yet;
- ``between-renames``: the live tree is moved aside, the restored one not yet moved in;
- ``swapped``: both renames done; the old tree and its record are still in staging;
- ``started``: the app was started on the restored tree; the old tree is still in staging;
- ``kept``: the old tree is the app's kept tree (``kept/``); its upload has not begun;
- ``uploading``: the background upload of the kept tree is half-way through;
- ``uploaded``: the kept tree's backup is recorded on the bucket, not yet read back.

And in an undo (the restore before it runs through):

- ``undo-between-renames``: the live tree is moved aside, the kept one not yet moved in;
- ``undo-swapped``: both renames done; the app not started; the kept folder still there;
- ``undo-started``: the app runs on the tree that was kept; the replaced tree is in staging.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from typing import Any

POINTS = ("download", "staged", "stopped", "between-renames", "swapped", "started", "kept", "uploading",
          "uploaded", "undo-between-renames", "undo-swapped", "undo-started")


def die() -> None:
    """kill -9 this server, as the kernel's OOM killer or a power cut would."""
    sys.stderr.write(f"crash_launcher: SIGKILL at {os.environ['TAKO_TEST_CRASH_AT']}\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def after(func: Callable[..., Any]) -> Callable[..., Any]:
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        result = func(*args, **kwargs)
        die()
        return result

    return wrapped


class _DyingReader:
    """Reads the archive stream in small pieces and dies once half of it went through."""

    def __init__(self, body: Any, total: int) -> None:
        self._body, self._half, self._read = body, total // 2, 0

    def read(self, n: int = -1) -> bytes:
        data = self._body.read(65536 if n is None or n < 0 else min(n, 65536))
        self._read += len(data)
        if self._read >= self._half:
            die()
        return bytes(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._body, name)


class _DyingStore:
    def __init__(self, store: Any, total: int) -> None:
        self._store, self._total = store, total

    def open_read(self, key: str) -> Any:
        store, total = self._store, self._total

        class Opened:
            def __enter__(self) -> _DyingReader:
                self._cm = store.open_read(key)
                return _DyingReader(self._cm.__enter__(), total)

            def __exit__(self, *exc: Any) -> Any:
                return self._cm.__exit__(*exc)

        return Opened()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def arm(point: str) -> None:
    """Install the crash at ``point``. Raises ValueError for an unknown point."""
    from tako_backups.core import swap
    from tako_backups.server import kept, restore, safety

    if point == "download":
        real_restore_into = restore.restore_into

        def restore_into(store: Any, info: Any, *args: Any, **kwargs: Any) -> Any:
            return real_restore_into(_DyingStore(store, info.size_bytes), info, *args, **kwargs)

        restore.restore_into = restore_into
    elif point == "staged":
        restore.restore_into = after(restore.restore_into)
    elif point == "stopped":
        restore.clean_restored_tree = after(restore.clean_restored_tree)
    elif point in ("between-renames", "undo-between-renames"):
        real_rename = os.rename
        undo = point.startswith("undo")

        class _Os:
            def __getattr__(self, name: str) -> Any:
                return getattr(os, name)

            @staticmethod
            def rename(src: Any, dst: Any) -> None:
                real_rename(src, dst)
                if str(dst).endswith("/aside") and (".undo." in str(dst)) == undo:
                    die()  # the live tree is aside; the other one is not in place yet

        swap.os = _Os()  # type: ignore[assignment]
    elif point == "swapped":
        real_swap = restore.swap_tree

        def swap_tree(live: Any, staged: Any, aside: Any) -> None:
            real_swap(live, staged, aside)
            if ".undo." not in str(aside):
                die()

        restore.swap_tree = swap_tree
    elif point == "undo-swapped":
        real_swap = restore.swap_tree

        def undo_swap_tree(live: Any, staged: Any, aside: Any) -> None:
            real_swap(live, staged, aside)
            if ".undo." in str(aside):
                die()

        restore.swap_tree = undo_swap_tree
    elif point in ("started", "undo-started"):
        real_start = restore._start_swapped
        undo = point.startswith("undo")

        def start_swapped(runtime: Any, app: str, start_after: bool, what: str) -> Any:
            result = real_start(runtime, app, start_after, what)
            if what.startswith("Undid") == undo:
                die()
            return result

        restore._start_swapped = start_swapped
    elif point == "kept":
        kept.KeptTrees.install = after(kept.KeptTrees.install)  # type: ignore[method-assign]
    elif point == "uploading":
        real_advance = safety._Cancellable.advance
        sent = {"bytes": 0}

        def advance(self: Any, amount: int) -> None:
            real_advance(self, amount)
            sent["bytes"] += amount
            if sent["bytes"] >= 300_000:
                die()

        safety._Cancellable.advance = advance  # type: ignore[method-assign]
    elif point == "uploaded":
        real_update = kept.KeptTrees.update

        def update(self: Any, app: str, record: Any) -> None:
            real_update(self, app, record)
            if record.upload == "uploaded":
                die()

        kept.KeptTrees.update = update  # type: ignore[method-assign]
    else:
        raise ValueError(f"unknown crash point {point!r}; known: {', '.join(POINTS)}")


def main() -> int:
    arm(os.environ["TAKO_TEST_CRASH_AT"])
    from tako_backups.server.cli import main as server_main

    return server_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
