"""Shared server and store fixtures.

- ``seaweedfs`` / ``moto_server``: one real S3 server each per test session (loopback only).
- ``seaweed_store`` / ``moto_store`` / ``memory_store``: a store on a fresh, empty bucket.
- ``store``: the same, parametrized over memory, moto and SeaweedFS (the contract suite).
- ``make_store``: a factory, ``make_store(kind, **s3_kwargs)``, for stores with tuned part sizes.
- ``home`` / ``signer`` / ``stranger``: a developer's HOME holding the authorized client SSH key at
  ~/.ssh/id_ed25519 (the one `tako` finds), that key, and a key never authorized (per session).
- ``key``: a backup key (BackupKey). Fixture names mean the same thing in every suite
  (tests/support/keys.py); what many suites share lives in tests/support/.

Run as root, the session's temp folders live in a folder of their own (``pytest-tako-*`` in the
temp dir, removed after a passing run): `tako-server` then runs apps as uids of their own, which
must pass the folders above a test's data dir (``let_apps_reach``), and pytest makes its shared
``pytest-of-root`` private again whenever another session starts.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tako_backups.models import BackupKey
from tako_backups.remote.signing import FileSigner
from tako_backups.storage.memory import MemoryStore
from tako_backups.storage.s3 import S3Store
from tests.support.developer import developer_home
from tests.support.keys import make_key
from tests.support.s3_servers import S3_KINDS, STORE_KINDS, MotoServer, SeaweedFS, start_moto, start_seaweedfs

# Long commands print a plain progress line every few seconds when stderr is not a terminal; on a
# loaded machine that would add lines to the exact output many tests assert. The tests that check
# progress set TAKO_PROGRESS themselves.
os.environ["TAKO_PROGRESS"] = "off"

_OWN_BASETEMP = pytest.StashKey[Path]()


def pytest_configure(config: pytest.Config) -> None:
    if os.geteuid() == 0 and config.option.basetemp is None:
        config.option.basetemp = tempfile.mkdtemp(prefix="pytest-tako-")
        config.stash[_OWN_BASETEMP] = Path(config.option.basetemp)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    own = session.config.stash.get(_OWN_BASETEMP, None)
    if own is not None and exitstatus == 0:
        shutil.rmtree(own, ignore_errors=True)


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    server = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    server = start_moto()
    yield server
    server.stop()


@pytest.fixture
def make_store(request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """``make_store("memory" | "moto" | "seaweedfs", **kw)``: a store on an empty bucket of its own,
    emptied after the test. ``kw`` goes to S3Store (part_size, max_concurrency, ...)."""
    made: list[tuple[MotoServer | SeaweedFS, str]] = []

    def make(kind: str, **kw: Any) -> Any:
        if kind == "memory":
            return MemoryStore()
        server: MotoServer | SeaweedFS = request.getfixturevalue(
            {"moto": "moto_server", "seaweedfs": "seaweedfs"}[kind])
        bucket = server.lease_bucket()
        made.append((server, bucket))
        return S3Store(bucket, server.endpoint, "us-east-1", server.access_key, server.secret_key,
                       force_path_style=True, **kw)

    yield make
    for server, bucket in made:
        with contextlib.suppress(Exception):
            server.release_bucket(bucket)


@pytest.fixture(params=STORE_KINDS)
def store(request: pytest.FixtureRequest, make_store: Callable[..., Any]) -> Any:
    """A fresh store of each kind in turn (memory, moto, seaweedfs)."""
    return make_store(request.param)


@pytest.fixture(params=S3_KINDS)
def s3_store(request: pytest.FixtureRequest, make_store: Callable[..., Any]) -> S3Store:
    """A fresh S3Store on moto, then on SeaweedFS."""
    return make_store(request.param)


@pytest.fixture
def memory_store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def moto_store(make_store: Callable[..., Any]) -> S3Store:
    return make_store("moto")


@pytest.fixture
def seaweed_store(make_store: Callable[..., Any]) -> S3Store:
    """An S3Store on a fresh SeaweedFS bucket (the session's server)."""
    return make_store("seaweedfs")


@pytest.fixture(scope="session")
def key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ssh")


@pytest.fixture(scope="session")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A developer's HOME with a new key at ~/.ssh/id_ed25519."""
    return developer_home(tmp_path_factory.mktemp("home"))


@pytest.fixture(scope="session")
def signer(home: Path) -> FileSigner:
    """The authorized client key: the developer's ~/.ssh/id_ed25519."""
    return FileSigner.load(home / ".ssh" / "id_ed25519")


@pytest.fixture
def key() -> BackupKey:
    """A backup key (fixed id, random bytes)."""
    return BackupKey("backup-key-0123456789abcdef", os.urandom(32))


@pytest.fixture(scope="session")
def stranger(key_dir: Path) -> FileSigner:
    """A valid key that was never authorized."""
    return make_key(key_dir / "stranger", "stranger@elsewhere")
