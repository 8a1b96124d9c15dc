"""Fixtures for the security suite: backup settings on a bucket of the session's moto server
(loopback) that a tako-server subprocess can reach. The SSH keys come from tests/conftest.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tako_backups.models import BackupBinding
from tests.server.helpers import binding, storage
from tests.servers import MotoServer


@pytest.fixture
def moto_settings(moto_server: MotoServer) -> Iterator[BackupBinding]:
    """Backup settings (fresh key, retention 30) on an empty bucket of the session's moto server."""
    bucket = moto_server.lease_bucket()
    yield binding(storage(bucket=bucket, endpoint=moto_server.endpoint, access_key=moto_server.access_key,
                          secret_key=moto_server.secret_key))
    moto_server.release_bucket(bucket)
