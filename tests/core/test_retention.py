from __future__ import annotations

import dataclasses

from tako_backups.core.retention import archive_intact, split_expired
from tako_backups.models import BackupIndex, BackupInfo, EncryptionInfo
from tako_backups.storage.memory import MemoryStore

DAY = 86_400
NOW = 1_800_000_000


def _info(age_days: float, n: int) -> BackupInfo:
    created = int(NOW - age_days * DAY)
    bid = f"b{created}-AAAAAAA{n}"
    return BackupInfo(bid, "demo", "production", "s", created, 10, "00" * 32, f"p/{bid}.tar.zst.enc",
                      f"p/{bid}.json", EncryptionInfo("backup-key-0123456789abcdef", "n", "t"))


def test_tako_rule_without_floor() -> None:
    backups = [_info(d, i) for i, d in enumerate((0, 10, 30, 30.01, 45))]
    kept, expired = split_expired(BackupIndex(backups), NOW, 30, floor=0)
    assert [b.id for b in kept] == [b.id for b in backups[:3]]
    assert [b.id for b in expired] == [b.id for b in backups[3:]]


def test_age_counts_from_the_newest_backup_so_a_stalled_server_keeps_its_copies() -> None:
    backups = [_info(d, i) for i, d in enumerate((40, 50, 60, 80))]
    kept, expired = split_expired(BackupIndex(backups), NOW, 30, floor=0)
    assert [b.id for b in kept] == [b.id for b in backups[:3]]
    assert [b.id for b in expired] == [backups[3].id]


def test_floor_keeps_the_newest_intact_backups_only() -> None:
    backups = [_info(d, i) for i, d in enumerate((0, 40, 41, 42, 43))]
    broken = {backups[1].id}
    kept, expired = split_expired(BackupIndex(backups), NOW, 30, floor=3,
                                  intact=lambda b: b.id not in broken)
    assert [b.id for b in kept] == [backups[0].id, backups[2].id, backups[3].id]
    assert {b.id for b in expired} == {backups[1].id, backups[4].id}


def test_archive_intact_checks_existence_and_size() -> None:
    store = MemoryStore()
    good, short, missing = _info(1, 1), _info(2, 2), _info(3, 3)
    store.put_bytes(good.archive_key, b"x" * 10)
    store.put_bytes(short.archive_key, b"x" * 9)
    check = archive_intact(store)
    assert check(good) and not check(short) and not check(missing)
    assert check(dataclasses.replace(short, size_bytes=9))
