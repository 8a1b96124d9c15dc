"""The second copy of an app's backups on the server: where it is, how far behind it is, bringing
it up to date (``sync_copies``), and the places a read may fall back to.

``state/copies/{name}.{env}.json`` records the copy's state as of the last backup or sync:
``{"bucket", "missing": [ids], "error", "at_unix_secs", "last_ok_at_unix_secs"}``. The copy is
``ok`` when nothing is missing, ``lagging`` otherwise; ``status`` and ``list`` report it without
asking the copy's bucket (which may be the one that is down). A lagging copy is synced before the
next scheduled backup, and ``tako backups sync`` syncs it on demand.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..core import catalog, leftovers, rekey
from ..core.copies import COPY, PRIMARY, CopyOutcome, Place, copy_backup, missing_backups
from ..errors import FormatError, IntegrityError, NotFoundError, StorageError, TakoError
from ..models import BackupBinding, BackupInfo
from ..policy import policy_of
from ..primitives.json_shapes import check_fields
from ..primitives.names import check_app_id
from .alerts import Alerts
from .app_backups import AppBackups
from .app_records import AppRecords
from .index_repair import IndexRepair

__all__ = ["BackupCopies", "CopyState", "Places"]

log = logging.getLogger(__name__)

OK, LAGGING, UNKNOWN = "ok", "lagging", "unknown"
Places = Callable[[str, BackupBinding], list[Place]]
"""Where an app's backups can be read, primary first (:meth:`BackupCopies.places`)."""


@dataclass(frozen=True)
class CopyState:
    """The copy as last seen: its bucket, the backups it lacks, the last error and when."""

    bucket: str
    missing: tuple[str, ...] = ()
    error: str | None = None
    at_unix_secs: int | None = None
    last_ok_at_unix_secs: int | None = None

    @property
    def state(self) -> str:
        if self.at_unix_secs is None:
            return UNKNOWN
        return LAGGING if self.missing or self.error else OK

    def to_dict(self) -> dict[str, Any]:
        """The ``copy`` field of ``backup_status`` and ``list_backups``."""
        return {"bucket": self.bucket, "state": self.state, "missing": list(self.missing),
                "error": self.error, "at_unix_secs": self.at_unix_secs,
                "last_ok_at_unix_secs": self.last_ok_at_unix_secs}

    @classmethod
    def from_dict(cls, obj: Any) -> CopyState:
        d = check_fields(obj, "Copy record", {"bucket": str, "missing": list},
                         {"error": (str, type(None)), "at_unix_secs": (int, type(None)),
                          "last_ok_at_unix_secs": (int, type(None)), "state": str})
        if not all(isinstance(i, str) for i in d["missing"]):
            raise FormatError("Copy record field 'missing' has the wrong type.")
        return cls(d["bucket"], tuple(d["missing"]), d.get("error"), d.get("at_unix_secs"),
                   d.get("last_ok_at_unix_secs"))


