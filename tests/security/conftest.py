"""Fixtures for the security suite: backup settings on a bucket of the session's moto server
(loopback) that a tako-server subprocess can reach, and an in-process server restoring from a
MemoryStore. The SSH keys come from tests/conftest.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tako_backups.models import BackupBinding
from tako_backups.remote.signing import FileSigner
from tests.security.restore_server import ServerSide, make_server_side
from tests.server.helpers import binding, storage
from tests.support.s3_servers import MotoServer


@pytest.fixture
def moto_settings(moto_server: MotoServer) -> Iterator[BackupBinding]:
    """Backup settings (fresh key, retention 30) on an empty bucket of the session's moto server."""
    bucket = moto_server.lease_bucket()
    yield binding(storage(bucket=bucket, endpoint=moto_server.endpoint, access_key=moto_server.access_key,
                          secret_key=moto_server.secret_key))
    moto_server.release_bucket(bucket)


@pytest.fixture
def server_side(tmp_path: Path, signer: FileSigner) -> ServerSide:
    """(client, paths, bucket, live data dir) of an in-process server under ``tmp_path/tako``."""
    return make_server_side(tmp_path / "tako", signer)
