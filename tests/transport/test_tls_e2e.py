"""For real: `tako-server serve --tls` and a `tako` CLI that pins its certificate run now, list and
restore with nothing in clear on the wire; a wrong pin is refused before anything is sent."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tako_backups.models import BackupInfo
from tako_backups.remote.signing import FileSigner
from tests.support.developer import Developer
from tests.support.s3_servers import SeaweedFS
from tests.support.tako_server import SERVER, RunningServer, server_env
from tests.transport.conftest import set_credentials
from tests.transport.support import RecordingProxy, launch

pytestmark = pytest.mark.slow

TLS_HANDSHAKE = 0x16  # the first byte of every TLS record that opens a connection


@pytest.fixture
def la(tmp_path: Path, signer: FileSigner) -> Iterator[RunningServer]:
    server = launch(tmp_path / "la" / "tako", signer, "la", "--tls")
    yield server
    assert server.terminate() == 0, server.log_tail()


@pytest.fixture
def proxy(la: RunningServer) -> Iterator[RecordingProxy]:
    running = RecordingProxy(la.port).start()
    yield running
    running.stop()


def identity(server: RunningServer) -> str:
    done = subprocess.run([*SERVER, "identity", "--data-dir", str(server.data_dir)], env=server_env(),
                          capture_output=True, text=True, check=True)
    return done.stdout.strip()


def write_pinned(dev: Developer, port: int, fingerprint: str) -> None:
    (dev.tako_home / "config.toml").write_text(
        f'[servers.la]\nhost = "127.0.0.1"\nmanagement_port = {port}\ntls_fingerprint = "{fingerprint}"\n')


def test_a_pinned_client_backs_up_lists_and_restores_over_tls(dev: Developer, la: RunningServer,
                                                              proxy: RecordingProxy, seaweedfs: SeaweedFS,
                                                              bucket: str) -> None:
    write_pinned(dev, proxy.port, identity(la))
    dev.write_project("notes", ["la"], seaweedfs, bucket)
    set_credentials(dev, seaweedfs)
    live = la.data_dir / "apps" / "notes" / "production" / "data" / "app"
    live.mkdir(parents=True)
    (live / "notes.txt").write_text("the data to keep\n")

    made = dev.tako("backups", "now", "--env", "production")
    assert made.exit_code == 0, made.output
    listed = dev.json("backups", "list", "--env", "production")
    [info] = [BackupInfo.from_dict(b) for b in listed["results"][0]["backups"]]
    assert info.id in made.stdout

    (live / "notes.txt").write_text("damaged\n")
    restored = dev.tako("backups", "restore", info.id, "--env", "production", "--yes")
    assert restored.exit_code == 0, restored.output
    assert (live / "notes.txt").read_text() == "the data to keep\n"

    # Everything crossed the wire encrypted: each connection opened with a TLS handshake, and
    # neither the S3 secret nor a request line appears in what the client sent.
    assert len(proxy.sent) >= 4  # a certificate check and a request per command
    assert all(stream[0] == TLS_HANDSHAKE for stream in proxy.sent)
    wire = b"".join(bytes(stream) for stream in proxy.sent)
    assert seaweedfs.secret_key.encode() not in wire and b"POST /rpc" not in wire
    assert "backup_now notes/production by" in la.log_path.read_text()


def test_a_wrong_pin_is_refused_before_anything_is_sent(dev: Developer, la: RunningServer,
                                                        seaweedfs: SeaweedFS, bucket: str) -> None:
    real = identity(la)
    wrong = "sha256:" + "0" * 64
    write_pinned(dev, la.port, wrong)
    dev.write_project("notes", ["la"], seaweedfs, bucket)
    set_credentials(dev, seaweedfs)
    for command in (("backups", "now"), ("backups", "list")):
        refused = dev.tako(*command, "--env", "production")
        assert refused.exit_code == 1
        assert refused.stderr == (
            f"error: Server 'la' (127.0.0.1:{la.port}) presented TLS certificate {real}, but config.toml "
            f"pins {wrong}; nothing was sent. If the server's certificate changed on purpose, set "
            "tls_fingerprint to what `tako-server identity` prints there.\n")
        assert seaweedfs.secret_key not in refused.output
    log = la.log_path.read_text()
    assert "backup_now" not in log and "list_backups" not in log


def test_a_client_without_the_pin_cannot_talk_plain_http_to_a_tls_server(dev: Developer, la: RunningServer,
                                                                          seaweedfs: SeaweedFS,
                                                                          bucket: str) -> None:
    config = f'[servers.la]\nhost = "127.0.0.1"\nmanagement_port = {la.port}\n'
    (dev.tako_home / "config.toml").write_text(config)
    dev.write_project("notes", ["la"], seaweedfs, bucket)
    shown = dev.tako("backups", "list", "--env", "production")
    assert shown.exit_code == 1
    assert shown.stderr == (
        f"error: Server 'la' (127.0.0.1:{la.port}) broke off list_backups without an HTTP answer; if it runs "
        "with --tls, set tls_fingerprint for it in config.toml (`tako-server identity` prints it).\n")
    assert "list_backups" not in la.log_path.read_text()


def test_the_cli_process_pins_too(dev: Developer, la: RunningServer, seaweedfs: SeaweedFS,
                                  bucket: str) -> None:
    """`python -m tako_backups` as its own process, as a user runs it."""
    write_pinned(dev, la.port, identity(la))
    dev.write_project("notes", ["la"], seaweedfs, bucket)
    done = dev.tako_process("backups", "status", "--env", "production")
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith("la: disabled\n")
