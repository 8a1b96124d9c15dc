"""Taking a backup in the core with the suite's fixed app, env and server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tako_backups.core.pipeline import BackupResult, backup
from tako_backups.models import BackupKey
from tako_backups.storage.base import ObjectStore

APP = "demo"
ENV = "production"
SERVER = "la"


def take_backup(store: ObjectStore, tree: Path, key: BackupKey, *, work: Path | None = None,
                **overrides: Any) -> BackupResult:
    """Back up ``tree`` (``app/`` + ``tako/``) to ``store`` as demo/production on ``la`` with 30
    days of retention; ``work`` defaults to a ``work`` folder beside the tree; ``overrides`` go to
    :func:`tako_backups.core.pipeline.backup` (``server``, ``now``, ``reason``, ``copy_to``...)."""
    options: dict[str, Any] = {"app": APP, "env": ENV, "server": SERVER, "retention_days": 30}
    options.update(overrides)
    return backup(store, data_root=tree, work_root=work or tree.parent / "work", key=key, **options)
