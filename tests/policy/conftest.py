"""Real servers for the tiers / copy / notification suite: a `tako-server serve` subprocess, the
session's SeaweedFS for the primary buckets, a second SeaweedFS of this suite's own for the copies
(it is stopped and restarted by the tests), and a webhook receiver on 127.0.0.1."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tako_backups.demo.seaweed import spawn_weed
from tako_backups.remote.signing import FileSigner
from tests.support.s3_servers import SeaweedFS, start_seaweedfs, wait_ready
from tests.support.tako_server import RunningServer, running_server
from tests.support.webhooks import Receiver


@pytest.fixture(scope="module")
def copy_weed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """The copies' SeaweedFS: another process, other credentials (another provider)."""
    server = start_seaweedfs(tmp_path_factory.mktemp("copy-weed"))
    yield server
    server.stop()


def restart_weed(server: SeaweedFS) -> None:
    """Start a stopped SeaweedFS again on its ports, credentials and data (a provider's outage ends)."""
    server.process = spawn_weed(server.workdir, server.ports, server.access_key, server.secret_key)
    wait_ready(server)


@contextlib.contextmanager
def weed_down(server: SeaweedFS) -> Iterator[None]:
    """SeaweedFS stopped inside the block, running again after it (whatever happens inside)."""
    server.stop()
    try:
        yield
    finally:
        restart_weed(server)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, signer: FileSigner) -> Iterator[RunningServer]:
    yield from running_server(tmp_path_factory.mktemp("policy") / "tako", signer)


@pytest.fixture
def primary_bucket(seaweedfs: SeaweedFS) -> Iterator[str]:
    yield from seaweedfs.leased_bucket()


@pytest.fixture
def copy_bucket(copy_weed: SeaweedFS) -> Iterator[str]:
    yield from copy_weed.leased_bucket()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.stop()


@pytest.fixture
def app_data(server: RunningServer) -> Path:
    """Where the tests write the live data of their apps (``{name}/production``)."""
    return server.data_dir / "apps"
