from __future__ import annotations

import re

from tako_backups.core.layout import backup_prefix, is_backup_id, new_backup_id


def test_prefix_matches_tako_example() -> None:
    assert backup_prefix("demo", "production", "la.1") == "_tako/backups/demo/production/la-1/"


def test_backup_id_format() -> None:
    bid = new_backup_id(1710000000)
    assert re.fullmatch(r"b1710000000-[A-Za-z0-9_-]{8}", bid)
    assert is_backup_id(bid)
    assert not is_backup_id("b1710000000-short")
    assert not is_backup_id("../index")
    assert len({new_backup_id(1) for _ in range(50)}) == 50
