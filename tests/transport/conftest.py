"""Fixtures for the transport tests: a developer (HOME with ~/.ssh/id_ed25519, TAKO_HOME, an app
folder) whose key the real servers authorize, and a leased SeaweedFS bucket."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.developer import Developer, enter_developer
from tests.support.s3_servers import SeaweedFS


@pytest.fixture
def dev(tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch) -> Developer:
    return enter_developer(tmp_path, home, monkeypatch)


@pytest.fixture
def bucket(seaweedfs: SeaweedFS) -> Iterator[str]:
    yield from seaweedfs.leased_bucket()


def set_credentials(dev: Developer, seaweedfs: SeaweedFS) -> None:
    result = dev.tako("storages", "credentials", "backups", "--env", "production",
                      "--access-key-id", seaweedfs.access_key, "--secret-access-key", seaweedfs.secret_key,
                      "--expires-on", "never")
    assert result.exit_code == 0, result.output