class BackupCopies:
    """The copies of every app's backups. Thread-safe; ``sync`` takes the app's lock, the
    ``*_locked`` methods expect the caller to hold it."""

    def __init__(self, backups: AppBackups, index: IndexRepair, alerts: Alerts) -> None:
        self._backups = backups
        self._index = index
        self._alerts = alerts
        self._records = AppRecords(backups.paths.state_dir, "copies", "copy state")

    def places(self, app: str, settings: BackupBinding) -> list[Place]:
        """Where the app's backups can be read: the primary, then the copy when there is one.
        Raises ConfigError when a store cannot be set up."""
        store, _ = self._backups.location(app, settings)
        places = [Place(PRIMARY, store, settings.storage.bucket)]
        if settings.copy is not None:
            places.append(Place(COPY, self._backups.store(settings.copy), settings.copy.bucket))
        return places

    def state(self, app: str, settings: BackupBinding) -> CopyState | None:
        """The copy's recorded state (``unknown`` before its first backup or sync, or after the
        copy moved to another bucket); None when the app has no copy."""
        if settings.copy is None:
            return None
        obj = self._records.read(app)
        try:
            found = None if obj is None else CopyState.from_dict(obj)
        except FormatError as exc:
            log.warning("ignoring the damaged copy record of %s: %s", app, exc)
            found = None
        if found is None or found.bucket != settings.copy.bucket:
            return CopyState(settings.copy.bucket)
        return found

    def lagging(self, app: str, settings: BackupBinding) -> bool:
        """True when the app has a copy that lacks backups or whose last upload failed."""
        state = self.state(app, settings)
        return state is not None and state.state == LAGGING

    def after_backup(self, app: str, settings: BackupBinding, info: BackupInfo,
                     outcome: CopyOutcome | None) -> dict[str, Any] | None:
        """Record how the copy of the new backup ``info`` went; a failed copy is announced
        (``copy_lagging``). Returns the reply's ``copy`` field: ``{"bucket", "status": "ok" |
        "failed", "error"?, "state"}``; None without a copy. Never raises."""
        if settings.copy is None or outcome is None:
            return None
        now = int(self._backups.clock())
        previous = self.state(app, settings)
        assert previous is not None
        if outcome.ok:
            missing = self._compare(app, settings, previous)
            state = CopyState(settings.copy.bucket, missing, None, now,
                              now if not missing else previous.last_ok_at_unix_secs)
        else:
            missing = tuple(dict.fromkeys((*self._unknown_as_missing(app, settings, previous),
                                           *previous.missing, info.id)))
            state = CopyState(settings.copy.bucket, missing, outcome.error, now,
                              previous.last_ok_at_unix_secs)
            log.warning("the copy of %s backup %s to bucket %s failed: %s", app, info.id,
                        settings.copy.bucket, outcome.error)
            self._alerts.copy_lagging(app, settings, info.id, outcome.error)
        self._save(app, state)
        reply: dict[str, Any] = {"bucket": settings.copy.bucket, "status": OK if outcome.ok else "failed",
                                 "state": state.state}
        if outcome.error is not None:
            reply["error"] = outcome.error
        return reply

    def sync(self, app: str) -> dict[str, Any]:
        """``sync_copies``: copy every backup of the primary's index that the copy lacks (see
        :meth:`sync_locked`). Raises BusyError, NotFoundError (no settings, no copy) or
        StorageError (a bucket cannot be read)."""
        check_app_id(app)
        with self._backups.locks.hold(app):
            return self.sync_locked(app, self._backups.settings(app))

    def sync_locked(self, app: str, settings: BackupBinding) -> dict[str, Any]:
        """Stream each backup the copy lacks from the primary (newest first; SHA-256 checked while
        it streams) and record it in the copy's index, with the app's retention. A backup that
        cannot be copied (its primary object is missing or damaged) is reported and the others go
        on. Returns ``{"app", "bucket", "copied": [ids], "failed": [{"backup_id", "error"}],
        "already": n, "copy": state}``. Raises NotFoundError (no copy) or StorageError (a bucket
        cannot be read: recorded and announced as ``copy_lagging``)."""
        if settings.copy is None:
            raise NotFoundError(f"App '{app}' has no backup copy; set copy_to for its environment in "
                                "tako-backups.toml and deploy.")
        primary, prefix = self._backups.location(app, settings)
        copy = self._backups.store(settings.copy)
        policy, now = policy_of(settings), int(self._backups.clock())
        previous = self.state(app, settings)
        assert previous is not None
        try:
            leftovers.clean_leftovers(copy, prefix, started_before=now - 3_600)
            index = self._index.read(app, settings, locked=True).index
            todo = missing_backups(index.backups, copy, prefix)
        except StorageError as exc:
            self._save(app, CopyState(settings.copy.bucket, previous.missing, str(exc), now,
                                      previous.last_ok_at_unix_secs))
            self._alerts.copy_lagging(app, settings, None, str(exc))
            raise
        copied, failed = [], []
        for info in todo:
            try:
                copy_backup(primary, copy, prefix, info, policy=policy, now=now)
                copied.append(info.id)
            except (StorageError, IntegrityError) as exc:
                failed.append({"backup_id": info.id, "error": str(exc)})
        missing = tuple(f["backup_id"] for f in failed)
        error = failed[0]["error"] if failed else None
        state = CopyState(settings.copy.bucket, missing, error, now,
                          now if not missing else previous.last_ok_at_unix_secs)
        self._save(app, state)
        log.info("synced the copy of %s to bucket %s: %d copied, %d failed, %d already there", app,
                 settings.copy.bucket, len(copied), len(failed), len(index.backups) - len(todo))
        if failed:
            self._alerts.copy_lagging(app, settings, failed[0]["backup_id"], error)
        return {"app": app, "bucket": settings.copy.bucket, "copied": copied, "failed": failed,
                "already": len(index.backups) - len(todo), "copy": state.to_dict()}

    def mirror_reencrypted(self, app: str, settings: BackupBinding,
                           swaps: list[tuple[BackupInfo, BackupInfo]]) -> None:
        """After a re-encryption on the primary, do the same on the copy: stream each new backup
        over and drop the old one there (only once the new one is in). The caller holds the app's
        lock. A failure leaves the old backup in the copy, marks the new one missing (``sync``
        copies it later) and is announced. Never raises."""
        if settings.copy is None or not swaps:
            return
        primary, prefix = self._backups.location(app, settings)
        copy = self._backups.store(settings.copy)
        policy, now = policy_of(settings), int(self._backups.clock())
        previous = self.state(app, settings)
        assert previous is not None
        failed: list[str] = []
        error: str | None = None
        for old, new in swaps:
            try:
                copy_backup(primary, copy, prefix, new, policy=policy, now=now)
                rekey.swap_backup(copy, prefix, old, new)
            except (StorageError, IntegrityError) as exc:
                failed.append(new.id)
                error = error or str(exc)
        missing = tuple(dict.fromkeys((*previous.missing, *failed)))
        self._save(app, CopyState(settings.copy.bucket, missing, error, now,
                                  now if not missing else previous.last_ok_at_unix_secs))
        if failed:
            log.warning("could not re-encrypt %d backups of %s in the copy: %s", len(failed), app, error)
            self._alerts.copy_lagging(app, settings, failed[0], error)

    def _compare(self, app: str, settings: BackupBinding, previous: CopyState) -> tuple[str, ...]:
        """The ids of the primary's index that the copy's index lacks (two reads); on a read error
        what was missing before."""
        assert settings.copy is not None
        primary, prefix = self._backups.location(app, settings)
        try:
            wanted = catalog.read_index(primary, prefix).backups
            present = {b.id for b in catalog.read_index(self._backups.store(settings.copy), prefix).backups}
        except TakoError as exc:
            log.warning("could not compare the copy of %s with its primary: %s", app, exc)
            return previous.missing
        return tuple(b.id for b in wanted if b.id not in present)

    def _unknown_as_missing(self, app: str, settings: BackupBinding, previous: CopyState) -> tuple[str, ...]:
        """Before the copy was ever compared, every backup of the primary may be missing from it
        (``sync`` checks each one and copies only those really missing). Never reads the copy,
        which just failed."""
        if previous.state != UNKNOWN:
            return ()
        primary, prefix = self._backups.location(app, settings)
        try:
            return tuple(b.id for b in catalog.read_index(primary, prefix).backups)
        except TakoError:
            return ()

    def _save(self, app: str, state: CopyState) -> None:
        try:
            self._records.write(app, state.to_dict())
        except TakoError as exc:
            log.error("%s", exc)
