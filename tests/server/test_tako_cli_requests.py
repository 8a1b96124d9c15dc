"""A real `tako-server serve` driven by requests shaped byte for byte like Tako's CLI sends them.

Tako's CLI (tako/src/management_http.rs, .../auth.rs) posts compact serde JSON with
``content-type: application/json`` to ``http://{host}:9844/rpc``; signed commands carry the four
x-tako-* headers, the signature being the standard base64 of the armored SSHSIG that
``ssh-keygen -Y sign`` makes (namespace ``tako-management-rpc-v0``, hash sha512) over
``tako-management-rpc-v0\\n{timestamp}\\n{nonce}\\n{body}``, the nonce 24 random bytes in hex.
Here the signature really is made by ``ssh-keygen -Y sign``, and every reply is checked as bytes.
"""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tako_backups import __version__
from tako_backups.remote.signing import FileSigner
from tests.support.keys import SSH_KEYGEN, new_backup_key
from tests.support.s3_servers import SeaweedFS
from tests.support.tako_server import RunningServer, running_server

pytestmark = pytest.mark.slow

APP = "notes/production"
NAMESPACE = "tako-management-rpc-v0"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, signer: FileSigner) -> Iterator[RunningServer]:
    yield from running_server(tmp_path_factory.mktemp("tako-cli") / "tako", signer, "la")


@pytest.fixture(scope="module")
def bucket(seaweedfs: SeaweedFS) -> Iterator[str]:
    yield from seaweedfs.leased_bucket()


def tako_json(value: Any) -> bytes:
    """serde_json::to_vec: compact, fields in declaration order, non-ASCII as UTF-8."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def ssh_keygen_sign(signer: FileSigner, message: bytes, folder: Path) -> str:
    """The armored SSHSIG ``ssh-keygen -Y sign`` makes of ``message`` (its default hash: sha512)."""
    data = folder / f"message-{secrets.token_hex(4)}"
    data.write_bytes(message)
    subprocess.run([SSH_KEYGEN, "-Y", "sign", "-q", "-n", NAMESPACE, "-f", str(signer.path), str(data)],
                   check=True, capture_output=True)
    return data.with_name(data.name + ".sig").read_text()


def post_as_tako(server: RunningServer, body: bytes, signer: FileSigner | None,
                 folder: Path) -> httpx.Response:
    """POST ``body`` with the headers Tako's CLI sends, in its order (signed unless ``signer`` is None)."""
    headers: list[tuple[str, str]] = []
    if signer is not None:
        stamp, nonce = str(int(time.time())), secrets.token_bytes(24).hex()
        armored = ssh_keygen_sign(signer, f"{NAMESPACE}\n{stamp}\n{nonce}\n".encode() + body, folder)
        assert "\r" not in armored and armored.startswith("-----BEGIN SSH SIGNATURE-----\n")
        headers = [("x-tako-key-fingerprint", signer.fingerprint), ("x-tako-timestamp", stamp),
                   ("x-tako-nonce", nonce), ("x-tako-signature", base64.b64encode(armored.encode()).decode())]
    headers += [("content-type", "application/json"), ("accept", "*/*")]
    return httpx.post(f"http://127.0.0.1:{server.port}/rpc", content=body, headers=headers, trust_env=False)


def assert_json_reply(reply: httpx.Response, status: int) -> Any:
    """Tako's headers, and ``data`` with its keys sorted at every level; returns the parsed reply."""
    assert reply.status_code == status, reply.text
    assert (reply.headers["content-type"], reply.headers["cache-control"]) == ("application/json", "no-store")
    parsed = json.loads(reply.content)  # dicts keep the order the server wrote
    if status == 200:
        assert reply.content.startswith(b'{"status":"ok","data":')
        data = tako_json(parsed["data"])
        assert data in reply.content
        assert data == json.dumps(parsed["data"], sort_keys=True, separators=(",", ":"),
                                  ensure_ascii=False).encode()  # every object in data has sorted keys
    return parsed


