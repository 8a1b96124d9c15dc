"""Restore preview: stage a backup as a restore would, compare it with the live tree, swap nothing.

The staging folder is ``tmp/restore/{name}.{env}.{id}.preview-{hex}/`` (so a crash leaves
something :func:`~.restore.recover_interrupted_restores` removes at the next start) and is
always removed afterwards. The live tree is only read.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..core.pipeline import restore_into
from ..core.swap import clean_restored_tree, remove_tree
from ..core.treediff import compare_trees
from ..errors import RestoreError
from ..models import BackupInfo, BackupKey
from ..primitives.names import check_app_id
from ..storage.base import ObjectStore
from .paths import ServerPaths

__all__ = ["preview_restore"]


def preview_restore(*, app: str, info: BackupInfo, store: ObjectStore, keys: Iterable[BackupKey],
                    paths: ServerPaths) -> dict[str, Any]:
    """``{"app", "backup", "added", "removed", "changed", "counts", "truncated", "tables"}``: what
    restoring ``info`` over ``app``'s live data would change (see :func:`compare_trees`).

    Raises IntegrityError, KeyNotFoundError, UnsafeArchiveError, FormatError or StorageError from
    staging, RestoreError when the staging folder cannot be written or a live file not read.
    """
    name, env = check_app_id(app)
    staging = paths.new_restore_staging(name, env, f"{info.id}.preview")
    try:
        tree = restore_into(store, info, keys, staging).tree
        clean_restored_tree(tree)
        diff = compare_trees(paths.data_dir(name, env), tree)
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        raise RestoreError(f"Could not preview the restore of backup {info.id}{where}: "
                           f"{exc.strerror or exc}.") from None
    finally:
        remove_tree(staging)
    return {"app": app, "backup": info.to_dict(), **diff.to_dict()}
