"""For real: a signed request recorded on its way to server `la` (a recording proxy on 127.0.0.1)
is refused by server `ny`, which trusts the same key, and by `la` itself -- also after a restart."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tako_backups.remote.signing import FileSigner
from tests.support.developer import Developer
from tests.support.s3_servers import SeaweedFS
from tests.support.tako_server import RunningServer
from tests.transport.conftest import set_credentials
from tests.transport.support import RecordingProxy, launch

pytestmark = pytest.mark.slow

REPLAYED = {"status": "error", "message": "management auth failed"}


def logged_refusal(server: RunningServer, command: str, reason: str) -> bool:
    """Whether the server's log has the one line that says why it answered 'management auth failed'."""
    line = f"refused {command} from 127.0.0.1 (management auth failed): {reason}"
    return any(logged.endswith(line) for logged in server.log_path.read_text().splitlines())


@pytest.fixture
def la(tmp_path: Path, signer: FileSigner) -> Iterator[RunningServer]:
    server = launch(tmp_path / "la" / "tako", signer, "la")
    yield server
    server.terminate()


@pytest.fixture
def ny(tmp_path: Path, signer: FileSigner) -> Iterator[RunningServer]:
    server = launch(tmp_path / "ny" / "tako", signer, "ny")
    yield server
    assert server.terminate() == 0, server.log_tail()


def replay(port: int, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    signed = {name: value for name, value in headers.items() if name.startswith("x-tako-")}
    reply = httpx.post(f"http://127.0.0.1:{port}/rpc", content=body, trust_env=False,
                       headers={"content-type": "application/json", **signed})
    return reply.status_code, reply.json()


def test_a_recorded_request_runs_once_and_only_on_its_server(dev: Developer, la: RunningServer,
                                                             ny: RunningServer, signer: FileSigner,
                                                             seaweedfs: SeaweedFS, bucket: str) -> None:
    proxy = RecordingProxy(la.port).start()
    try:
        (dev.tako_home / "config.toml").write_text(
            f'[servers.la]\nhost = "127.0.0.1"\nmanagement_port = {proxy.port}\n\n'
            f'[servers.ny]\nhost = "127.0.0.1"\nmanagement_port = {ny.port}\n')
        dev.write_project("notes", ["la"], seaweedfs, bucket)
        set_credentials(dev, seaweedfs)
        made = dev.tako("backups", "now", "--env", "production")
        assert made.exit_code == 0, made.output
    finally:
        proxy.stop()
    [recorded] = [r for r in proxy.requests() if json.loads(r.body)["command"] == "backup_now"]
    sent = json.loads(recorded.body)
    assert sent["target"] == "la"
    assert sent["backup"]["storage"]["secret_access_key"] == seaweedfs.secret_key

    # The target cannot be taken out: the signature covers it.
    unbound = json.dumps({k: v for k, v in sent.items() if k != "target"}, separators=(",", ":")).encode()
    status, reply = replay(ny.port, unbound, recorded.headers)
    assert (status, reply) == (401, REPLAYED)
    assert logged_refusal(ny, "backup_now", "Bad signature: signature does not verify."), ny.log_tail()

    status, reply = replay(ny.port, recorded.body, recorded.headers)
    assert (status, reply) == (400, {"status": "error", "message": (
        "This request is for server 'la', not this server ('ny'); it was replayed from another server, or "
        "config.toml points at the wrong host.")})
    assert not list((ny.data_dir / "state").rglob("*.enc"))  # ny stored no settings, ran nothing

    assert replay(la.port, recorded.body, recorded.headers) == (401, REPLAYED)
    assert logged_refusal(la, "backup_now", "Nonce was already used (replayed request)."), la.log_tail()
    assert seaweedfs.secret_key not in la.log_path.read_text()
    assert la.terminate() == 0, la.log_tail()
    restarted = launch(la.data_dir, signer, "la")
    try:
        assert replay(restarted.port, recorded.body, recorded.headers) == (401, REPLAYED)
        (dev.tako_home / "config.toml").write_text(
            f'[servers.la]\nhost = "127.0.0.1"\nmanagement_port = {restarted.port}\n')
        listed = dev.json("backups", "list", "--env", "production")
        assert len(listed["results"][0]["backups"]) == 1  # the one backup the CLI asked for
    finally:
        assert restarted.terminate() == 0, restarted.log_tail()


def test_a_request_seen_before_a_restart_is_refused_after_it(dev: Developer, la: RunningServer,
                                                             signer: FileSigner, seaweedfs: SeaweedFS,
                                                             bucket: str) -> None:
    """The nonce memory survives the restart (state/seen-nonces), whatever the body says."""
    proxy = RecordingProxy(la.port).start()
    try:
        (dev.tako_home / "config.toml").write_text(
            f'[servers.la]\nhost = "127.0.0.1"\nmanagement_port = {proxy.port}\n')
        dev.write_project("notes", ["la"], seaweedfs, bucket)
        shown = dev.tako("backups", "status", "--env", "production")
        assert shown.exit_code == 0, shown.output
    finally:
        proxy.stop()
    [recorded] = [r for r in proxy.requests() if json.loads(r.body)["command"] == "backup_status"]
    assert la.terminate() == 0, la.log_tail()
    restarted = launch(la.data_dir, signer, "la")
    try:
        assert replay(restarted.port, recorded.body, recorded.headers) == (401, REPLAYED)
        (dev.tako_home / "config.toml").write_text(
            f'[servers.la]\nhost = "127.0.0.1"\nmanagement_port = {restarted.port}\n')
        fresh = dev.tako("backups", "status", "--env", "production")  # a new nonce is welcome
        assert fresh.exit_code == 0, fresh.output
    finally:
        assert restarted.terminate() == 0, restarted.log_tail()
