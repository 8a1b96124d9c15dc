"""What ``list_backups`` and ``backup_status`` answer: Tako's fields, then ours (drills, overdue,
rebuilt index, and with our settings the policy, the copy's state and who is notified)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..core import retention
from ..policy import newest_regular, policy_of
from ..primitives.names import check_app_id
from .app_backups import AppBackups
from .copies import BackupCopies
from .drills import RestoreDrills
from .index_repair import IndexRepair
from .safety import SafetyCopies
from .scheduler import next_backup_at

__all__ = ["Reports"]


class Reports:
    """Answers ``list_backups`` and ``backup_status``. Thread-safe."""

    def __init__(self, backups: AppBackups, index: IndexRepair, drills: RestoreDrills, copies: BackupCopies,
                 safety: SafetyCopies, clock: Callable[[], float]) -> None:
        self._backups = backups
        self._index = index
        self._drills = drills
        self._copies = copies
        self._safety = safety
        self._clock = clock

    def list_backups(self, app: str, why: bool = False) -> dict[str, Any]:
        """``{"app", "backups", "index_rebuilt"}``, newest first; ``index_rebuilt`` says the index
        was missing or unreadable and was rebuilt from the manifests. With a copy, ``copy`` is its
        state (the ids it lacks included); with ``why``, ``why`` maps each backup id to the reasons
        retention keeps it (``hourly 2026-12-01T10``, ``daily 2026-12-01``, ``floor``, ...; an id
        retention would drop at the next backup has none). Raises NotFoundError or StorageError."""
        settings = self._backups.settings(app)
        found = self._index.read(app, settings)
        out: dict[str, Any] = {"app": app, "backups": [b.to_dict() for b in found.index.backups],
                               "index_rebuilt": found.rebuilt}
        copy = self._copies.state(app, settings)
        if copy is not None:
            out["copy"] = copy.to_dict()
        if why:
            chosen = retention.select(found.index.backups, policy_of(settings), int(self._clock()))
            reasons = chosen.reasons()
            out["why"] = {b.id: list(reasons.get(b.id, ())) for b in found.index.backups}
        return out

    def backup_status(self, app: str) -> dict[str, Any]:
        """``{"app", "enabled", "retention_days", "last_backup", "next_backup_at_unix_secs"}`` plus
        our ``last_drill``, ``last_ok_drill``, ``overdue``, ``overdue_after_seconds``,
        ``index_rebuilt`` and, while the last restore's replaced tree is kept, ``kept_tree``
        (:meth:`SafetyCopies.status`); with our settings also ``policy`` and ``policy_text`` (``every 1h,
        keeps 24 hourly, ...``), ``copy`` (its state) and ``notify`` (where, no secrets). The next
        backup and overdue count from the newest regular backup and the policy's ``every``.

        An app without backup settings reports Tako's ``enabled: false`` shape exactly (every other
        field null). Raises StorageError.
        """
        check_app_id(app)
        state = self._backups.state.load(app)
        if state is None or state.backup is None:
            return {"app": app, "enabled": False, "retention_days": None, "last_backup": None,
                    "next_backup_at_unix_secs": None}
        settings, now = state.backup, int(self._clock())
        found = self._index.read(app, settings)
        newest = found.index.backups[0] if found.index.backups else None
        regular = newest_regular(found.index.backups)
        every = policy_of(settings).every
        out = {"app": app, "enabled": True, "retention_days": settings.retention_days,
               "last_backup": None if newest is None else newest.to_dict(),
               "next_backup_at_unix_secs": next_backup_at(regular, now, every),
               **self._drills.status_fields(app, regular, enabled=True, rebuilt=found.rebuilt, every=every)}
        kept = self._safety.status(app)
        if kept is not None:
            out["kept_tree"] = kept
        if settings.policy is not None:
            out.update(policy=settings.policy.to_dict(), policy_text=settings.policy.describe())
        copy = self._copies.state(app, settings)
        if copy is not None:
            out["copy"] = copy.to_dict()
        if settings.notify is not None:
            out["notify"] = settings.notify.summary()
        return out