def test_tako_cli_requests_run_on_our_server(server: RunningServer, signer: FileSigner, stranger: FileSigner,
                                             seaweedfs: SeaweedFS, bucket: str, tmp_path: Path) -> None:
    live = server.data_dir / "apps" / "notes" / "production" / "data" / "app"
    live.mkdir(parents=True)
    (live / "notes.txt").write_text("first\n")

    # hello, unsigned, as `tako servers status` probes it
    hello = post_as_tako(server, b'{"command":"hello","protocol_version":0}', None, tmp_path)
    identity = subprocess.run([SSH_KEYGEN, "-lf", str(server.data_dir / "identity.pub")], check=True,
                              capture_output=True, text=True).stdout.split()
    assert identity[-1] == "(ED25519)" and identity[2:4] == ["tako-server", "identity"]
    assert hello.content == (b'{"status":"ok","data":{"capabilities":["server_runtime_info","backups"],'
                             b'"protocol_version":0,"server_identity":"' + identity[1].encode()
                             + b'","server_version":"' + __version__.encode() + b'"}}')
    assert_json_reply(hello, 200)
    info = assert_json_reply(post_as_tako(server, b'{"command":"server_info"}', None, tmp_path), 200)["data"]
    assert (info["server_name"], info["server_identity"], info["mode"]) == ("la", identity[1], "normal")

    # backup_now with Tako's BackupBinding (optional storage fields left out, force_path_style written)
    key = new_backup_key()
    binding = {"storage": {"provider": "s3", "bucket": bucket, "endpoint": seaweedfs.endpoint,
                           "region": "us-east-1", "access_key_id": seaweedfs.access_key,
                           "secret_access_key": seaweedfs.secret_key, "force_path_style": True},
               "backup_keys": [key.to_dict()], "retention_days": 30}
    made = post_as_tako(server, tako_json({"command": "backup_now", "app": APP, "backup": binding}), signer,
                        tmp_path)
    backup = assert_json_reply(made, 200)["data"]
    assert (backup["app"], backup["environment"], backup["server"]) == ("notes", "production", "la")
    assert backup["encryption"]["key_id"] == key.id
    assert seaweedfs.secret_key not in server.log_path.read_text()

    listed = post_as_tako(server, tako_json({"command": "list_backups", "app": APP}), signer, tmp_path)
    assert assert_json_reply(listed, 200)["data"]["backups"] == [backup]

    status = post_as_tako(server, tako_json({"command": "backup_status", "app": APP}), signer, tmp_path)
    shown = assert_json_reply(status, 200)["data"]
    assert (shown["enabled"], shown["retention_days"], shown["last_backup"]) == (True, 30, backup)
    assert shown["next_backup_at_unix_secs"] == backup["created_at_unix_secs"] + 86_400

    (live / "notes.txt").write_text("changed since\n")
    restore = {"command": "restore_backup", "app": APP, "backup_id": backup["id"]}
    restored = post_as_tako(server, tako_json(restore), signer, tmp_path)
    reply = assert_json_reply(restored, 200)
    assert reply["data"] == backup and (live / "notes.txt").read_text() == "first\n"

    # Tako's CLI moves on to its next key on exactly this reply
    refused = post_as_tako(server, tako_json({"command": "backup_status", "app": APP}), stranger, tmp_path)
    assert (refused.status_code, refused.content) == (
        401, b'{"status":"error","message":"management auth failed"}')
    assert_json_reply(refused, 401)


def test_tako_cli_sees_takos_texts_for_a_disabled_app_and_another_protocol(
        server: RunningServer, signer: FileSigner, tmp_path: Path) -> None:
    status = {"command": "backup_status", "app": "other/production"}
    disabled = post_as_tako(server, tako_json(status), signer, tmp_path)
    assert (disabled.status_code, disabled.content) == (200, (
        b'{"status":"ok","data":{"app":"other/production","enabled":false,"last_backup":null,'
        b'"next_backup_at_unix_secs":null,"retention_days":null}}'))
    missing = post_as_tako(server, tako_json({"command": "list_backups", "app": "other/production"}), signer,
                           tmp_path)
    assert (missing.status_code, missing.content) == (
        400, b'{"status":"error","message":"Backups are not configured for other/production."}')
    newer = post_as_tako(server, b'{"command":"hello","protocol_version":1}', None, tmp_path)
    assert (newer.status_code, newer.content) == (
        400, b'{"status":"error","message":"Protocol version mismatch: client=1 server=0"}')
