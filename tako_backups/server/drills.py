"""Restore drills on the server: running them (on demand and weekly), where each app's last drill
is kept, and when the next one is due.

``state/drills/{name}.{env}.json`` holds the last :class:`DrillResult` (backup id, time, measured
recovery seconds, ok, message) and the last one that passed: ``{"last": ..., "last_ok": ...}``.
It holds no secret, so it is plain JSON (mode 0600, written atomically). Drills run weekly; a
failed one is tried again after a day.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..core import catalog, reindex
from ..core.copies import PRIMARY, Place, first_working
from ..core.drill import DrillResult, run_drill
from ..core.pipes import release_free_memory
from ..errors import FormatError, NotFoundError
from ..models import BackupBinding, BackupInfo
from ..policy import DEFAULT_EVERY
from ..primitives.json_shapes import check_fields
from ..primitives.names import check_app_id
from .app_backups import AppBackups
from .app_records import AppRecords
from .copies import Places
from .index_repair import IndexRepair
from .notify import overdue_after

__all__ = ["DRILL_INTERVAL", "DRILL_RETRY", "DrillLog", "RestoreDrills", "drill_due"]

log = logging.getLogger(__name__)

DRILL_INTERVAL = 7 * 86_400
DRILL_RETRY = 86_400


def drill_due(last: DrillResult | None, now: int, interval: float = DRILL_INTERVAL) -> bool:
    """Due when there was none, the last passed at least ``interval`` ago, or the last failed
    at least a day (or ``interval``, when shorter) ago."""
    if last is None:
        return True
    wait = interval if last.ok else min(interval, DRILL_RETRY)
    return now - last.at_unix_secs >= wait


class DrillLog:
    """The last drill of each app, under ``state_dir/drills``. Thread-safe."""

    def __init__(self, state_dir: Path) -> None:
        self._records = AppRecords(state_dir, "drills", "drill result")
        self.folder = self._records.folder

    def last(self, app: str) -> DrillResult | None:
        """The app's last drill, or None (also when the file is damaged, which is logged)."""
        return self.read(app)[0]

    def last_ok(self, app: str) -> DrillResult | None:
        """The app's last drill that passed, or None."""
        return self.read(app)[1]

    def read(self, app: str) -> tuple[DrillResult | None, DrillResult | None]:
        """(last drill, last drill that passed); (None, None) when there is none or the file is
        damaged (which is logged)."""
        obj = self._records.read(app)
        if obj is None:
            return None, None
        try:
            check_fields(obj, "Drill record", {"last": dict, "last_ok": (dict, type(None))})
            return (DrillResult.from_dict(obj["last"]),
                    None if obj["last_ok"] is None else DrillResult.from_dict(obj["last_ok"]))
        except FormatError as exc:
            log.warning("ignoring the damaged drill record %s: %s", self._records.path(app), exc)
            return None, None

    def record(self, app: str, result: DrillResult) -> None:
        """Keep ``result`` as the app's last drill (and last passed one when it passed). Raises
        ConfigError when it cannot be written."""
        with self._records.lock:
            last_ok = result if result.ok else self.last_ok(app)
            self._records.write(app, {"last": result.to_dict(),
                                      "last_ok": None if last_ok is None else last_ok.to_dict()})


