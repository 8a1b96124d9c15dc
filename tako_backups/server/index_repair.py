"""The self-healing ``index.json`` on the server: rebuilt from the manifests when it is missing
(while manifests exist) or unreadable, and the ``reindex`` command."""

from __future__ import annotations

import logging
from typing import Any

from ..core import catalog, reindex
from ..errors import BusyError, ListDenied, StorageError
from ..models import BackupBinding
from ..primitives.names import check_app_id
from . import notes
from .app_backups import AppBackups

__all__ = ["IndexRepair"]

log = logging.getLogger(__name__)


class IndexRepair:
    """Reads each app's index, repairing it when needed. Thread-safe."""

    def __init__(self, backups: AppBackups) -> None:
        self._backups = backups

    def read(self, app: str, settings: BackupBinding, *, locked: bool = False) -> reindex.IndexRead:
        """The app's index, rebuilt from manifests when missing (with manifests) or unreadable; the
        rebuilt index is written back when the app's lock is free (or ``locked``: held by the
        caller). When the bucket cannot be listed, a missing index is empty and the reply notes
        it. Raises StorageError, or FormatError for an invalid index that cannot be rebuilt."""
        store, prefix = self._backups.location(app, settings)
        found = reindex.read_or_rebuild(store, prefix)
        if found.listing_denied:
            notes.listing_denied(settings.storage.bucket, app, "index rebuild")
        if not found.rebuilt:
            return found
        log.warning("index.json of %s was %s; rebuilt it from %d manifests", app, found.rebuilt_because,
                    len(found.index.backups))
        try:
            if locked:
                catalog.write_index(store, prefix, found.index)
            else:
                with self._backups.locks.hold(app):
                    catalog.write_index(store, prefix, found.index)
        except BusyError:
            log.info("not writing the rebuilt index of %s now: a backup or restore is running", app)
        except StorageError as exc:
            log.warning("could not write the rebuilt index of %s: %s", app, exc)
        return found

    def reindex(self, app: str) -> dict[str, Any]:
        """Rebuild ``index.json`` from the manifests and write it: ``{"app", "backups",
        "index_rebuilt": true, "previous"}`` where ``previous`` says what the old index was
        (``"ok"``, ``"missing"`` or ``"unreadable"``). Raises BusyError, NotFoundError, ListDenied
        (credentials that may not list), StorageError."""
        check_app_id(app)
        with self._backups.locks.hold(app):
            settings = self._backups.settings(app)
            store, prefix = self._backups.location(app, settings)
            try:
                before = reindex.read_or_rebuild(store, prefix)
                index = reindex.reindex(store, prefix)
            except ListDenied:
                bucket = settings.storage.bucket
                raise ListDenied(f"Cannot rebuild the index of app '{app}' from its manifests: listing "
                                 f"bucket '{bucket}' is denied to these credentials.") from None
        previous = before.rebuilt_because or "ok"
        log.info("reindexed %s: %d backups (index was %s)", app, len(index.backups), previous)
        return {"app": app, "backups": [b.to_dict() for b in index.backups], "index_rebuilt": True,
                "previous": previous}
