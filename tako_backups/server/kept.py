"""The data tree a restore replaced, kept on disk after the swap: the safety copy of the restore.

The swap moves the live tree aside with a rename; instead of deleting it, tako-server keeps it at
``kept/{name}.{env}/aside/`` with ``kept/{name}.{env}/record.json`` (a :class:`KeptRecord`:
when it was kept, what replaced it, the grace period, where its upload to the bucket stands).
It is the state of the app's data at the exact moment of the swap, and it costs no copy.

One kept tree per app at most. A restore writes the record into its staging folder *before* the
swap, so a staging folder that holds ``aside/`` and ``record.json`` once the swap is done is a
kept tree waiting to be moved into ``kept/`` (:meth:`KeptTrees.install`, also at the next start).
A kept folder without its record is never used: dropping one removes the record first, then the
tree, so a crash half-way leaves a folder that the next start removes.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ..core.swap import remove_tree
from ..errors import FormatError, RestoreError
from ..primitives.atomic_files import fsync_dir, write_atomic
from ..primitives.json_shapes import check_fields
from ..primitives.names import check_app_id
from .paths import PRIVATE_MODE, ServerPaths

__all__ = ["DEFAULT_KEEP_HOURS", "RECORD", "TREE", "UPLOAD_STATES", "Kept", "KeptRecord", "KeptTrees",
           "write_record"]

log = logging.getLogger(__name__)

RECORD = "record.json"
TREE = "aside"
DEFAULT_KEEP_HOURS = 24.0
PENDING, FAILED, UPLOADED, VERIFIED = "pending", "failed", "uploaded", "verified"
UPLOAD_STATES = (PENDING, FAILED, UPLOADED, VERIFIED)


@dataclass(frozen=True)
class KeptRecord:
    """What is known about a kept tree. ``replaced_by`` is the backup id whose restore replaced
    it (``undo`` for an undo); ``upload`` is ``pending``, ``failed`` (``message``, retried at
    ``retry_at_unix_secs``), ``uploaded`` (recorded as ``backup_id``, not yet read back) or
    ``verified``. It holds no secret."""

    app: str
    kept_at_unix_secs: int
    replaced_by: str
    keep_hours: float = DEFAULT_KEEP_HOURS
    upload: str = PENDING
    backup_id: str | None = None
    message: str | None = None
    attempts: int = 0
    retry_at_unix_secs: int = 0
    verified_at_unix_secs: int | None = None

    @property
    def drop_at_unix_secs(self) -> int:
        """When the grace period ends (the tree is dropped then, once its upload verified)."""
        return self.kept_at_unix_secs + int(self.keep_hours * 3600)

    def in_bucket(self) -> bool:
        """Whether its upload was recorded and read back intact."""
        return self.upload == VERIFIED

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=2, sort_keys=True).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes) -> KeptRecord:
        """Raises FormatError for a malformed record."""
        try:
            obj: Any = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise FormatError("The kept-tree record is not valid JSON.") from None
        number = (int, float)
        fields = check_fields(obj, "Kept-tree record", {
            "app": str, "kept_at_unix_secs": int, "replaced_by": str, "keep_hours": number,
            "upload": str, "attempts": int, "retry_at_unix_secs": int,
        }, {"backup_id": (str, type(None)), "message": (str, type(None)),
            "verified_at_unix_secs": (int, type(None))})
        if fields["upload"] not in UPLOAD_STATES or fields["keep_hours"] < 0:
            raise FormatError("Kept-tree record has an unknown upload state or a negative grace period.")
        check_app_id(fields["app"])
        return cls(**{**fields, "keep_hours": float(fields["keep_hours"])})

    def with_upload(self, upload: str, **changes: Any) -> KeptRecord:
        return replace(self, upload=upload, **changes)


@dataclass(frozen=True)
class Kept:
    """A kept tree on disk: its folder, its ``aside/`` tree and its record."""

    folder: Path
    record: KeptRecord

    @property
    def tree(self) -> Path:
        return self.folder / TREE


def write_record(folder: Path, record: KeptRecord) -> None:
    """Write ``folder/record.json`` atomically (0600). Raises OSError."""
    write_atomic(folder / RECORD, record.to_json(), mode=0o600)


class KeptTrees:
    """The kept trees under ``{root}/kept/``. Not locked: callers serialize per app (the app's
    lock for swaps, the upload thread for record updates)."""

    def __init__(self, paths: ServerPaths) -> None:
        self.root = paths.root / "kept"

    def folder(self, app: str) -> Path:
        name, env = check_app_id(app)
        return self.root / f"{name}.{env}"

    def get(self, app: str) -> Kept | None:
        """The app's kept tree, or None (none, no tree, or a damaged record, which is logged)."""
        folder = self.folder(app)
        try:
            record = KeptRecord.from_json((folder / RECORD).read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, FormatError) as exc:
            log.error("ignoring the kept tree at %s: its record is unreadable (%s)", folder, exc)
            return None
        if not (folder / TREE).is_dir() or record.app != app:
            return None
        return Kept(folder, record)

    def update(self, app: str, record: KeptRecord) -> None:
        """Rewrite the record of the app's kept tree (when it is still there). Raises OSError."""
        folder = self.folder(app)
        if (folder / RECORD).exists():
            write_record(folder, record)

    def install(self, staging: Path, app: str) -> Path:
        """Make ``staging`` (holding ``aside/`` and ``record.json``, the swap done) the app's kept
        folder, dropping the one there. Raises RestoreError when the one there holds a tree that
        is not safely in the bucket yet (it is then left as it is), OSError when renaming fails."""
        current = self.get(app)
        if current is not None and not current.record.in_bucket():
            raise RestoreError(f"The kept tree at {current.folder} is not in the bucket yet; "
                               f"the newer one stays at {staging}.")
        target = self.folder(app)
        self.drop(app, "a newer restore replaced it")
        self.root.mkdir(mode=PRIVATE_MODE, parents=True, exist_ok=True)
        os.rename(staging, target)
        fsync_dir(self.root)
        fsync_dir(staging.parent)
        return target

    def drop(self, app: str, why: str) -> bool:
        """Remove the app's kept folder: the record first (so a crash half-way leaves an unused
        folder), then the tree. Returns whether there was one. Never raises."""
        folder = self.folder(app)
        if not folder.exists():
            return False
        try:
            (folder / RECORD).unlink(missing_ok=True)
            fsync_dir(folder)
        except OSError as exc:
            log.error("could not drop the kept tree at %s: %s", folder, exc)
            return True
        remove_tree(folder)
        log.info("dropped the kept tree of %s (%s)", app, why)
        return True

    def recover(self) -> list[str]:
        """At start: remove kept folders that have no readable record or no tree (a drop a crash
        cut short); keep the others. Returns what was done, one line each. Never raises."""
        done: list[str] = []
        if not self.root.is_dir():
            return done
        for folder in sorted(self.root.iterdir()):
            app = _app_of(folder.name)
            if app is not None and self.get(app) is not None and folder == self.folder(app):
                done.append(f"kept {folder}")
                continue
            remove_tree(folder)
            log.warning("removed %s: a kept tree without its record or tree", folder)
            done.append(f"removed {folder}")
        return done

    def apps(self) -> list[str]:
        """The apps that have a kept tree."""
        if not self.root.is_dir():
            return []
        found = (_app_of(folder.name) for folder in sorted(self.root.iterdir()))
        return [app for app in found if app is not None and self.get(app) is not None]


def _app_of(folder_name: str) -> str | None:
    name, _, env = folder_name.partition(".")
    try:
        name, env = check_app_id(f"{name}/{env}")
    except FormatError:
        return None
    return f"{name}/{env}"
