"""Restore one backup over an app's live data, following Tako's steps.

Stage (download, checksum, decrypt, extract into ``tmp/restore/``), stop the app, drop the
channels/cache files and the workflows ``-wal``/``-shm``, swap the trees by renames, start the app
again when its instance count is above 0. Until the swap, the live tree is untouched and a stopped
app is started again. The staged tree is flushed to disk before the app stops, so the swap itself
is two renames. :func:`recover_interrupted_restores` finishes or undoes a restore that a crash cut
short, at the next start.
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path

from ..core.pipeline import restore_into
from ..core.swap import clean_restored_tree, remove_tree, swap_tree, sync_filesystem
from ..errors import FormatError, RestoreError, TakoError
from ..models import PRE_RESTORE, BackupInfo, BackupKey
from ..primitives.atomic_files import fsync_dir
from ..primitives.names import check_app_id
from ..storage.base import ObjectStore
from .paths import ServerPaths
from .runtime import AppRuntime

__all__ = ["PRE_RESTORE", "recover_interrupted_restores", "restore_over_live"]

log = logging.getLogger(__name__)


def restore_over_live(
    *, app: str, info: BackupInfo, store: ObjectStore, keys: Iterable[BackupKey], paths: ServerPaths,
    runtime: AppRuntime | None, start_after: bool,
    before_swap: Callable[[], None] | None = None,
) -> None:
    """Replace ``app``'s live data with backup ``info``.

    ``start_after``: the app's instance count is above 0, so it is started once the restored tree
    is in place. ``before_swap`` runs once the backup is staged and the app stopped, just before
    the swap (the safety backup of the live tree); if it raises, the app is started again, the
    live tree is left untouched and its error raised. Raises IntegrityError, KeyNotFoundError,
    UnsafeArchiveError, FormatError or StorageError from staging, RestoreError for a full disk or
    a failed swap (the live tree is then untouched), and RestoreError when the restored app does
    not start again.
    """
    name, env = check_app_id(app)
    live = paths.data_dir(name, env)
    paths.restore_work.mkdir(mode=0o700, parents=True, exist_ok=True)
    staging = paths.restore_work / f"{name}.{env}.{info.id}.{secrets.token_hex(4)}"
    try:
        try:
            tree = restore_into(store, info, keys, staging).tree
            paths.own_restored_tree(tree, name, env)
            sync_filesystem(tree)
        except OSError as exc:
            raise _write_error(exc, info, paths) from None
        was_running = runtime.stop(app) if runtime is not None else False
        log.info("restoring %s from %s (app %s)", app, info.id, "stopped" if was_running else "not running")
        try:
            if before_swap is not None:
                before_swap()
            clean_restored_tree(tree)
            live.parent.mkdir(parents=True, exist_ok=True)
            swap_tree(live, tree, staging / "aside")
        except BaseException as exc:
            aside = staging / "aside"
            stranded = aside.exists() and not live.exists()
            if was_running and runtime is not None and not stranded:
                _start_again(runtime, app)
            if isinstance(exc, OSError) and stranded:
                raise RestoreError(
                    f"Could not swap in the restored data of app '{app}' ({exc.strerror}) nor move the "
                    f"previous data back: it is kept at {aside}; restart tako-server to move it back."
                ) from None
            if isinstance(exc, OSError):
                raise RestoreError(
                    f"Could not swap in the restored data of app '{app}': {exc.strerror}. "
                    "The live data was not touched."
                ) from None
            raise
    finally:
        if (staging / "aside").exists() and not live.exists():
            log.error("the previous data of %s is at %s; tako-server moves it back at its next start",
                      app, staging / "aside")
        else:
            remove_tree(staging)
    if start_after and runtime is not None and runtime.status(app).configured:
        try:
            runtime.start(app)
        except TakoError as exc:
            raise RestoreError(
                f"Restored app '{app}' from {info.id}, but the app did not start again: {exc}"
            ) from None


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


def recover_interrupted_restores(paths: ServerPaths) -> list[str]:
    """Finish or undo the restores a crash cut short, and empty ``tmp/``; run at start, before apps.

    Each ``tmp/restore/{name}.{env}.{id}.{hex}/`` tells where its restore stopped:

    - no ``aside/``: the live tree was never touched; the staging is removed;
    - ``aside/`` and ``tree/``: it died between the two renames (or a swap could not roll back);
      the old tree goes back into place (over an empty skeleton made since, never over files);
    - ``aside/`` without ``tree/``: the swap was done; the old tree is removed.

    A staging folder whose ``aside/`` cannot be put back safely is kept and an error logged, so
    no tree is ever deleted unless a whole copy of it is live. Returns what was done, one line
    each (also logged). Never raises.
    """
    done: list[str] = []
    for staging in sorted(paths.restore_work.glob("*")):
        try:
            done.append(_recover_one(paths, staging))
        except OSError as exc:
            done.append(f"kept {staging}: {exc.strerror or exc}")
            log.error("could not recover the interrupted restore at %s: %s", staging, exc)
    for work in sorted([*paths.backup_work.glob("*"), *paths.drill_work.glob("*")]):
        remove_tree(work)
        done.append(f"removed {work}")
    return done


def _recover_one(paths: ServerPaths, staging: Path) -> str:
    aside, tree = staging / "aside", staging / "tree"
    if not aside.is_dir():
        remove_tree(staging)
        return f"removed {staging}"
    live = _live_for(paths, staging.name)
    if live is None:
        log.error("kept %s: its name names no app, so its previous data has nowhere to go", staging)
        return f"kept {staging}"
    if tree.exists() or not live.exists():
        if live.is_dir() and not _holds_no_files(live):
            log.error("kept %s: %s holds files again, so the previous data in %s was not moved back; "
                      "compare them and keep one", staging, live, aside)
            return f"kept {staging}"
        if live.is_dir():
            remove_tree(live)
        live.parent.mkdir(parents=True, exist_ok=True)
        os.rename(aside, live)
        fsync_dir(live.parent)
        log.warning("moved %s back to %s after an interrupted restore", aside, live)
        remove_tree(staging)
        return f"moved {aside} back to {live}"
    remove_tree(staging)
    log.warning("finished an interrupted restore of %s: removed the previous data at %s", live, aside)
    return f"removed {staging}"


def _live_for(paths: ServerPaths, staging_name: str) -> Path | None:
    parts = staging_name.split(".")
    if len(parts) < 3:
        return None
    try:
        name, env = check_app_id(f"{parts[0]}/{parts[1]}")
    except FormatError:
        return None
    return paths.data_dir(name, env)


def _holds_no_files(tree: Path) -> bool:
    return not any(p.is_file() or p.is_symlink() for p in tree.rglob("*"))
