from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tako_backups.core import swap as swap_mod
from tako_backups.core.snapshot import is_excluded, snapshot_sqlite, walk
from tako_backups.core.swap import clean_restored_tree, swap_tree
from tako_backups.errors import RestoreError


def _db(path: Path, rows: int = 3, wal: bool = True) -> sqlite3.Connection:
    conn = sqlite3.connect(path)
    if wal:
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(rows)])
    conn.commit()
    return conn


def test_walk_skips_companions_excluded_dbs_and_special_files(tmp_path: Path) -> None:
    root = tmp_path
    (root / "app" / "sub").mkdir(parents=True)
    (root / "tako").mkdir()
    keep = _db(root / "app" / "app.db")  # open: -wal and -shm exist
    chans = _db(root / "tako" / "channels.sqlite")
    cache = _db(root / "tako" / "cache.sqlite")
    wf = _db(root / "tako" / "workflows.sqlite")
    (root / "app" / "notes-wal").write_text("not a companion: no database called notes")
    os.mkfifo(root / "app" / "fifo")
    (root / "app" / "sub" / "f.txt").write_text("x")
    os.symlink("/etc/passwd", root / "app" / "abs-link")
    entries = {e.arcname: e.kind for e in walk(root)}
    for c in (keep, chans, cache, wf):
        c.close()
    assert entries == {
        "app": "dir", "app/abs-link": "symlink", "app/app.db": "sqlite", "app/notes-wal": "file",
        "app/sub": "dir", "app/sub/f.txt": "file", "tako": "dir",
        "tako/workflows.sqlite": "sqlite",
    }


def test_excluded_names() -> None:
    assert is_excluded("tako/channels.sqlite") and is_excluded("tako/cache.sqlite-wal")
    assert not is_excluded("app/channels.sqlite") and not is_excluded("tako/workflows.sqlite")


def test_snapshot_includes_uncheckpointed_wal_content(tmp_path: Path) -> None:
    conn = _db(tmp_path / "a.db", rows=100)
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(100, 200)])
    conn.commit()
    assert (tmp_path / "a.db-wal").stat().st_size > 0
    snapshot_sqlite(tmp_path / "a.db", tmp_path / "copy.db")
    conn.close()
    copy = sqlite3.connect(tmp_path / "copy.db")
    assert copy.execute("SELECT count(*) FROM t").fetchone() == (200,)
    assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_a_snapshot_copy_is_never_synced_or_journaled(tmp_path: Path) -> None:
    """The copy is scratch, removed once archived: writing it must not force it out to disk (an
    fsync of a 400 MB copy is seconds of I/O on a small server's disk) nor write a journal."""
    conn = _db(tmp_path / "a.db", rows=5_000)
    trace = tmp_path / "strace.txt"
    code = ("import sys; from pathlib import Path; from tako_backups.core.snapshot import snapshot_sqlite; "
            "snapshot_sqlite(Path(sys.argv[1]), Path(sys.argv[2]))")
    subprocess.run(["strace", "-f", "-y", "-e", "trace=openat,fsync,fdatasync,sync_file_range",
                    "-o", str(trace), sys.executable, "-c", code,
                    str(tmp_path / "a.db"), str(tmp_path / "copy.db")], check=True)
    conn.close()
    copy = sqlite3.connect(tmp_path / "copy.db")
    assert copy.execute("SELECT count(*) FROM t").fetchone() == (5_000,)
    assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    lines = [line for line in trace.read_text().splitlines() if "copy.db" in line]
    assert any("openat" in line for line in lines)  # the trace did see the copy being written
    assert not [line for line in lines if "sync" in line.split("(", 1)[0] or "copy.db-journal" in line]


def test_snapshot_of_corrupt_database_names_the_file(tmp_path: Path) -> None:
    from tako_backups.core.snapshot import SnapshotError

    bad = tmp_path / "bad.db"
    bad.write_bytes(b"SQLite format 3\x00" + b"\xff" * 200)
    with pytest.raises(SnapshotError, match="bad.db"):
        snapshot_sqlite(bad, tmp_path / "copy.db")


def test_swap_moves_trees_and_keeps_the_old_aside(tmp_path: Path) -> None:
    live, staged, aside = tmp_path / "data", tmp_path / "staged", tmp_path / "aside"
    live.mkdir()
    (live / "old").write_text("old")
    staged.mkdir()
    (staged / "new").write_text("new")
    swap_tree(live, staged, aside)
    assert (live / "new").read_text() == "new" and not (live / "old").exists()
    assert (aside / "old").read_text() == "old" and not staged.exists()


def test_swap_rolls_back_when_the_move_fails(tmp_path: Path, monkeypatch) -> None:
    live, staged, aside = tmp_path / "data", tmp_path / "staged", tmp_path / "aside"
    live.mkdir()
    (live / "old").write_text("old")
    staged.mkdir()
    (staged / "new").write_text("new")
    real_rename = os.rename

    def flaky(src, dst):  # type: ignore[no-untyped-def]
        if Path(src) == staged:
            raise OSError(28, "No space left on device")
        return real_rename(src, dst)

    monkeypatch.setattr(swap_mod.os, "rename", flaky)
    with pytest.raises(RestoreError, match="No space left on device"):
        swap_tree(live, staged, aside)
    assert (live / "old").read_text() == "old" and not (live / "new").exists()
    assert not aside.exists() and (staged / "new").exists()


def test_clean_restored_tree_drops_channels_cache_and_workflow_wal(tmp_path: Path) -> None:
    tako = tmp_path / "tako"
    tako.mkdir()
    for name in ("channels.sqlite", "channels.sqlite-wal", "cache.sqlite", "cache.sqlite-shm",
                 "workflows.sqlite", "workflows.sqlite-wal", "workflows.sqlite-shm"):
        (tako / name).write_text("x")
    clean_restored_tree(tmp_path)
    assert sorted(p.name for p in tako.iterdir()) == ["workflows.sqlite"]