class RestoreDrills:
    """Runs drills (a drill restores a backup into ``tmp/drills/`` and checks it, never touching
    live data) and keeps each app's last result. Thread-safe.

    ``places`` gives the buckets an app's backups can be read from, primary first (default: the
    primary only); a drill that fails on one is tried on the next, and says which one it used."""

    def __init__(self, backups: AppBackups, index: IndexRepair, records: DrillLog,
                 places: Places | None = None) -> None:
        self._backups = backups
        self._index = index
        self.records = records
        self._places = places or self._primary_only

    def drill_backup(self, app: str, backup_id: str | None = None) -> dict[str, Any]:
        """Drill ``backup_id`` (the newest when None) and record the result; returns it as
        ``{"backup_id", "at_unix_secs", "seconds", "ok", "message"?, "source"?}`` (a failed drill is
        a reply with ``ok: false``, not an error). A drill only reads the bucket and writes its own
        scratch folder, so it does not take the app's lock: backups and restores go on meanwhile.
        Raises NotFoundError (no settings, no backups, unknown id) or StorageError when the index
        cannot be read."""
        check_app_id(app)
        return self._drill(app, backup_id).to_dict()

    def _drill(self, app: str, backup_id: str | None) -> DrillResult:
        settings = self._backups.settings(app)
        places = self._places(app, settings)
        _, prefix = self._backups.location(app, settings)
        if backup_id is None:
            info = first_working(places, lambda place: self._newest(app, settings, place, prefix)).value
        else:
            info = first_working(places, lambda place: catalog.find_backup(place.store, prefix,
                                                                           backup_id)).value
        try:
            result = self._drill_anywhere(places, info, settings)
        finally:
            release_free_memory()  # what the drill's download and extraction freed
        self.records.record(app, result)
        if result.ok:
            log.info("drill of %s: %s restores in %.1f s%s", app, info.id, result.seconds,
                     f" from the {result.source}" if result.source else "")
        else:
            log.error("drill of %s: %s failed: %s", app, info.id, result.message)
        return result

    def _drill_anywhere(self, places: list[Place], info: BackupInfo,
                        settings: BackupBinding) -> DrillResult:
        """Drill ``info`` from each place in turn until one passes; a pass after a failure keeps
        the failures in its message, a failure everywhere names every place's."""
        failures: list[str] = []
        result: DrillResult | None = None
        for place in places:
            result = run_drill(place.store, info, settings.backup_keys, self._backups.paths.drill_work,
                               clock=self._backups.clock)
            source = place.name if len(places) > 1 else None
            if result.ok:
                message = "; ".join(failures) if failures else None
                return DrillResult(result.backup_id, result.at_unix_secs, result.seconds, True, message,
                                   source)
            failures.append(f"{place.name} (bucket {place.bucket}): {result.message}"
                            if len(places) > 1 else result.message or "failed")
        assert result is not None
        return DrillResult(result.backup_id, result.at_unix_secs, result.seconds, False,
                           "; ".join(failures), None)

    def _newest(self, app: str, settings: BackupBinding, place: Place, prefix: str) -> BackupInfo:
        """The newest backup in ``place``'s index. Raises NotFoundError when there is none."""
        index = (self._index.read(app, settings).index if place.name == PRIMARY
                 else reindex.read_or_rebuild(place.store, prefix).index)
        if not index.backups:
            raise NotFoundError(f"App '{app}' has no backups to drill; run tako backups now first.")
        return index.backups[0]

    def _primary_only(self, app: str, settings: BackupBinding) -> list[Place]:
        store, _ = self._backups.location(app, settings)
        return [Place(PRIMARY, store, settings.storage.bucket)]

    def is_due(self, app: str, now: int, interval: float = DRILL_INTERVAL) -> bool:
        """Whether the weekly drill of ``app`` is due (never read from the bucket)."""
        return drill_due(self.records.last(app), now, interval)

    def scheduled_drill(self, app: str) -> DrillResult | None:
        """Drill the newest backup (None when there is none yet). Raises StorageError."""
        try:
            return self._drill(app, None)
        except NotFoundError:
            return None

    def status_fields(self, app: str, newest: BackupInfo | None, enabled: bool,
                      rebuilt: bool, every: int = DEFAULT_EVERY) -> dict[str, Any]:
        """``last_drill``, ``last_ok_drill``, ``overdue`` (no regular backup for ``every`` x 1.5
        + 1 h: :func:`~.notify.overdue_after`), ``overdue_after_seconds`` and ``index_rebuilt``
        for ``backup_status``; ``newest`` is the newest regular backup."""
        last, last_ok = self.records.read(app)
        now = int(self._backups.clock())
        limit = overdue_after(every)
        overdue = enabled and (newest is None or now - newest.created_at_unix_secs > limit)
        return {"last_drill": None if last is None else last.to_dict(),
                "last_ok_drill": None if last_ok is None else last_ok.to_dict(),
                "overdue": overdue, "overdue_after_seconds": limit, "index_rebuilt": rebuilt}
