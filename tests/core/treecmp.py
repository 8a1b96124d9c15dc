"""Compare data trees the way a user would: same files, bytes, modes, symlinks; SQLite by dump."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

SQLITE_HEADER = b"SQLite format 3\x00"


def sqlite_dump(path: Path) -> list[str]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def describe(root: Path, skip: tuple[str, ...] = ()) -> dict[str, object]:
    out: dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if rel in skip or any(rel.startswith(s + "-") for s in skip):
                continue
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode))
            else:
                data = path.read_bytes()
                if data[:16] == SQLITE_HEADER:
                    out[rel] = ("sqlite", stat.S_IMODE(st.st_mode), sqlite_dump(path))
                else:
                    out[rel] = ("file", stat.S_IMODE(st.st_mode), int(st.st_mtime), data)
    return out
