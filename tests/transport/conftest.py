"""Fixtures for the transport tests: a developer (HOME with ~/.ssh/id_ed25519, TAKO_HOME, an app
folder) whose key the real servers authorize, and a leased SeaweedFS bucket."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tako_backups.remote.signing import FileSigner
from tests.e2e.support import Developer, developer_home, enter_developer
from tests.servers import SeaweedFS


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return developer_home(tmp_path_factory.mktemp("home"))


@pytest.fixture(scope="module")
def dev_key(home: Path) -> FileSigner:
    return FileSigner.load(home / ".ssh" / "id_ed25519")


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
