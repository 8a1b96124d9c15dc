"""Restore one backup over an app's live data, following Tako's steps, and swap a kept tree back.

Stage (download, checksum, decrypt, extract into ``tmp/restore/``), stop the app, drop the
channels/cache files and the workflows ``-wal``/``-shm``, swap the trees by renames, start the app
again when its instance count is above 0. Until the swap, the live tree is untouched and a stopped
app is started again. The staged tree is flushed to disk before the app stops, so the app is
down only for two renames (plus its stop and start).

The replaced tree is the restore's safety copy: with a :class:`~.kept.KeptRecord` it becomes the
app's kept tree (``kept/{name}.{env}/``) once the app runs again, and the service uploads it in
the background; :func:`swap_kept_back` (undo) swaps it back with two renames.
:func:`~.recovery.recover_interrupted_restores` finishes or undoes what a crash cut short.
"""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ..core.member_checks import TOP_LEVEL
from ..core.partial import PathSelection, extract_paths, place_paths, store_access
from ..core.pipeline import restore_into
from ..core.swap import clean_restored_tree, remove_tree, swap_tree, sync_filesystem
from ..core.tree_copy import copy_tree
from ..errors import NotFoundError, RestoreError, TakoError
from ..models import PRE_RESTORE, BackupInfo, BackupKey
from ..primitives.names import check_app_id
from ..progress import DOWNLOAD_EXTRACT, NO_PROGRESS, SWAP, Progress, enter_phase
from ..storage.base import ObjectStore
from .kept import KeptRecord, KeptTrees, write_record
from .paths import ServerPaths
from .recovery import recover_interrupted_restores
from .runtime import AppRuntime

