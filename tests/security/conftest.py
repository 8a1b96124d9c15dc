"""Fixtures for the reliability and security suite: SSH keys, and backup settings on a bucket of
the session's moto server (loopback) that a tako-server subprocess can reach."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tako_backups.models import BackupBinding
from tako_backups.remote.signing import FileSigner
from tests.server.helpers import binding, make_key, storage
from tests.servers import MotoServer


@pytest.fixture(scope="session")
def key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ssh")


@pytest.fixture(scope="session")
def signer(key_dir: Path) -> FileSigner:
    """The authorized client key."""
    return make_key(key_dir / "id_ed25519", "tester@laptop")


@pytest.fixture(scope="session")
def stranger(key_dir: Path) -> FileSigner:
    """A valid key that was never authorized."""
    return make_key(key_dir / "stranger", "stranger@elsewhere")


@pytest.fixture
def moto_settings(moto_server: MotoServer) -> Iterator[BackupBinding]:
    """Backup settings (fresh key, retention 30) on an empty bucket of the session's moto server."""
    bucket = moto_server.lease_bucket()
    yield binding(storage(bucket=bucket, endpoint=moto_server.endpoint, access_key=moto_server.access_key,
                          secret_key=moto_server.secret_key))
    moto_server.release_bucket(bucket)
