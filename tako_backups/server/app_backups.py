"""Each app's backup settings and where its backups live: the collaborator every server command
that touches a bucket shares (the service, index repair, drills, re-encryption).

Settings come from the encrypted :class:`~.state.StateStore`; the bucket prefix is
``_tako/backups/{name}/{env}/{server}/``; one store per storage binding is kept and reused.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

from ..core import layout
from ..errors import NotFoundError
from ..models import BackupBinding, StorageBinding
from ..primitives.names import check_app_id
from ..storage.base import ObjectStore
from .locks import AppLocks
from .paths import ServerPaths
from .state import AppState, StateStore

__all__ = ["AppBackups", "StoreFactory", "s3_store_factory"]

StoreFactory = Callable[[StorageBinding], ObjectStore]
MAX_CACHED_STORES = 32


def s3_store_factory(binding: StorageBinding, spool_dir: Path | None = None) -> ObjectStore:
    """An S3 store for ``binding`` whose uploads keep their parts in ``spool_dir`` (the server's
    ``tmp/uploads``) rather than in memory."""
    from ..storage.s3 import S3Store

    return cast(ObjectStore, S3Store.from_binding(binding, spool_dir=spool_dir))


class AppBackups:
    """Settings, stores and locks of every app under one server data root. Thread-safe."""

    def __init__(self, paths: ServerPaths, server_name: str, state: StateStore, locks: AppLocks,
                 store_factory: StoreFactory | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.paths = paths
        self.server_name = server_name
        self.state = state
        self.locks = locks
        self.clock = clock
        self._store_factory = store_factory or functools.partial(s3_store_factory,
                                                                 spool_dir=paths.upload_spool)
        self._stores: dict[StorageBinding, ObjectStore] = {}
        self._stores_lock = threading.Lock()

    def settings(self, app: str, state: AppState | None = None) -> BackupBinding:
        """The app's backup settings (from ``state`` when given, else loaded).

        Raises NotFoundError when the server has none, ConfigError when they cannot be read.
        """
        state = state if state is not None else self.state.load(app)
        if state is None or state.backup is None:
            raise NotFoundError(f"Backups are not configured for {app}.")  # Tako's text
        return state.backup

    def store_settings(self, app: str, backup: BackupBinding) -> None:
        """Keep ``backup`` as the app's settings (its runtime stays). Raises ConfigError."""
        state = self.state.load(app) or AppState()
        self.state.save(app, state.with_backup(backup))

    def location(self, app: str, settings: BackupBinding) -> tuple[ObjectStore, str]:
        """The store and bucket prefix of the app's backups. Raises FormatError for a bad app id,
        ConfigError when the store cannot be set up."""
        name, env = check_app_id(app)
        return self.store(settings.storage), layout.backup_prefix(name, env, self.server_name)

    def store(self, binding: StorageBinding) -> ObjectStore:
        """The store for ``binding`` (made once, then reused). Raises ConfigError."""
        with self._stores_lock:
            store = self._stores.get(binding)
            if store is None:
                if len(self._stores) >= MAX_CACHED_STORES:
                    self._stores.clear()
                store = self._stores[binding] = self._store_factory(binding)
            return store
