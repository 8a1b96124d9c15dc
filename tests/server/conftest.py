"""Fixtures for the server tests: a data root with an authorized key, the service and the app."""

from __future__ import annotations

from pathlib import Path

import pytest

from tako_backups.remote.signing import FileSigner
from tako_backups.server.app import create_app
from tako_backups.server.auth import RequestAuth
from tako_backups.server.cli import authorize_key
from tako_backups.server.paths import ServerPaths
from tako_backups.server.service import BackupService
from tako_backups.storage.memory import MemoryStore
from tests.support.asgi import AsgiClient


@pytest.fixture
def paths(tmp_path: Path, signer: FileSigner) -> ServerPaths:
    paths = ServerPaths(tmp_path / "tako")
    paths.prepare()
    authorize_key(Path(f"{signer.path}.pub"), paths.root)
    return paths


@pytest.fixture
def service(paths: ServerPaths, memory_store: MemoryStore) -> BackupService:
    return BackupService(paths, "la", store_factory=lambda binding: memory_store)


@pytest.fixture
def client(service: BackupService, paths: ServerPaths) -> AsgiClient:
    return AsgiClient(create_app(service, RequestAuth.from_file(paths.authorized_keys)))