__all__ = ["PRE_RESTORE", "Swapped", "recover_interrupted_restores", "restore_over_live",
           "restore_paths_over_live", "swap_kept_back"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Swapped:
    """What a swap did: ``downtime_seconds`` from the app's stop to its processes running again
    (to the end of the swap when the app does not run), and where the replaced tree is kept
    (None when it was removed)."""

    downtime_seconds: float
    kept: Path | None


@dataclass(frozen=True)
class _Swap:
    """One swap: ``staged`` becomes ``live``; the live tree goes to ``staging/aside``."""

    app: str
    live: Path
    staged: Path
    staging: Path
    runtime: AppRuntime | None
    start_after: bool
    what: str  # "Restored app 'x' from b..." / "Undid the last restore of app 'x'"
    noun: str  # what is swapped in: "restored data" / "kept data"
    moved: int | None = None  # bytes the swap moves into place (the swap phase's total), when known

    @property
    def aside(self) -> Path:
        return self.staging / "aside"


def restore_over_live(
    *, app: str, info: BackupInfo, store: ObjectStore, keys: Iterable[BackupKey], paths: ServerPaths,
    runtime: AppRuntime | None, start_after: bool, keep: KeptRecord | None = None,
    kept: KeptTrees | None = None, before_swap: Callable[[], None] | None = None,
    progress: Progress = NO_PROGRESS,
) -> Swapped:
    """Replace ``app``'s live data with backup ``info``.

    ``start_after``: the app's instance count is above 0, so it is started once the restored tree
    is in place. ``keep`` (with ``kept``): the replaced tree becomes the app's kept tree with this
    record (written into the staging folder before the swap, so a crash at any moment leaves it
    recorded); without it the replaced tree is removed. With ``kept``, the app's older kept tree
    is dropped once the app runs again: the caller checks that it is in the bucket.
    ``before_swap`` runs once the backup is staged and the app stopped, just before the swap (the
    safety backup of the live tree when it cannot be kept); if it raises, the app is started
    again, the live tree is left untouched and its error raised. Raises IntegrityError,
    KeyNotFoundError, UnsafeArchiveError, FormatError or StorageError from staging, RestoreError
    for a full disk or a failed swap (the live tree is then untouched), and RestoreError when the
    restored app does not start again (the swap stands).
    """
    name, env = check_app_id(app)
    staging = paths.new_restore_staging(name, env, info.id)
    try:
        enter_phase(progress, DOWNLOAD_EXTRACT, info.size_bytes)
        tree = restore_into(store, info, keys, staging, progress).tree
        paths.own_restored_tree(tree, name, env)
        sync_filesystem(tree)
        if keep is not None:
            write_record(staging, keep)
    except OSError as exc:
        remove_tree(staging)
        raise _write_error(exc, info, paths) from None
    moved = info.extras.bytes if info.extras is not None else None
    swap = _Swap(app, paths.data_dir(name, env), tree, staging, runtime, start_after,
                 f"Restored app '{app}' from {info.id}", "restored data", moved)
    return _swap_and_start(swap, kept, keep, progress, before_swap, clean=True)


def restore_paths_over_live(
    *, app: str, info: BackupInfo, store: ObjectStore, keys: Iterable[BackupKey], paths: ServerPaths,
    selection: PathSelection, runtime: AppRuntime | None, start_after: bool, keep: KeptRecord | None = None,
    kept: KeptTrees | None = None, before_swap: Callable[[], None] | None = None,
    progress: Progress = NO_PROGRESS,
) -> Swapped:
    """Restore only the paths of ``selection`` from backup ``info`` into ``app``'s live data, with
    the same safety copy and undo as :func:`restore_over_live` (same arguments, same errors;
    NotFoundError when a path matches nothing, the live tree untouched).

    The design, so that nothing new is needed for the safety copy, the undo or crash recovery:

    1. While the app runs, the wanted members alone are fetched, verified and extracted into
       ``staging/picked`` (:func:`~..core.partial.extract_paths`: format 2 reads only their
       chunks, format 1 streams the whole archive and keeps them once its tag verified). The
       live tree is not touched; any failure removes the staging folder.
    2. Once the app is stopped, ``staging/tree`` is made a copy of the live tree
       (:func:`~..core.tree_copy.copy_tree`) and the picked paths are moved into it, replacing
       what was there (with the ``-wal``/``-shm``/``-journal`` files of a replaced SQLite file,
       which belong to the old database), never through a symlink. When the replaced tree is
       kept (``keep``), the copy is a real one -- reflinks where the filesystem has them, else
       a full copy, which costs downtime and disk as large as the live tree -- because the kept
       tree must stay exactly as it was while the app writes to the new one. Without ``keep``
       (no safety copy on disk: none asked, or the safety backup was uploaded before the swap
       because the disk is short), the replaced tree is removed after the swap, so the copy is
       hard links: instant, and no space.
    3. The trees are swapped with the same two renames as a full restore; the replaced tree --
       the whole previous live tree -- becomes the kept tree, so ``tako backups undo`` brings
       back exactly the data as it was before this restore. A crash at any point is settled by
       :func:`~.recovery.recover_interrupted_restores` like a full restore's.
    """
    name, env = check_app_id(app)
    staging = paths.new_restore_staging(name, env, info.id)
    picked, tree = staging / "picked", staging / "tree"
    try:
        staging.mkdir(mode=0o700)
        picked.mkdir()
        enter_phase(progress, DOWNLOAD_EXTRACT, info.size_bytes)
        extract_paths(store_access(store, info), info, keys, picked, selection, progress)
        clean_restored_tree(picked)
        if keep is not None:
            write_record(staging, keep)
    except OSError as exc:
        remove_tree(staging)
        raise _write_error(exc, info, paths) from None
    except BaseException:
        remove_tree(staging)
        raise
    live = paths.data_dir(name, env)

    def build_after_stop() -> None:
        if before_swap is not None:
            before_swap()
        copy_tree(live, tree, link=keep is None)
        for top in TOP_LEVEL:
            (tree / top).mkdir(exist_ok=True)
        trash = staging / "trash"
        trash.mkdir()
        place_paths(picked, tree, selection, trash, replace=True)
        remove_tree(trash)
        remove_tree(picked)
        paths.own_restored_tree(tree, name, env)
        sync_filesystem(tree)

    swap = _Swap(app, live, tree, staging, runtime, start_after,
                 f"Restored {', '.join(selection.paths)} of app '{app}' from {info.id}", "restored data")
    return _swap_and_start(swap, kept, keep, progress, build_after_stop, clean=False)


def swap_kept_back(*, app: str, paths: ServerPaths, runtime: AppRuntime | None, start_after: bool,
                   kept: KeptTrees, keep: KeptRecord | None = None,
                   progress: Progress = NO_PROGRESS) -> Swapped:
    """Undo the last restore: swap the app's kept tree back in with two renames. The tree that was
    live becomes the new kept tree with ``keep`` (so the undo can be undone), or is removed.

    Raises NotFoundError when the app has no kept tree, RestoreError when the swap fails (the live
    tree is then untouched) or the app does not start again (the swap stands).
    """
    name, env = check_app_id(app)
    current = kept.get(app)
    if current is None:
        raise NotFoundError(f"App '{app}' has no kept tree to swap back.")
    staging = paths.new_restore_staging(name, env, "undo")
    try:
        staging.mkdir(mode=0o700)
        if keep is not None:
            write_record(staging, keep)
    except OSError as exc:
        remove_tree(staging)
        raise RestoreError(f"Could not prepare the undo of app '{app}' under {paths.restore_work}: "
                           f"{exc.strerror or exc}. The live data was not touched.") from None
    swap = _Swap(app, paths.data_dir(name, env), current.tree, staging, runtime, start_after,
                 f"Undid the last restore of app '{app}'", "kept data")
    return _swap_and_start(swap, kept, keep, progress, None, clean=False)


def _swap_and_start(swap: _Swap, kept: KeptTrees | None, keep: KeptRecord | None, progress: Progress,
                    before_swap: Callable[[], None] | None, *, clean: bool) -> Swapped:
    """Stop, swap, start, then settle the replaced tree; the staging folder is always gone after
    (kept, removed, or left for the next start when a tree is stranded in it)."""
    app, runtime = swap.app, swap.runtime
    try:
        enter_phase(progress, SWAP, swap.moved)
        stopped_at = time.monotonic()
        was_running = runtime.stop(app) if runtime is not None else False
        log.info("%s: swapping (app %s)", swap.what, "stopped" if was_running else "not running")
        try:
            if before_swap is not None:
                before_swap()
                enter_phase(progress, SWAP, swap.moved)
            if clean:
                clean_restored_tree(swap.staged)
            swap.live.parent.mkdir(parents=True, exist_ok=True)
            swap_tree(swap.live, swap.staged, swap.aside)
            progress.advance(swap.moved or 0)
        except BaseException as exc:
            stranded = swap.aside.exists() and not swap.live.exists()
            if was_running and runtime is not None and not stranded:
                _start_again(runtime, app)
            if isinstance(exc, OSError) and stranded:
                raise RestoreError(
                    f"Could not swap in the {swap.noun} of app '{app}' ({exc.strerror}) nor move the "
                    f"previous data back: it is kept at {swap.aside}; restart tako-server to move it back."
                ) from None
            if isinstance(exc, OSError):
                raise RestoreError(
                    f"Could not swap in the {swap.noun} of app '{app}': {exc.strerror}. "
                    "The live data was not touched."
                ) from None
            raise
        failed_start = _start_swapped(runtime, app, swap.start_after, swap.what)
        downtime = time.monotonic() - stopped_at
    finally:
        if swap.aside.exists() and not swap.live.exists():
            log.error("the previous data of %s is at %s; tako-server moves it back at its next start",
                      app, swap.aside)
        elif keep is None or not swap.aside.exists():
            remove_tree(swap.staging)
    where = _settle(app, swap.staging, kept, keep)
    if failed_start is not None:
        raise failed_start
    return Swapped(downtime, where)


def _settle(app: str, staging: Path, kept: KeptTrees | None, keep: KeptRecord | None) -> Path | None:
    """After a swap (the app runs again): drop the app's older kept tree, then keep the replaced
    one (``staging``) when ``keep``. Returns the kept folder, or None."""
    if kept is None:
        return None
    if keep is None:
        kept.drop(app, "a swap without a safety copy replaced the data")
        return None
    try:
        return kept.install(staging, app)
    except (OSError, RestoreError) as exc:
        log.error("the data replaced in %s stays at %s (%s); tako-server keeps it at its next start",
                  app, staging, exc)
        return None


def _start_swapped(runtime: AppRuntime | None, app: str, start_after: bool, what: str) -> RestoreError | None:
    """Start the app on its new tree when it should run; the error to raise once the swap is
    settled when it does not start (None when it started or should not run)."""
    if not start_after or runtime is None or not runtime.status(app).configured:
        return None
    try:
        runtime.start(app)
    except TakoError as exc:
        return RestoreError(f"{what}, but the app did not start again: {exc}")
    return None


def _start_again(runtime: AppRuntime, app: str) -> None:
    try:
        runtime.start(app)
    except TakoError as exc:
        log.error("could not start %s again after a failed restore: %s", app, exc)


def _write_error(exc: OSError, info: BackupInfo, paths: ServerPaths) -> RestoreError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return RestoreError(
            f"Not enough disk space under {paths.restore_work} to restore backup {info.id} "
            f"({info.size_bytes} bytes encrypted); free up space and try again. "
            "The live data was not touched."
        )
    where = f" ({exc.filename})" if exc.filename else ""
    return RestoreError(
        f"Could not write the restored files of backup {info.id}{where}: {exc.strerror or exc}. "
        "The live data was not touched."
    )
