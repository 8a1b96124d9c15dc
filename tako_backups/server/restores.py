"""``restore_backup`` and ``undo_restore``: restore a backup over the live data with a safety copy,
and take the last restore back.

A restore keeps the tree it replaces on disk (:mod:`.safety`) and uploads it in the background
as a ``pre-restore`` backup, so the app is down only for the swap; when the disk cannot afford
to keep it, the safety backup is uploaded before the swap (the app stopped), as before. An undo
swaps the kept tree back (two renames) when it is still on disk, and restores the newest
``pre-restore`` backup from the bucket otherwise. Both replies carry our fields next to
``data``: ``safety_backup`` (what happened to the replaced data), ``downtime_seconds`` (from the
app's stop to its processes running again) and, when one was uploaded before the swap,
``safety_backup_id``. With a backup copy, a backup whose primary is unreachable, missing or
damaged is restored from the copy, and the reply says which was read (``source``,
``source_bucket``, ``fallback_reason``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from ..core import catalog
from ..core.copies import PRIMARY, Place, first_working
from ..core.partial import PathSelection
from ..core.tree_copy import tree_bytes
from ..errors import NotFoundError, RestoreError, TakoError
from ..models import PRE_RESTORE, BackupBinding, BackupInfo
from ..primitives.names import check_app_id
from ..remote.protocol import Reply
from .app_backups import AppBackups
from .backup_runs import BackupRuns
from .copies import Places
from .index_repair import IndexRepair
from .kept import DEFAULT_KEEP_HOURS, KeptRecord
from .operations import OperationRegistry, Tracker
from .restore import Swapped, restore_over_live, restore_paths_over_live, swap_kept_back
from .runtime import AppRuntime
from .safety import SafetyCopies

__all__ = ["Restores"]

log = logging.getLogger(__name__)

RECORD_WAIT = 30.0


class Restores:
    """Restores and undos for the service. Thread-safe; each holds the app's lock."""

    def __init__(self, backups: AppBackups, index: IndexRepair, runs: BackupRuns, safety: SafetyCopies,
                 operations: OperationRegistry, runtime: AppRuntime | None,
                 places: Places | None = None) -> None:
        """``places`` gives the buckets an app's backups can be read from, primary first (default:
        the primary only)."""
        self._backups, self._index, self._runs = backups, index, runs
        self._safety, self._operations, self._runtime = safety, operations, runtime
        self._places = places or self._primary_only

    def restore_backup(self, app: str, backup_id: str, safety_backup: bool = True,
                       keep_hours: float | None = None) -> Reply:
        """Restore ``backup_id`` over the app's live data; the reply's data is the restored
        BackupInfo. With ``safety_backup`` the replaced tree is kept for ``keep_hours`` (default
        24) and uploaded in the background, or uploaded before the swap when the disk is short.

        Raises BusyError (the app is busy, or its kept tree still uploads), NotFoundError,
        IntegrityError, KeyNotFoundError, UnsafeArchiveError, FormatError, StorageError or
        RestoreError (see :func:`~.restore.restore_over_live`; also when the app's kept tree is
        not in the bucket yet).
        """
        check_app_id(app)
        with self._hold(app), self._operations.running(app, "restore") as tracker:
            info, extra = self._restore_locked(app, backup_id, safety_backup, keep_hours, tracker)
        return Reply(info.to_dict(), extra)

    def restore_paths(self, app: str, backup_id: str, paths: list[str], safety_backup: bool = True,
                      keep_hours: float | None = None) -> Reply:
        """Restore only ``paths`` (files or folders inside the archive) of ``backup_id`` into the
        app's live data, with the same safety copy and undo as :meth:`restore_backup` (see
        :func:`~.restore.restore_paths_over_live`); the reply's data is the BackupInfo, and
        ``paths`` (the normalized paths restored) is among our fields.

        Raises ConfigError for a path outside the archive, NotFoundError for one that matches
        nothing (the live data untouched), and what :meth:`restore_backup` raises.
        """
        check_app_id(app)
        selection = PathSelection.parse(paths)
        with self._hold(app), self._operations.running(app, "restore") as tracker:
            info, extra = self._restore_locked(app, backup_id, safety_backup, keep_hours, tracker, selection)
        return Reply(info.to_dict(), {**extra, "paths": list(selection.paths)})

    def undo_restore(self, app: str, safety_backup: bool = True, keep_hours: float | None = None) -> Reply:
        """Take the last restore back. The reply's data: ``{"source": "kept", "kept_at_unix_secs",
        "replaced_by", "backup_id"}`` when the kept tree was swapped back, ``{"source":
        "bucket", "backup": BackupInfo}`` when the newest pre-restore backup was restored. The tree
        that was live is kept in turn unless ``safety_backup`` is False (so an undo can be undone).

        Raises NotFoundError when there is neither, BusyError, and what a restore raises.
        """
        check_app_id(app)
        with self._hold(app), self._operations.running(app, "undo") as tracker:
            current = self._safety.kept.get(app)
            if current is None:
                found = self._newest_pre_restore(app)
                info, extra = self._restore_locked(app, found.id, safety_backup, keep_hours, tracker)
                return Reply({"source": "bucket", "backup": info.to_dict()}, extra)
            if not self._safety.cancel(app):
                raise RestoreError(f"The upload of the kept tree of app '{app}' did not stop; try again.")
            keep = self._record(app, "undo", keep_hours) if safety_backup else None
            swapped = swap_kept_back(app=app, paths=self._backups.paths, runtime=self._runtime,
                                     start_after=self._start_after(app), kept=self._safety.kept, keep=keep,
                                     progress=tracker)
            old = current.record
            log.info("undid the last restore of %s: swapped back the tree kept at %s (%.3f s down)", app,
                     old.kept_at_unix_secs, swapped.downtime_seconds)
            extra = self._settled(app, swapped, keep, None, None)
        return Reply({"source": "kept", "kept_at_unix_secs": old.kept_at_unix_secs,
                      "replaced_by": old.replaced_by, "backup_id": old.backup_id}, extra)

    def _restore_locked(self, app: str, backup_id: str, safety_backup: bool, keep_hours: float | None,
                        tracker: Tracker,
                        selection: PathSelection | None = None) -> tuple[BackupInfo, dict[str, Any]]:
        """Restore from the primary, or from the copy when the primary fails before anything
        was touched (unreachable, missing, checksum: :func:`~..core.copies.first_working`)."""
        settings = self._backups.settings(app)
        found = first_working(self._places(app, settings),
                              lambda place: self._restore_from(app, place, backup_id, safety_backup,
                                                               keep_hours, tracker, selection))
        info, extra = found.value
        if settings.copy is not None:
            extra.update(found.source_fields())
        return info, extra

    def _restore_from(self, app: str, place: Place, backup_id: str, safety_backup: bool,
                      keep_hours: float | None, tracker: Tracker,
                      selection: PathSelection | None) -> tuple[BackupInfo, dict[str, Any]]:
        settings = self._backups.settings(app)
        store = place.store
        _, prefix = self._backups.location(app, settings)
        info = catalog.find_backup(store, prefix, backup_id)
        self._safety.check_replaceable(app)
        keep, short = None, None
        if safety_backup:
            estimate = info.extras.bytes if info.extras is not None else info.size_bytes
            if selection is not None:  # a partial restore keeps the old tree by copying the live one
                name, env = check_app_id(app)
                estimate += tree_bytes(self._backups.paths.data_dir(name, env))
            short = self._safety.room_to_keep(estimate)
            keep = self._record(app, info.id, keep_hours) if short is None else None
        taken: list[BackupInfo] = []

        def take_safety_backup() -> None:
            try:
                taken.append(self._runs.take(app, settings, PRE_RESTORE, tracker))
            except TakoError as exc:
                raise RestoreError(
                    f"Could not take the safety backup of app '{app}' before restoring {info.id}: "
                    f"{exc} The live data was not touched; pass --no-safety-backup to restore "
                    "without one.") from None

        before: Callable[[], None] | None = take_safety_backup if short is not None else None
        if selection is None:
            swapped = restore_over_live(
                app=app, info=info, store=store, keys=settings.backup_keys, paths=self._backups.paths,
                runtime=self._runtime, start_after=self._start_after(app), keep=keep,
                kept=self._safety.kept, before_swap=before, progress=tracker)
        else:
            swapped = restore_paths_over_live(
                app=app, info=info, store=store, keys=settings.backup_keys, paths=self._backups.paths,
                selection=selection, runtime=self._runtime, start_after=self._start_after(app), keep=keep,
                kept=self._safety.kept, before_swap=before, progress=tracker)
        safety_id = taken[0].id if taken else None
        log.info("restored %s from %s (%.3f s down; safety copy: %s)", app, info.id,
                 swapped.downtime_seconds, "kept" if keep else safety_id or "none")
        return info, self._settled(app, swapped, keep, safety_id, short)

    def _settled(self, app: str, swapped: Swapped, keep: KeptRecord | None, safety_id: str | None,
                 short: str | None) -> dict[str, Any]:
        """Our reply fields, and the background upload of a kept tree started."""
        extra: dict[str, Any] = {"downtime_seconds": round(swapped.downtime_seconds, 3)}
        if keep is not None:
            if swapped.kept is not None:
                self._safety.upload_later(app)
            extra["safety_backup"] = {"status": "kept", "keep_hours": keep.keep_hours,
                                      "drop_at_unix_secs": keep.drop_at_unix_secs}
        elif safety_id is not None:
            extra["safety_backup"] = {"status": "uploaded", "id": safety_id, "reason": short}
            extra["safety_backup_id"] = safety_id
        else:
            extra["safety_backup"] = {"status": "none"}
        return extra

    def _primary_only(self, app: str, settings: BackupBinding) -> list[Place]:
        store, _ = self._backups.location(app, settings)
        return [Place(PRIMARY, store, settings.storage.bucket)]

    def _hold(self, app: str) -> AbstractContextManager[None]:
        """The app's lock; while its kept tree uploads, waited for up to RECORD_WAIT seconds (the
        upload holds it briefly to record its backup), else refused at once when taken."""
        return self._backups.locks.hold(app, wait=RECORD_WAIT if self._safety.uploading(app) else 0.0)

    def _record(self, app: str, replaced_by: str, keep_hours: float | None) -> KeptRecord:
        hours = DEFAULT_KEEP_HOURS if keep_hours is None else float(keep_hours)
        return KeptRecord(app=app, kept_at_unix_secs=int(self._backups.clock()), replaced_by=replaced_by,
                          keep_hours=hours)

    def _start_after(self, app: str) -> bool:
        state = self._backups.state.load(app)
        return state is not None and state.runtime is not None and state.runtime.instances > 0

    def _newest_pre_restore(self, app: str) -> BackupInfo:
        index = self._index.read(app, self._backups.settings(app), locked=True).index
        found = next((b for b in index.backups if b.extras is not None and b.extras.reason == PRE_RESTORE),
                     None)
        if found is None:
            raise NotFoundError(
                f"App '{app}' has no kept tree and no pre-restore backup to go back to: restores keep "
                "one unless --no-safety-backup is passed.")
        return found
