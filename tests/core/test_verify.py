from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tako_backups.core.verify import check_sqlite, verify_backup
from tako_backups.errors import IntegrityError
from tako_backups.models import BackupKey
from tako_backups.storage.memory import MemoryStore
from tests.support.backups import take_backup


def test_verify_reports_files_bytes_and_sqlite(memory_store: MemoryStore, dataset: Path,
                                                tmp_path: Path, key: BackupKey) -> None:
    info = take_backup(memory_store, dataset, key, work=tmp_path / "w", server="s").info
    report = verify_backup(memory_store.open_read(info.archive_key), info, [key], tmp_path / "v")
    assert report.sqlite_files == ["app/app.db", "tako/workflows.sqlite"]
    uploads = [p for p in (dataset / "app" / "uploads").rglob("*") if p.is_file()]
    assert report.files == len(uploads) + 2
    assert report.bytes >= sum(p.stat().st_size for p in uploads)
    assert list((tmp_path / "v").iterdir()) == []


def test_check_sqlite_catches_a_damaged_database(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    conn.execute("CREATE INDEX iv ON t(v)")
    conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, "v" * 300) for i in range(2000)])
    conn.commit()
    conn.close()
    check_sqlite(db, "x.db")
    data = bytearray(db.read_bytes())
    for off in range(4096 * 3, len(data) - 4096, 4096):
        data[off + 100: off + 140] = b"\x00" * 40
    db.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="SQLite file x.db failed integrity_check"):
        check_sqlite(db, "x.db")
