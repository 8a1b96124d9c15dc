"""Read-only checks of SQLite files the tests restored or backed up."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def integrity(db: Path) -> str:
    """``PRAGMA integrity_check`` of ``db``, opened read-only: ``"ok"`` when it is sound."""
    conn = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=10)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()
