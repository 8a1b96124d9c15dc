"""Check a backup without a server: size, SHA-256, GCM tag, extraction and SQLite integrity."""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from ..errors import IntegrityError
from ..models import BackupInfo, BackupKey
from ..progress import NO_PROGRESS, Progress
from .extract import setid_note
from .pipeline import decrypt_and_extract, pick_key
from .snapshot import SQLITE_HEADER


@dataclass
class VerifyReport:
    backup_id: str
    files: int = 0
    bytes: int = 0
    sqlite_files: list[str] = field(default_factory=list)
    seconds: float = 0.0
    setid_cleared: tuple[str, ...] = ()  # files restored without their setuid/setgid bits

    def note(self) -> str | None:
        """The line to show about the extraction (see :func:`~.extract.setid_note`), or None."""
        return setid_note(self.setid_cleared)


def extract_verified(
    source: BinaryIO, info: BackupInfo, keys: Iterable[BackupKey], into: Path,
    progress: Progress = NO_PROGRESS,
) -> VerifyReport:
    """Extract into the empty folder ``into`` and check every SQLite file's integrity.

    ``into`` holds ``app/`` and ``tako/`` afterwards. Raises IntegrityError (checksum, tag or
    a SQLite file that fails ``PRAGMA integrity_check``), KeyNotFoundError, UnsafeArchiveError
    or FormatError; the caller decides what to do with ``into`` on failure.
    """
    started = time.monotonic()
    key = pick_key(info, keys)
    progress.start(f"Verifying {info.id}", info.size_bytes)
    extracted = decrypt_and_extract(source, info, key, into, progress)
    progress.finish()
    report = VerifyReport(info.id, setid_cleared=extracted.setid_cleared)
    for dirpath, _dirs, files in os.walk(into):
        for name in files:
            path = Path(dirpath) / name
            if path.is_symlink():
                continue
            report.files += 1
            report.bytes += path.stat().st_size
            with open(path, "rb") as f:
                is_db = f.read(16) == SQLITE_HEADER
            if is_db:
                rel = str(path.relative_to(into))
                check_sqlite(path, rel)
                report.sqlite_files.append(rel)
    report.sqlite_files.sort()
    report.seconds = time.monotonic() - started
    return report


def verify_backup(
    source: BinaryIO, info: BackupInfo, keys: Iterable[BackupKey], scratch_parent: Path,
    progress: Progress = NO_PROGRESS,
) -> VerifyReport:
    """Like :func:`extract_verified` into a private temp folder that is always removed."""
    scratch_parent.mkdir(parents=True, exist_ok=True)
    import tempfile

    scratch = Path(tempfile.mkdtemp(prefix=f"verify-{info.id}-", dir=scratch_parent))
    try:
        return extract_verified(source, info, keys, scratch, progress)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def check_sqlite(path: Path, name: str) -> None:
    """Raise IntegrityError unless ``PRAGMA integrity_check`` says ok."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = conn.execute("PRAGMA integrity_check").fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise IntegrityError(f"SQLite file {name} failed integrity_check: {exc}.") from None
    if rows != [("ok",)]:
        raise IntegrityError(f"SQLite file {name} failed integrity_check: {rows[0][0]}.")
