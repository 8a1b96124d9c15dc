"""Signing through a real ssh-agent (and a fake one for misbehaviour)."""

from __future__ import annotations

import base64
import os
import socket
import struct
import subprocess
import threading

import pytest

from tako_backups.errors import AuthError
from tako_backups.remote import sshsig, sshwire
from tako_backups.remote.agent import AgentClient, AgentSigner, agent_signers
from tako_backups.remote.signing import RequestVerifier, sign_request, signed_message

BODY = b'{"command":"backup_status","app":"demo/production"}'


def test_agent_lists_its_keys_in_order(ssh_agent, ssh_keys):
    for name in ("ecdsa384", "ed25519", "rsa2048"):
        ssh_agent.add(ssh_keys[name])
    signers = agent_signers(ssh_agent.socket_path)
    assert [s.fingerprint for s in signers] == [
        ssh_keys[n].fingerprint for n in ("ecdsa384", "ed25519", "rsa2048")
    ]
    assert [s.description for s in signers] == [
        "ssh-agent key ecdsa384@test",
        "ssh-agent key ed25519@test",
        "ssh-agent key rsa2048@test",
    ]
    assert "AAAA" not in repr(signers[0])


@pytest.mark.parametrize("name", ["ed25519", "rsa2048", "rsa3072", "ecdsa256", "ecdsa384", "ecdsa521"])
def test_request_signed_through_agent_verifies_here_and_in_openssh(
    name, ssh_agent, ssh_keys, openssh, tmp_path
):
    key = ssh_keys[name]
    ssh_agent.add(key)
    (signer,) = agent_signers(ssh_agent.socket_path)
    keys_file = tmp_path / "authorized"
    keys_file.write_text(key.pub_line + "\n")
    headers = sign_request(signer, BODY, timestamp=1710000000, nonce="agent-nonce-000001")
    assert RequestVerifier(keys_file).verify(headers, BODY, now=1710000000).fingerprint == key.fingerprint
    armored = base64.b64decode(headers["x-tako-signature"]).decode()
    sig_alg = sshwire.Reader(sshsig.parse(sshsig.dearmor(armored)).signature_blob).text()
    assert sig_alg == ("rsa-sha2-512" if name.startswith("rsa") else key.pub_line.split()[0])
    done = openssh.verify(key, armored, signed_message("1710000000", "agent-nonce-000001", BODY), tmp_path)
    assert done.returncode == 0, done.stderr


def test_agent_skips_certificates(ssh_agent, ssh_keys, make_key):
    ca = make_key("ca", "-t", "ed25519")
    user = make_key("user", "-t", "ed25519")
    subprocess.run(
        ["/usr/bin/ssh-keygen", "-q", "-s", str(ca), "-I", "user", "-n", "tester", f"{user}.pub"], check=True
    )
    assert user.with_name("user-cert.pub").exists()
    ssh_agent.add(user)
    raw = AgentClient(ssh_agent.socket_path).identities()
    assert [sshwire.key_type_of(blob) for blob, _ in raw] == [
        "ssh-ed25519",
        "ssh-ed25519-cert-v01@openssh.com",
    ]
    assert [s.key_type for s in agent_signers(ssh_agent.socket_path)] == ["ssh-ed25519"]


def test_agent_refusing_to_sign_is_an_auth_error(ssh_agent, ssh_keys):
    signer = AgentSigner(AgentClient(ssh_agent.socket_path), ssh_keys["other"].blob, "gone")
    with pytest.raises(AuthError) as caught:
        signer.sign(b"data")
    assert str(caught.value) == (
        f"ssh-agent at {ssh_agent.socket_path} refused to sign with key {ssh_keys['other'].fingerprint}."
    )


def test_unreachable_agent_is_an_auth_error(tmp_path):
    path = str(tmp_path / "no-agent.sock")
    with pytest.raises(AuthError) as caught:
        AgentClient(path).identities()
    assert str(caught.value) == f"Cannot talk to ssh-agent at {path}: No such file or directory."


def _fake_agent(path: str, reply: bytes) -> threading.Thread:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)

    def serve() -> None:
        with server:
            conn, _ = server.accept()
            with conn:
                (length,) = struct.unpack(">I", conn.recv(4))
                received = b""
                while len(received) < length:
                    received += conn.recv(length - len(received))
                conn.sendall(struct.pack(">I", len(reply)) + reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def test_agent_falling_back_to_sha1_rsa_is_refused(ssh_keys):
    path = f"/tmp/tako-fake-agent-{os.getpid()}.sock"
    try:
        sha1_sig = sshwire.string("ssh-rsa") + sshwire.string(b"\x01" * 256)
        thread = _fake_agent(path, b"\x0e" + sshwire.string(sha1_sig))
        signer = AgentSigner(AgentClient(path), ssh_keys["rsa2048"].blob, "old agent")
        with pytest.raises(AuthError) as caught:
            signer.sign(b"data")
        thread.join(timeout=5)
    finally:
        os.unlink(path)
    assert str(caught.value) == (
        f"ssh-agent signed with ssh-rsa instead of rsa-sha2-512 for key {ssh_keys['rsa2048'].fingerprint}."
    )


def test_agent_sending_garbage_is_an_auth_error():
    path = f"/tmp/tako-fake-agent-{os.getpid()}-2.sock"
    try:
        thread = _fake_agent(path, b"\x0c\x00\x00\x00\x05")
        with pytest.raises(AuthError) as caught:
            AgentClient(path).identities()
        thread.join(timeout=5)
    finally:
        os.unlink(path)
    assert str(caught.value) == f"ssh-agent at {path} sent a malformed key list."
