"""Restore drills: prove a backup restores, without touching live data.

A drill runs the offline verification (download, SHA-256, AES-GCM tag, safe extraction into a
scratch folder, ``PRAGMA integrity_check`` on every SQLite file), then compares what it
extracted with the totals the manifest's extras record (file count, bytes, SQLite files) when
the manifest has them. The time it took is the measured recovery time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import IntegrityError, TakoError
from ..models import BackupInfo, BackupKey
from ..primitives.json_shapes import check_fields
from ..progress import NO_PROGRESS, Progress
from ..storage.base import ObjectStore
from .verify import VerifyReport, verify_backup

__all__ = ["DrillResult", "check_totals", "run_drill"]


@dataclass(frozen=True)
class DrillResult:
    """One drill: which backup, when it started (unix seconds), how long it took, and whether it
    passed; ``message`` says why it failed. ``source`` says which copy was read (``primary`` or
    ``copy``) when the app has a second copy; a drill that passed on the copy after the primary
    failed keeps the primary's failure in ``message``."""

    backup_id: str
    at_unix_secs: int
    seconds: float
    ok: bool
    message: str | None = None
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"backup_id": self.backup_id, "at_unix_secs": self.at_unix_secs,
                               "seconds": round(self.seconds, 3), "ok": self.ok}
        if self.message is not None:
            out["message"] = self.message
        if self.source is not None:
            out["source"] = self.source
        return out

    @classmethod
    def from_dict(cls, obj: Any) -> DrillResult:
        """Raises FormatError for anything but the shape :meth:`to_dict` writes."""
        d = check_fields(obj, "Drill result",
                         {"backup_id": str, "at_unix_secs": int, "seconds": (int, float), "ok": bool},
                         {"message": (str, type(None)), "source": (str, type(None))})
        return cls(d["backup_id"], d["at_unix_secs"], float(d["seconds"]), d["ok"], d.get("message"),
                   d.get("source"))


def check_totals(info: BackupInfo, report: VerifyReport) -> None:
    """Compare an extraction with the manifest's extras (nothing to compare without extras).

    Raises IntegrityError naming what differs.
    """
    extras = info.extras
    if extras is None:
        return
    if (report.files, report.bytes) != (extras.files, extras.bytes):
        raise IntegrityError(
            f"Backup {info.id} restored {report.files} files ({report.bytes} bytes) but its manifest "
            f"records {extras.files} files ({extras.bytes} bytes).")
    if sorted(report.sqlite_files) != sorted(extras.sqlite_files):
        missing = sorted(set(extras.sqlite_files) - set(report.sqlite_files))
        extra = sorted(set(report.sqlite_files) - set(extras.sqlite_files))
        detail = f"missing {', '.join(missing)}" if missing else f"unexpected {', '.join(extra)}"
        raise IntegrityError(f"Backup {info.id} restored other SQLite files than its manifest records "
                             f"({detail}).")


def run_drill(
    store: ObjectStore, info: BackupInfo, keys: Iterable[BackupKey], scratch_parent: Path, *,
    clock: Callable[[], float] = time.time, progress: Progress = NO_PROGRESS,
) -> DrillResult:
    """Drill ``info``: restore it into a private folder under ``scratch_parent`` (always removed),
    check everything and compare with the manifest. Never raises a TakoError: a failure is a
    result with ``ok`` False and the error's message. An OSError (scratch disk) is a failure too.
    """
    at = int(clock())
    started = time.monotonic()
    try:
        with store.open_read(info.archive_key) as body:
            report = verify_backup(body, info, keys, scratch_parent, progress)
        check_totals(info, report)
    except TakoError as exc:
        return DrillResult(info.id, at, time.monotonic() - started, False, str(exc))
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        message = f"Could not write the drill's scratch files{where}: {exc.strerror or exc}."
        return DrillResult(info.id, at, time.monotonic() - started, False, message)
    return DrillResult(info.id, at, time.monotonic() - started, True)
