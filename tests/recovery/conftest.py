"""Fixtures for the recovery tests: a small data tree with a SQLite database and backup keys
(the SSH key for signed calls comes from tests/conftest.py)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from tako_backups.models import BackupKey


def make_tree(root: Path, notes: int = 40) -> Path:
    """``root`` with app/ (notes.db with ``notes`` rows and a ``tags`` table, two uploads) and
    tako/ (workflows.sqlite)."""
    (root / "app" / "uploads").mkdir(parents=True)
    (root / "tako").mkdir(exist_ok=True)
    (root / "app" / "uploads" / "a.txt").write_text("first upload\n")
    (root / "app" / "uploads" / "b.bin").write_bytes(bytes(range(256)) * 8)
    conn = sqlite3.connect(root / "app" / "notes.db")
    conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    conn.execute("CREATE TABLE tags (name TEXT)")
    conn.executemany("INSERT INTO notes (body) VALUES (?)", [(f"note {i}",) for i in range(notes)])
    conn.executemany("INSERT INTO tags VALUES (?)", [("red",), ("blue",)])
    conn.commit()
    conn.close()
    conn = sqlite3.connect(root / "tako" / "workflows.sqlite")
    conn.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY)")
    conn.commit()
    conn.close()
    return root


def sql(db: Path, statement: str, *args: object) -> None:
    conn = sqlite3.connect(db)
    conn.execute(statement, args)
    conn.commit()
    conn.close()


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "data")


@pytest.fixture
def new_key() -> BackupKey:
    return BackupKey("backup-key-fedcba9876543210", os.urandom(32))
