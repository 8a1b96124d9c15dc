"""Fixtures of the end-to-end suites: a real tako-server subprocess ``la`` and a leased SeaweedFS
bucket per module, and a developer (HOME with the authorized key, TAKO_HOME, an app folder) per
test. A module that needs another server or developer defines its own under the same name."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tako_backups.remote.signing import FileSigner
from tests.support.developer import Developer, enter_developer
from tests.support.s3_servers import SeaweedFS
from tests.support.tako_server import RunningServer, running_server


@pytest.fixture(scope="module")
def la(tmp_path_factory: pytest.TempPathFactory, signer: FileSigner) -> Iterator[RunningServer]:
    yield from running_server(tmp_path_factory.mktemp("la") / "tako", signer)


@pytest.fixture(scope="module")
def bucket(seaweedfs: SeaweedFS) -> Iterator[str]:
    yield from seaweedfs.leased_bucket()


@pytest.fixture
def dev(tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch) -> Developer:
    return enter_developer(tmp_path, home, monkeypatch)
