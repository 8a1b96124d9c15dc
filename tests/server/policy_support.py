"""What the policy, copy and notification tests share: buckets that can go down, a service over
them with a settable clock, and settings with our extensions."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tako_backups.errors import StorageError
from tako_backups.models import BackupBinding, StorageBinding
from tako_backups.policy import BackupPolicy, NotifySettings
from tako_backups.server.notify import Notifier
from tako_backups.server.paths import ServerPaths
from tako_backups.server.service import BackupService
from tako_backups.storage.base import ObjectInfo, PendingUpload
from tako_backups.storage.memory import MemoryStore, MemoryWriter
from tests.server.helpers import binding, storage

NOW = 1_796_119_200  # 2026-12-01T10:00:00Z
HOUR = 3_600
SECRET = "whsec-0123456789abcdef-policy"


class Bucket(MemoryStore):
    """A MemoryStore that can be taken down: then every call fails as an unreachable S3 does."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise StorageError("Could not connect to the endpoint URL (connection refused).")

    def open_writer(self, key: str, expected_size: int | None = None) -> MemoryWriter:
        return _Writer(self, key)

    def put_bytes(self, key: str, data: bytes, *args: Any, **kw: Any) -> None:
        self._check()
        super().put_bytes(key, data, *args, **kw)

    def get_bytes(self, key: str) -> bytes:
        self._check()
        return super().get_bytes(key)

    def head(self, key: str) -> ObjectInfo | None:
        self._check()
        return super().head(key)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        self._check()
        return super().list(prefix)

    def list_uploads(self, prefix: str) -> Iterator[PendingUpload]:
        self._check()
        return super().list_uploads(prefix)

    def delete(self, key: str) -> None:
        self._check()
        super().delete(key)

    def wipe(self) -> None:
        self.objects.clear()


class _Writer(MemoryWriter):
    def __init__(self, store: Bucket, key: str) -> None:
        super().__init__(store, key)
        self._bucket = store

    def write(self, data: bytes | memoryview) -> int:
        self._bucket._check()
        return super().write(data)


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_service(paths: ServerPaths, buckets: dict[str, Bucket], clock: Clock,
                 notifier: Notifier | None = None) -> BackupService:
    return BackupService(paths, "la", store_factory=lambda b: buckets[b.bucket], clock=clock,
                         notifier=notifier)


def extended(policy: BackupPolicy | None = None, *, copy: bool = True, webhook: str | None = None,
             secret: str | None = SECRET, expires_on: str | None = None,
             copy_expires_on: str | None = None) -> BackupBinding:
    """Settings to bucket ``main`` with, optionally, the copy in ``spare`` and a webhook."""
    base = binding(storage(bucket="main"))
    main = StorageBinding(**{**_fields(base.storage), "expires_on": expires_on})
    spare = StorageBinding(**{**_fields(storage(bucket="spare", endpoint="http://127.0.0.1:10")),
                              "expires_on": copy_expires_on})
    notify = None if webhook is None else NotifySettings(webhook_url=webhook, webhook_secret=secret)
    return BackupBinding(storage=main, backup_keys=base.backup_keys,
                         retention_days=policy.tako_retention_days if policy else 30, policy=policy,
                         copy=spare if copy else None, notify=notify)


def _fields(binding: StorageBinding) -> dict[str, Any]:
    return {name: getattr(binding, name) for name in binding.__dataclass_fields__}


def seed(paths: ServerPaths, rows: int = 30) -> Path:
    data = paths.ensure_data_dir("demo", "production")
    (data / "app" / "uploads").mkdir(exist_ok=True)
    (data / "app" / "uploads" / "a.txt").write_text("first upload\n")
    conn = sqlite3.connect(data / "app" / "notes.db")
    conn.execute("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT)")
    conn.executemany("INSERT INTO notes (body) VALUES (?)", [(f"note {i}",) for i in range(rows)])
    conn.commit()
    conn.close()
    return data
