#!/usr/bin/env python3
"""notes-app: a tiny app that keeps writing data under $TAKO_DATA_DIR (standard library only).

Every NOTES_INTERVAL seconds (default 0.05) it commits one row to the SQLite database notes.db
(WAL mode), and every 10th row it also writes uploads/note-<id>.txt (temp file, fsync, rename).
SIGTERM or SIGINT: finish the current row, close the database, exit 0.

    TAKO_DATA_DIR=/tmp/notes python3 app.py            # run
    TAKO_DATA_DIR=/tmp/notes python3 app.py --count    # print the number of rows
    python3 app.py --count /tmp/notes                  # same, naming the data dir
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path

UPLOAD_EVERY = 10
SCHEMA = "CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT, created_at REAL)"


def fail(message: str) -> int:
    print(f"notes-app: {message}", file=sys.stderr)
    return 2


def count_rows(data_dir: Path) -> int:
    db = data_dir / "notes.db"
    if not db.exists():
        return 0
    conn = sqlite3.connect(db, timeout=10)
    try:
        conn.execute("PRAGMA query_only = 1")
        return int(conn.execute("SELECT count(*) FROM notes").fetchone()[0])
    finally:
        conn.close()


def write_upload(uploads: Path, note_id: int, body: str) -> None:
    final = uploads / f"note-{note_id}.txt"
    temp = uploads / f".note-{note_id}.txt.{os.getpid()}.tmp"
    with open(temp, "w", encoding="utf-8") as f:
        f.write(body + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, final)
    dir_fd = os.open(uploads, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def run(data_dir: Path, interval: float) -> int:
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    instance = os.environ.get("TAKO_INSTANCE", "0")
    uploads = data_dir / "uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(data_dir / "notes.db", timeout=10)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(SCHEMA)
        conn.commit()
        while not stopping:
            body = f"note from instance {instance} at {time.time():.3f}"
            with conn:
                note_id = conn.execute(
                    "INSERT INTO notes (body, created_at) VALUES (?, ?)", (body, time.time())
                ).lastrowid
            if note_id is not None and note_id % UPLOAD_EVERY == 0:
                write_upload(uploads, note_id, body)
            wake_at = time.monotonic() + interval
            while not stopping and (left := wake_at - time.monotonic()) > 0:
                time.sleep(min(left, 0.05))
    finally:
        conn.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="notes-app", description="Keep writing notes under $TAKO_DATA_DIR.")
    parser.add_argument(
        "--count",
        nargs="?",
        const="",
        metavar="DATA_DIR",
        help="print the number of rows (in DATA_DIR, default $TAKO_DATA_DIR) and exit",
    )
    args = parser.parse_args(argv)
    data = args.count or os.environ.get("TAKO_DATA_DIR", "")
    if not data:
        return fail("TAKO_DATA_DIR is not set; run it under tako-server or set TAKO_DATA_DIR=/path/to/data")
    data_dir = Path(data)
    if args.count is not None:
        try:
            print(count_rows(data_dir))
        except sqlite3.Error as exc:
            return fail(f"cannot read {data_dir / 'notes.db'}: {exc}")
        return 0
    try:
        interval = float(os.environ.get("NOTES_INTERVAL", "0.05"))
    except ValueError:
        interval = -1.0
    if not interval >= 0:
        return fail(f"NOTES_INTERVAL must be a number of seconds >= 0, got {os.environ['NOTES_INTERVAL']!r}")
    if not data_dir.is_dir():
        return fail(f"TAKO_DATA_DIR {data_dir} is not a directory; create it first")
    return run(data_dir, interval)


if __name__ == "__main__":
    sys.exit(main())
