"""Helpers for the server tests: backup settings, signed posts."""

from __future__ import annotations

import json
from typing import Any

from tako_backups.models import BackupBinding, BackupKey, StorageBinding
from tako_backups.remote.signing import FileSigner, sign_request
from tests.support.keys import new_backup_key

APP = "demo/production"
NO_SETTINGS = "Backups are not configured for demo/production."  # Tako's text
BUSY = "A backup or restore of app 'demo/production' is already running."


def storage(bucket: str = "backups", endpoint: str = "http://127.0.0.1:9",
            access_key: str = "AKIATESTACCESSKEY", secret_key: str = "s3cr3t-never-shown") -> StorageBinding:
    return StorageBinding(bucket=bucket, endpoint=endpoint, region="us-east-1", access_key_id=access_key,
                          secret_access_key=secret_key, force_path_style=True)


def binding(store: StorageBinding | None = None, keys: list[BackupKey] | None = None,
            retention_days: int = 30) -> BackupBinding:
    return BackupBinding(storage=store or storage(), backup_keys=keys or [new_backup_key()],
                         retention_days=retention_days)


def body(command: str, **fields: Any) -> bytes:
    return json.dumps({"command": command, **fields}).encode()


def signed(signer: FileSigner, data: bytes, **kw: Any) -> dict[str, str]:
    return {"content-type": "application/json", **sign_request(signer, data, **kw)}
