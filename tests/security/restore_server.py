"""The server side of a restore test: an in-process tako-server app (signed /rpc over ASGI, no
socket) whose app ``demo/production`` has live data, reading backups from a MemoryStore."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tako_backups.remote.signing import FileSigner
from tako_backups.server.app import create_app
from tako_backups.server.auth import RequestAuth
from tako_backups.server.cli import authorize_key
from tako_backups.server.paths import ServerPaths
from tako_backups.server.service import BackupService
from tako_backups.storage.memory import MemoryStore
from tests.server.helpers import APP, body, signed
from tests.support.asgi import AsgiClient

ServerSide = tuple[AsgiClient, ServerPaths, MemoryStore, Path]


def make_server_side(root: Path, signer: FileSigner) -> ServerSide:
    """(client, paths, bucket, live data dir) of a server under ``root`` that trusts ``signer``;
    the live tree holds ``app/notes.txt`` and ``tako/workflows.sqlite``."""
    paths = ServerPaths(root)
    paths.prepare()
    authorize_key(Path(f"{signer.path}.pub"), paths.root)
    store = MemoryStore()
    service = BackupService(paths, "la", store_factory=lambda binding: store)
    live = paths.ensure_data_dir("demo", "production")
    (live / "app" / "notes.txt").write_text("the live data\n")
    (live / "tako" / "workflows.sqlite").write_bytes(b"SQLite format 3\x00" + os.urandom(100))
    client = AsgiClient(create_app(service, RequestAuth.from_file(paths.authorized_keys)))
    return client, paths, store, live


def restore_call(client: AsgiClient, signer: FileSigner, backup_id: str, **fields: Any) -> Any:
    """The signed ``restore_backup`` of ``backup_id`` for ``demo/production``."""
    data = body("restore_backup", app=APP, backup_id=backup_id, **fields)
    return client.post("/rpc", content=data, headers=signed(signer, data))
