"""What a restore would change: compare the live data tree with a staged one.

Files are compared by type, size and SHA-256 (symlinks by target). SQLite databases are compared
by content, not bytes (a snapshot need not match the live file byte for byte: WAL, free pages): their
schema and, per table, the row count and an order-independent digest of the rows. Their
``-wal``/``-shm``/``-journal`` companions belong to the database and are not listed, nor are
the channels and cache databases, which a restore always drops.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .snapshot import COMPANION_SUFFIXES, SQLITE_HEADER, TOP_LEVEL, is_excluded

__all__ = ["FileChange", "TableDelta", "TreeDiff", "compare_trees"]

READ_CHUNK = 1 << 20
LIST_LIMIT = 500
_MOD = 1 << 256


@dataclass(frozen=True)
class FileChange:
    path: str
    size_before: int | None
    size_after: int | None

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "size_before": self.size_before, "size_after": self.size_after}


@dataclass(frozen=True)
class TableDelta:
    """Row counts of one table before and after (None: the table or database is not there)."""

    file: str
    table: str
    before: int | None
    after: int | None

    @property
    def delta(self) -> int:
        return (self.after or 0) - (self.before or 0)

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "table": self.table, "before": self.before, "after": self.after,
                "delta": self.delta}


@dataclass
class TreeDiff:
    added: list[FileChange] = field(default_factory=list)
    removed: list[FileChange] = field(default_factory=list)
    changed: list[FileChange] = field(default_factory=list)
    unchanged: int = 0
    tables: list[TableDelta] = field(default_factory=list)

    def to_dict(self, limit: int = LIST_LIMIT) -> dict[str, Any]:
        """JSON-ready; each file list holds at most ``limit`` entries (``counts`` has the totals)."""
        lists = {"added": self.added, "removed": self.removed, "changed": self.changed}
        return {
            **{name: [c.to_dict() for c in items[:limit]] for name, items in lists.items()},
            "counts": {**{name: len(items) for name, items in lists.items()}, "unchanged": self.unchanged},
            "truncated": any(len(items) > limit for items in lists.values()),
            "tables": [t.to_dict() for t in self.tables],
        }


@dataclass(frozen=True)
class _Entry:
    kind: str  # file | sqlite | symlink
    size: int
    path: Path


def compare_trees(live: Path, staged: Path) -> TreeDiff:
    """What replacing ``live`` by ``staged`` changes (both hold ``app/`` and ``tako/``; a missing
    ``live`` counts as empty). Raises OSError when a file cannot be read."""
    before, after = _entries(live), _entries(staged)
    diff = TreeDiff()
    dbs = _Summaries()
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old is None and new is not None:
            diff.added.append(FileChange(name, None, new.size))
            diff.tables.extend(_table_deltas(dbs, name, None, new))
        elif new is None and old is not None:
            diff.removed.append(FileChange(name, old.size, None))
            diff.tables.extend(_table_deltas(dbs, name, old, None))
        elif old is not None and new is not None:
            if _same(dbs, old, new):
                diff.unchanged += 1
            else:
                diff.changed.append(FileChange(name, old.size, new.size))
                diff.tables.extend(_table_deltas(dbs, name, old, new))
    return diff


def _entries(root: Path) -> dict[str, _Entry]:
    found: dict[str, _Entry] = {}
    for top in TOP_LEVEL:
        base = root / top
        if not base.is_dir() or base.is_symlink():
            continue
        for dirpath, dirnames, filenames in os.walk(base):
            folder = Path(dirpath)
            for name in sorted(filenames) + [d for d in dirnames if (folder / d).is_symlink()]:
                path = folder / name
                rel = path.relative_to(root).as_posix()
                if is_excluded(rel):
                    continue
                st = path.lstat()
                if stat.S_ISLNK(st.st_mode):
                    found[rel] = _Entry("symlink", 0, path)
                elif stat.S_ISREG(st.st_mode):
                    found[rel] = _Entry("sqlite" if _is_sqlite(path) else "file", st.st_size, path)
    for rel in [r for r in found if r.endswith((*COMPANION_SUFFIXES, "-journal"))]:
        base_name = rel.rsplit("-", 1)[0]
        if base_name in found and found[base_name].kind == "sqlite":
            del found[rel]
    return found


def _is_sqlite(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(16) == SQLITE_HEADER


class _Summaries(dict[Path, "tuple[list[str], dict[str, tuple[int, int]]]"]):
    """Each database is read once per comparison."""

    def __missing__(self, path: Path) -> tuple[list[str], dict[str, tuple[int, int]]]:
        self[path] = _db_summary(path)
        return self[path]


def _same(dbs: _Summaries, old: _Entry, new: _Entry) -> bool:
    if old.kind != new.kind:
        return False
    if old.kind == "symlink":
        return os.readlink(old.path) == os.readlink(new.path)
    if old.kind == "sqlite":
        return dbs[old.path] == dbs[new.path]
    return old.size == new.size and _sha256(old.path) == _sha256(new.path)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(READ_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _table_deltas(dbs: _Summaries, name: str, old: _Entry | None, new: _Entry | None) -> list[TableDelta]:
    before = dbs[old.path][1] if old is not None and old.kind == "sqlite" else {}
    after = dbs[new.path][1] if new is not None and new.kind == "sqlite" else {}
    return [TableDelta(name, table, before[table][0] if table in before else None,
                       after[table][0] if table in after else None)
            for table in sorted(set(before) | set(after))]


def _db_summary(path: Path) -> tuple[list[str], dict[str, tuple[int, int]]]:
    """(schema statements, table -> (row count, order-independent digest of its rows)).

    Read in one read-only transaction, so a live database being written gives one consistent view.
    A file SQLite cannot read counts as an empty database with the schema ``["<unreadable>"]``.
    """
    try:
        conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True, timeout=10,
                               isolation_level=None)
    except sqlite3.Error:
        return ["<unreadable>"], {}
    try:
        conn.execute("BEGIN")
        schema = sorted(sql for (sql,) in conn.execute(
            "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL"))
        tables = [n for (n,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        summary = {table: _table_digest(conn, table) for table in sorted(tables)}
        conn.execute("ROLLBACK")
        return schema, summary
    except sqlite3.Error:
        return ["<unreadable>"], {}
    finally:
        conn.close()


def _table_digest(conn: sqlite3.Connection, table: str) -> tuple[int, int]:
    quoted = '"' + table.replace('"', '""') + '"'
    count, total = 0, 0
    for row in conn.execute(f"SELECT * FROM {quoted}"):
        count += 1
        total = (total + int.from_bytes(hashlib.sha256(repr(row).encode()).digest(), "big")) % _MOD
    return count, total
