"""Beyond Tako: the commands that make a restore boring, mixed into :class:`BackupService`.

- ``drill_backup``: restore a backup into ``tmp/drills/`` and check it (never the live data);
  the result is kept per app (:class:`~.drills.DrillLog`) and shown by ``backup_status``.
- ``restore_preview``: what a restore would change, without swapping.
- ``undo_restore``: restore the newest ``pre-restore`` safety backup.
- ``reindex`` and the automatic rebuild of a missing or unreadable ``index.json``.
- ``reencrypt_backups``: move every retained backup to the active key.

Like the rest of the service, every method takes the app id ``{name}/{env}``, returns JSON-ready
data and raises TakoErrors whose messages never carry credentials.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..core import catalog, reindex, rekey
from ..core.drill import DrillResult, run_drill
from ..errors import BusyError, NotFoundError, StorageError, TakoError
from ..models import BackupBinding, BackupInfo
from ..primitives.names import check_app_id
from ..remote.protocol import Reply
from ..storage.base import ObjectStore
from .drills import DRILL_INTERVAL, OVERDUE_AFTER, DrillLog, drill_due
from .preview import preview_restore

if TYPE_CHECKING:
    from .locks import AppLocks
    from .paths import ServerPaths
    from .state import AppState

__all__ = ["RestoreConfidence", "safety_fields"]

log = logging.getLogger(__name__)

PRE_RESTORE = "pre-restore"


def safety_fields(safety_id: str | None) -> dict[str, Any]:
    """The reply fields next to a restore's ``data``: the safety backup's id, when one was taken."""
    return {} if safety_id is None else {"safety_backup_id": safety_id}


class RestoreConfidence:
    """Drills, previews, undo, the self-healing index and re-encryption, for BackupService."""

    if TYPE_CHECKING:
        paths: ServerPaths
        server_name: str
        locks: AppLocks
        drills: DrillLog
        _clock: Callable[[], float]

        def _settings(self, app: str, state: AppState | None = None) -> BackupBinding: ...
        def _store_settings(self, app: str, backup: BackupBinding) -> None: ...
        def _location(self, app: str, settings: BackupBinding) -> tuple[ObjectStore, str]: ...
        def restore_backup(self, app: str, backup_id: str, safety_backup: bool = True) -> Reply: ...

    # ----- the index -----

    def _read_index(self, app: str, settings: BackupBinding, *, locked: bool = False) -> reindex.IndexRead:
        """The app's index, rebuilt from manifests when missing (with manifests) or unreadable; the
        rebuilt index is written back when the app's lock is free (or ``locked``: held by the
        caller). Raises StorageError."""
        store, prefix = self._location(app, settings)
        found = reindex.read_or_rebuild(store, prefix)
        if not found.rebuilt:
            return found
        log.warning("index.json of %s was %s; rebuilt it from %d manifests", app, found.rebuilt_because,
                    len(found.index.backups))
        try:
            if locked:
                catalog.write_index(store, prefix, found.index)
            else:
                with self.locks.hold(app):
                    catalog.write_index(store, prefix, found.index)
        except BusyError:
            log.info("not writing the rebuilt index of %s now: a backup or restore is running", app)
        except StorageError as exc:
            log.warning("could not write the rebuilt index of %s: %s", app, exc)
        return found

    def reindex(self, app: str) -> dict[str, Any]:
        """Rebuild ``index.json`` from the manifests and write it: ``{"app", "backups",
        "index_rebuilt": true, "previous"}`` where ``previous`` says what the old index was
        (``"ok"``, ``"missing"`` or ``"unreadable"``). Raises BusyError, NotFoundError, StorageError."""
        check_app_id(app)
        with self.locks.hold(app):
            settings = self._settings(app)
            store, prefix = self._location(app, settings)
            before = reindex.read_or_rebuild(store, prefix)
            index = reindex.reindex(store, prefix)
        previous = before.rebuilt_because or "ok"
        log.info("reindexed %s: %d backups (index was %s)", app, len(index.backups), previous)
        return {"app": app, "backups": [b.to_dict() for b in index.backups], "index_rebuilt": True,
                "previous": previous}

    # ----- drills -----

    def drill_backup(self, app: str, backup_id: str | None = None) -> dict[str, Any]:
        """Drill ``backup_id`` (the newest when None) and record the result; returns it as
        ``{"backup_id", "at_unix_secs", "seconds", "ok", "message"?}`` (a failed drill is a reply
        with ``ok: false``, not an error). A drill only reads the bucket and writes its own
        scratch folder, so it does not take the app's lock: backups and restores go on meanwhile.
        Raises NotFoundError (no settings, no backups, unknown id) or StorageError when the index
        cannot be read."""
        check_app_id(app)
        return self._drill(app, backup_id).to_dict()

    def _drill(self, app: str, backup_id: str | None) -> DrillResult:
        settings = self._settings(app)
        store, prefix = self._location(app, settings)
        if backup_id is None:
            index = self._read_index(app, settings).index
            if not index.backups:
                raise NotFoundError(f"App '{app}' has no backups to drill; run tako backups now first.")
            info = index.backups[0]
        else:
            info = catalog.find_backup(store, prefix, backup_id)
        result = run_drill(store, info, settings.backup_keys, self.paths.drill_work, clock=self._clock)
        self.drills.record(app, result)
        if result.ok:
            log.info("drill of %s: %s restores in %.1f s", app, info.id, result.seconds)
        else:
            log.error("drill of %s: %s failed: %s", app, info.id, result.message)
        return result

    def drill_due(self, app: str, now: int, interval: float = DRILL_INTERVAL) -> bool:
        """Whether the weekly drill of ``app`` is due (never read from the bucket)."""
        return drill_due(self.drills.last(app), now, interval)

    def scheduled_drill(self, app: str) -> DrillResult | None:
        """Drill the newest backup (None when there is none yet). Raises StorageError."""
        try:
            return self._drill(app, None)
        except NotFoundError:
            return None

    def status_fields(self, app: str, newest: BackupInfo | None, enabled: bool,
                      rebuilt: bool) -> dict[str, Any]:
        """``last_drill``, ``last_ok_drill``, ``overdue`` and ``index_rebuilt`` for ``backup_status``."""
        last, last_ok = self.drills.read(app)
        now = int(self._clock())
        overdue = enabled and (newest is None or now - newest.created_at_unix_secs > OVERDUE_AFTER)
        return {"last_drill": None if last is None else last.to_dict(),
                "last_ok_drill": None if last_ok is None else last_ok.to_dict(),
                "overdue": overdue, "index_rebuilt": rebuilt}

    # ----- preview and undo -----

    def restore_preview(self, app: str, backup_id: str) -> dict[str, Any]:
        """What restoring ``backup_id`` would change (see :func:`preview_restore`); nothing is
        swapped. Raises BusyError, NotFoundError, IntegrityError, KeyNotFoundError, FormatError,
        UnsafeArchiveError, StorageError or RestoreError."""
        check_app_id(app)
        with self.locks.hold(app):
            settings = self._settings(app)
            store, prefix = self._location(app, settings)
            info = catalog.find_backup(store, prefix, backup_id)
            return preview_restore(app=app, info=info, store=store, keys=settings.backup_keys,
                                   paths=self.paths)

    def undo_restore(self, app: str, safety_backup: bool = True) -> Reply:
        """Restore the newest ``pre-restore`` backup (taking a new safety backup first unless
        ``safety_backup`` is False, so an undo can be undone). Raises NotFoundError when there is
        none, and what :meth:`restore_backup` raises."""
        check_app_id(app)
        settings = self._settings(app)
        index = self._read_index(app, settings).index
        found = next((b for b in index.backups if b.extras is not None and b.extras.reason == PRE_RESTORE),
                     None)
        if found is None:
            raise NotFoundError(
                f"App '{app}' has no pre-restore backup to go back to: restores take one unless "
                "--no-safety-backup is passed.")
        return self.restore_backup(app, found.id, safety_backup)

    # ----- key rotation -----

    def reencrypt_backups(self, app: str, backup: BackupBinding | None) -> dict[str, Any]:
        """Store ``backup`` (when given), then write every retained backup that is not under the
        active key again under it: new archive and manifest, index updated, old objects deleted.

        Returns ``{"app", "key_id", "reencrypted": [{"from", "to", "key_id"}], "unchanged"}``.
        Stops at the first failure with its error, saying how many were done (those stay done;
        running it again continues). Raises BusyError, NotFoundError, KeyNotFoundError,
        IntegrityError or StorageError.
        """
        check_app_id(app)
        with self.locks.hold(app):
            if backup is not None:
                self._store_settings(app, backup)
            settings = self._settings(app)
            store, prefix = self._location(app, settings)
            active = settings.active_key
            index = self._read_index(app, settings, locked=True).index
            todo = [b for b in index.backups if b.encryption.key_id != active.id]
            done: list[dict[str, str]] = []
            for info in todo:
                try:
                    new = rekey.reencrypt_backup(store, prefix, info, settings.backup_keys, active)
                    rekey.swap_backup(store, prefix, info, new)
                except TakoError as exc:
                    raise type(exc)(f"Re-encrypted {len(done)} of {len(todo)} backups of app '{app}'; "
                                    f"backup {info.id} failed: {exc}") from None
                log.info("re-encrypted %s backup %s (%s) as %s (%s)", app, info.id, info.encryption.key_id,
                         new.id, active.id)
                done.append({"from": info.id, "to": new.id, "key_id": info.encryption.key_id})
        return {"app": app, "key_id": active.id, "reencrypted": done,
                "unchanged": len(index.backups) - len(todo)}
