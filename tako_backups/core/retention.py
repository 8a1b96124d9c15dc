"""Retention: which index entries to keep and why, and dropping the rest.

:func:`select` applies a :class:`~tako_backups.policy.BackupPolicy` and gives every kept backup
its reasons (what ``tako backups list --why`` shows):

- Age (Tako's rule; the default 30 days): a backup is kept when it was created at most
  ``retention_days`` before the reference -- the newest regular backup's time, or now when that is
  earlier -- so a server that stopped backing up never ages out its last copies. Reason
  ``within 30 days``.
- Tiers (restic ``forget``): ``keep_last`` keeps the N newest; each of ``keep_hourly``,
  ``keep_daily``, ``keep_weekly`` and ``keep_monthly`` keeps the newest backup of each of the N
  most recent hours/days/ISO weeks/months that hold a backup, counted from the newest backup (not
  from now). While a tier still has a count left at the oldest backup, that backup is kept too
  (restic >= 0.17: ``oldest daily ...``). One backup may be kept for several reasons. Buckets are
  UTC. Reasons: ``last``, ``hourly 2026-12-01T10``, ``daily 2026-12-01``, ``weekly 2026-W48``,
  ``monthly 2026-11``.
- Floor, on top of either: the newest ``floor`` (3) intact backups are never dropped (``floor``).

Pre-restore safety backups (reason ``pre-restore``) hold the live data a restore replaced, often
damaged: they never take a floor place nor a tier slot, so they cannot push a good backup out, and
they do not move the age reference. Under the age rule they age like any backup; under tiers one is
kept while it is no older than the oldest backup the tiers keep (reason ``pre-restore``), so it
lives as long as the history around it. Only when fewer than ``floor`` regular backups are intact
do intact safety backups fill the floor's remaining places.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from ..errors import StorageError
from ..models import PRE_RESTORE, BackupIndex, BackupInfo, sort_newest_first
from ..policy import BackupPolicy, is_pre_restore
from ..storage.base import ObjectStore

__all__ = ["DAY", "DEFAULT_FLOOR", "Kept", "Selection", "archive_intact", "delete_backups", "select",
           "split_expired"]

DAY = 86_400
DEFAULT_FLOOR = 3
FLOOR = "floor"


@dataclass(frozen=True)
class Kept:
    """A backup retention keeps, with every reason it is kept for (tiers first, then floor)."""

    info: BackupInfo
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Selection:
    """What a policy keeps and drops; both lists newest first."""

    kept: list[Kept]
    expired: list[BackupInfo]

    def reasons(self) -> dict[str, tuple[str, ...]]:
        """Backup id -> reasons, for the kept backups."""
        return {k.info.id: k.reasons for k in self.kept}


def _utc(info: BackupInfo) -> datetime:
    return datetime.fromtimestamp(info.created_at_unix_secs, UTC)


def _week(info: BackupInfo) -> str:
    year, week, _ = _utc(info).isocalendar()
    return f"{year}-W{week:02d}"


_BUCKETS: tuple[tuple[str, str, Callable[[BackupInfo], str]], ...] = (
    ("keep_hourly", "hourly", lambda b: _utc(b).strftime("%Y-%m-%dT%H")),
    ("keep_daily", "daily", lambda b: _utc(b).strftime("%Y-%m-%d")),
    ("keep_weekly", "weekly", _week),
    ("keep_monthly", "monthly", lambda b: _utc(b).strftime("%Y-%m")),
)


def select(
    backups: Iterable[BackupInfo], policy: BackupPolicy, now: int, *, floor: int = DEFAULT_FLOOR,
    intact: Callable[[BackupInfo], bool] | None = None,
) -> Selection:
    """Apply ``policy`` at ``now`` (unix seconds) to ``backups`` (any order).

    ``intact`` tells whether a backup's archive is whole (all count as intact when None); it is
    asked only about the newest backups, until the floor is full.
    """
    ordered = sort_newest_first(list(backups))
    regular = [b for b in ordered if not is_pre_restore(b)]
    reasons: dict[str, list[str]] = {b.id: [] for b in ordered}
    if policy.tiered:
        _apply_tiers(regular, policy, reasons)
        tier_kept = [b for b in regular if reasons[b.id]]
        oldest = min((b.created_at_unix_secs for b in tier_kept), default=None)
        for b in ordered:
            if is_pre_restore(b) and (oldest is None or b.created_at_unix_secs >= oldest):
                reasons[b.id].append(PRE_RESTORE)
    else:
        days = policy.days or 0
        newest = regular[0].created_at_unix_secs if regular else now
        cutoff = min(now, newest) - days * DAY
        label = f"within {days} day{'' if days == 1 else 's'}"
        for b in ordered:
            if b.created_at_unix_secs >= cutoff:
                reasons[b.id].append(label)
    for b in _floor(regular, [b for b in ordered if is_pre_restore(b)], floor, intact):
        reasons[b.id].append(FLOOR)
    return Selection(kept=[Kept(b, tuple(reasons[b.id])) for b in ordered if reasons[b.id]],
                     expired=[b for b in ordered if not reasons[b.id]])


def _apply_tiers(regular: list[BackupInfo], policy: BackupPolicy, reasons: dict[str, list[str]]) -> None:
    """restic's ApplyPolicy for the count tiers over ``regular`` (newest first)."""
    if policy.keep_last is not None:
        for b in regular[: policy.keep_last]:
            reasons[b.id].append("last")
    for field, name, bucket_of in _BUCKETS:
        left: int | None = getattr(policy, field)
        if left is None:
            continue
        previous: str | None = None
        for nr, b in enumerate(regular):
            if left <= 0:
                break
            bucket = bucket_of(b)
            oldest = nr == len(regular) - 1
            if bucket != previous or oldest:
                prefix = "oldest " if bucket == previous else ""
                reasons[b.id].append(f"{prefix}{name} {bucket}")
                previous = bucket
                left -= 1


def _floor(regular: list[BackupInfo], safety: list[BackupInfo], floor: int,
           intact: Callable[[BackupInfo], bool] | None) -> list[BackupInfo]:
    """The newest ``floor`` intact regular backups; safety backups only fill places left over."""
    chosen: list[BackupInfo] = []
    for group in (regular, safety):
        for b in group:
            if len(chosen) >= floor:
                return chosen
            if intact is None or intact(b):
                chosen.append(b)
    return chosen


def split_expired(
    index: BackupIndex, now: int, retention_days: int, *, floor: int = DEFAULT_FLOOR,
    intact: Callable[[BackupInfo], bool] | None = None,
) -> tuple[list[BackupInfo], list[BackupInfo]]:
    """(kept, expired), both newest first, under Tako's age rule of ``retention_days`` plus the
    floor: :func:`select` with ``BackupPolicy(retention_days=retention_days)``."""
    chosen = select(index.backups, BackupPolicy(retention_days=retention_days), now, floor=floor,
                    intact=intact)
    return [k.info for k in chosen.kept], chosen.expired


def archive_intact(store: ObjectStore) -> Callable[[BackupInfo], bool]:
    """A predicate: the archive object exists with the size its manifest records."""

    def check(info: BackupInfo) -> bool:
        try:
            head = store.head(info.archive_key)
        except StorageError:
            return False
        return head is not None and head.size == info.size_bytes

    return check


def delete_backups(store: ObjectStore, backups: list[BackupInfo]) -> None:
    """Delete each backup's archive and manifest; delete errors are ignored (as Tako does)."""
    for info in backups:
        for key in (info.archive_key, info.manifest_key):
            try:
                store.delete(key)
            except StorageError:
                pass
