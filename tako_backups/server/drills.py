"""Restore drills on the server: running them (on demand and weekly), where each app's last drill
is kept, and when the next one is due.

``state/drills/{name}.{env}.json`` holds the last :class:`DrillResult` (backup id, time, measured
recovery seconds, ok, message) and the last one that passed: ``{"last": ..., "last_ok": ...}``.
It holds no secret, so it is plain JSON (mode 0600, written atomically). Drills run weekly; a
failed one is tried again after a day.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

from ..core import catalog
from ..core.drill import DrillResult, run_drill
from ..errors import ConfigError, FormatError, NotFoundError
from ..models import BackupInfo
from ..primitives.atomic_files import os_reason, write_atomic
from ..primitives.json_shapes import check_fields
from ..primitives.names import check_app_id
from .app_backups import AppBackups
from .index_repair import IndexRepair

__all__ = ["DRILL_INTERVAL", "DRILL_RETRY", "OVERDUE_AFTER", "DrillLog", "RestoreDrills", "drill_due"]

log = logging.getLogger(__name__)

DRILL_INTERVAL = 7 * 86_400
DRILL_RETRY = 86_400
OVERDUE_AFTER = 26 * 3_600


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
        self.folder = Path(state_dir) / "drills"
        self._lock = threading.Lock()

    def last(self, app: str) -> DrillResult | None:
        """The app's last drill, or None (also when the file is damaged, which is logged)."""
        return self.read(app)[0]

    def last_ok(self, app: str) -> DrillResult | None:
        """The app's last drill that passed, or None."""
        return self.read(app)[1]

    def read(self, app: str) -> tuple[DrillResult | None, DrillResult | None]:
        """(last drill, last drill that passed); (None, None) when there is none or the file is
        damaged (which is logged)."""
        path = self._path(app)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None, None
        except OSError as exc:
            log.warning("cannot read the last drill of %s (%s): %s", app, path, exc.strerror)
            return None, None
        try:
            obj = json.loads(text)
            check_fields(obj, "Drill record", {"last": dict, "last_ok": (dict, type(None))})
            return (DrillResult.from_dict(obj["last"]),
                    None if obj["last_ok"] is None else DrillResult.from_dict(obj["last_ok"]))
        except (ValueError, FormatError) as exc:
            log.warning("ignoring the damaged drill record %s: %s", path, exc)
            return None, None

    def record(self, app: str, result: DrillResult) -> None:
        """Keep ``result`` as the app's last drill (and last passed one when it passed). Raises
        ConfigError when it cannot be written."""
        path = self._path(app)
        with self._lock:
            last_ok = result if result.ok else self.last_ok(app)
            record = {"last": result.to_dict(), "last_ok": None if last_ok is None else last_ok.to_dict()}
            try:
                self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
                write_atomic(path, json.dumps(record).encode(), mode=0o600)
            except OSError as exc:
                raise ConfigError(f"Cannot save the drill result of app '{app}' ({path}): "
                                  f"{os_reason(exc)}.") from None

    def _path(self, app: str) -> Path:
        name, env = check_app_id(app)
        return self.folder / f"{name}.{env}.json"


class RestoreDrills:
    """Runs drills (a drill restores a backup into ``tmp/drills/`` and checks it, never touching
    live data) and keeps each app's last result. Thread-safe."""

    def __init__(self, backups: AppBackups, index: IndexRepair, records: DrillLog) -> None:
        self._backups = backups
        self._index = index
        self.records = records

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
        settings = self._backups.settings(app)
        store, prefix = self._backups.location(app, settings)
        if backup_id is None:
            index = self._index.read(app, settings).index
            if not index.backups:
                raise NotFoundError(f"App '{app}' has no backups to drill; run tako backups now first.")
            info = index.backups[0]
        else:
            info = catalog.find_backup(store, prefix, backup_id)
        result = run_drill(store, info, settings.backup_keys, self._backups.paths.drill_work,
                           clock=self._backups.clock)
        self.records.record(app, result)
        if result.ok:
            log.info("drill of %s: %s restores in %.1f s", app, info.id, result.seconds)
        else:
            log.error("drill of %s: %s failed: %s", app, info.id, result.message)
        return result

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
                      rebuilt: bool) -> dict[str, Any]:
        """``last_drill``, ``last_ok_drill``, ``overdue`` and ``index_rebuilt`` for ``backup_status``."""
        last, last_ok = self.records.read(app)
        now = int(self._backups.clock())
        overdue = enabled and (newest is None or now - newest.created_at_unix_secs > OVERDUE_AFTER)
        return {"last_drill": None if last is None else last.to_dict(),
                "last_ok_drill": None if last_ok is None else last_ok.to_dict(),
                "overdue": overdue, "index_rebuilt": rebuilt}
