"""Helpers for the server tests: SSH keys from ssh-keygen, backup settings, signed posts."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
from pathlib import Path
from typing import Any

import httpx

from tako_backups.models import BackupBinding, BackupKey, StorageBinding
from tako_backups.remote.signing import FileSigner, sign_request

SSH_KEYGEN = "/usr/bin/ssh-keygen"
APP = "demo/production"
NO_SETTINGS = "Backups are not configured for demo/production."  # Tako's text
BUSY = "A backup or restore of app 'demo/production' is already running."


def make_key(path: Path, comment: str = "tester@test") -> FileSigner:
    """An ed25519 key pair written by ssh-keygen at ``path`` (+ ``.pub``), loaded as a signer."""
    subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                   check=True, capture_output=True)
    return FileSigner.load(path)


def new_backup_key() -> BackupKey:
    return BackupKey("backup-key-" + secrets.token_hex(8), os.urandom(32))


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


class AsgiClient:
    """A tiny synchronous client for an ASGI app, over httpx.ASGITransport (no socket)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def post(self, path: str, content: bytes, headers: dict[str, str]) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
                return await client.post(path, content=content, headers=headers)

        return asyncio.run(send())
