"""What tako-server makes, at its next start, of the restores and undos a crash cut short.

A restore or an undo works in ``tmp/restore/{name}.{env}.{id}.{hex}/`` (``{id}`` is ``undo`` for
an undo): ``tree/`` is the staged tree, ``aside/`` the live tree once moved aside, ``record.json``
the record of the kept tree it is about to become. What is in that folder tells how far it got;
:func:`recover_interrupted_restores` finishes it or undoes it so that exactly the old or the new
tree is live, and the replaced tree is either the app's recorded kept tree or removed.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..core.swap import remove_tree
from ..errors import FormatError, RestoreError
from ..primitives.atomic_files import fsync_dir
from ..primitives.names import check_app_id
from .kept import RECORD, KeptTrees
from .paths import ServerPaths

__all__ = ["recover_interrupted_restores"]

log = logging.getLogger(__name__)


def recover_interrupted_restores(paths: ServerPaths) -> list[str]:
    """Finish or undo the restores and undos a crash cut short, settle the kept trees, and empty
    ``tmp/``; run at start, before apps.

    Each ``tmp/restore/{name}.{env}.{id}.{hex}/`` tells where its restore (or undo) stopped:

    - no ``aside/``: the live tree was never touched; the staging is removed;
    - ``aside/`` and ``tree/`` (or no live tree): it died between the two renames (or a swap
      could not roll back); the old tree goes back into place (over an empty skeleton made
      since, never over files);
    - ``aside/`` without ``tree/``: the swap was done; with a ``record.json`` the old tree becomes
      the app's kept tree (:meth:`KeptTrees.install`), else it is removed.

    Then kept folders without a record or a tree are removed (:meth:`KeptTrees.recover`). A
    staging folder whose ``aside/`` cannot be put back or kept safely is kept and an error
    logged, so no tree is ever deleted unless a whole copy of it is live or in the bucket.
    Returns what was done, one line each (also logged). Never raises.
    """
    done: list[str] = []
    kept = KeptTrees(paths)
    for staging in sorted(paths.restore_work.glob("*")):
        try:
            done.append(_recover_one(paths, kept, staging))
        except OSError as exc:
            done.append(f"kept {staging}: {exc.strerror or exc}")
            log.error("could not recover the interrupted restore at %s: %s", staging, exc)
    done.extend(line for line in kept.recover() if not line.startswith("kept "))
    for work in sorted([*paths.backup_work.glob("*"), *paths.drill_work.glob("*")]):
        remove_tree(work)
        done.append(f"removed {work}")
    return done


def _recover_one(paths: ServerPaths, kept: KeptTrees, staging: Path) -> str:
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
    if (staging / RECORD).exists():
        app = f"{live.parent.parent.name}/{live.parent.name}"
        try:
            folder = kept.install(staging, app)
        except RestoreError as exc:
            log.error("kept %s: %s", staging, exc)
            return f"kept {staging}"
        log.warning("finished an interrupted restore of %s: its previous data is kept at %s", live, folder)
        return f"kept the previous data of {app} at {folder}"
    remove_tree(staging)
    log.warning("finished an interrupted restore of %s: removed the previous data at %s", live, aside)
    return f"removed {staging}"


def _live_for(paths: ServerPaths, staging_name: str) -> Path | None:
    app = paths.app_of_staging(staging_name)
    if app is None:
        return None
    try:
        name, env = check_app_id("/".join(app))
    except FormatError:
        return None
    return paths.data_dir(name, env)


def _holds_no_files(tree: Path) -> bool:
    return not any(p.is_file() or p.is_symlink() for p in tree.rglob("*"))
