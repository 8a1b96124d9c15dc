"""Signatures interoperate with OpenSSH itself, both ways, for every supported key type."""

from __future__ import annotations

import base64
import shutil
import subprocess
import time

import pytest
from cryptography.hazmat.primitives import serialization

from tako_backups.remote import sshsig
from tako_backups.remote.signing import (
    HEADER_SIGNATURE,
    FileSigner,
    RequestVerifier,
    fingerprint,
    sign_request,
    signed_message,
)

KEY_NAMES = ["ed25519", "rsa2048", "rsa3072", "ecdsa256", "ecdsa384", "ecdsa521"]
BODY = b'{"command":"backup_now","app":"demo/production","backup":null}'


@pytest.fixture
def verifier_for(tmp_path):
    def make(*keys):
        path = tmp_path / "management-authorized-keys"
        path.write_text("".join(f"{key.pub_line}\n" for key in keys))
        return RequestVerifier(path)

    return make


@pytest.mark.parametrize("name", KEY_NAMES)
def test_verifier_accepts_signature_made_by_ssh_keygen(name, ssh_keys, openssh, verifier_for):
    key = ssh_keys[name]
    stamp, nonce = str(int(time.time())), "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4"
    armored = openssh.sign(key, signed_message(stamp, nonce, BODY))
    headers = {
        "x-tako-key-fingerprint": key.fingerprint,
        "x-tako-timestamp": stamp,
        "x-tako-nonce": nonce,
        "x-tako-signature": base64.b64encode(armored.encode()).decode(),
    }
    accepted = verifier_for(key).verify(headers, BODY)
    assert accepted.fingerprint == key.fingerprint
    assert accepted.comment == f"{name}@test"


@pytest.mark.parametrize("name", KEY_NAMES)
def test_ssh_keygen_verifies_our_request_signature(name, ssh_keys, openssh, tmp_path):
    key = ssh_keys[name]
    headers = sign_request(FileSigner.load(key.path), BODY, timestamp=1710000000, nonce="0123456789abcdef")
    armored = base64.b64decode(headers[HEADER_SIGNATURE]).decode()
    done = openssh.verify(key, armored, signed_message("1710000000", "0123456789abcdef", BODY), tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        f'Good "tako-management-rpc-v0" signature for tester with {key.label} key {key.fingerprint}'
    )


@pytest.mark.parametrize("name", KEY_NAMES)
def test_ssh_keygen_rejects_our_signature_over_another_body(name, ssh_keys, openssh, tmp_path):
    key = ssh_keys[name]
    headers = sign_request(FileSigner.load(key.path), BODY, timestamp=1710000000, nonce="0123456789abcdef")
    armored = base64.b64decode(headers[HEADER_SIGNATURE]).decode()
    done = openssh.verify(
        key, armored, signed_message("1710000000", "0123456789abcdef", BODY + b" "), tmp_path
    )
    assert done.returncode == 255


@pytest.mark.parametrize("name", ["ed25519", "rsa2048", "rsa3072"])
def test_deterministic_signatures_match_ssh_keygen_byte_for_byte(name, ssh_keys, openssh):
    key = ssh_keys[name]
    message = signed_message("1710000000", "0123456789abcdef", BODY)
    assert sshsig.sign(FileSigner.load(key.path), message) == openssh.sign(key, message)


@pytest.mark.parametrize("name", KEY_NAMES)
def test_armor_matches_ssh_keygen_layout(name, ssh_keys, openssh):
    armored = openssh.sign(ssh_keys[name], b"message")
    blob = sshsig.dearmor(armored)
    assert sshsig.armor(blob) == armored
    lines = armored.split("\n")
    assert lines[0] == "-----BEGIN SSH SIGNATURE-----"
    assert lines[-2:] == ["-----END SSH SIGNATURE-----", ""]
    assert all(len(line) == 70 for line in lines[1:-3])


@pytest.mark.parametrize("name", KEY_NAMES)
def test_fingerprint_matches_ssh_keygen(name, ssh_keys):
    key = ssh_keys[name]
    signer = FileSigner.load(key.path)
    assert fingerprint(signer.public_key_blob) == key.fingerprint
    assert fingerprint(signer._key.public_key()) == key.fingerprint
    assert signer.public_key_blob == key.blob


def test_verifier_accepts_ssh_keygen_sha256_hash_option(ssh_keys, openssh, verifier_for):
    key = ssh_keys["ecdsa384"]
    stamp, nonce = str(int(time.time())), "nonce-with_dash-0001"
    armored = openssh.sign(
        key, signed_message(stamp, nonce, BODY), "tako-management-rpc-v0", "hashalg=sha256"
    )
    assert sshsig.parse(sshsig.dearmor(armored)).hash_algorithm == "sha256"
    headers = {
        "x-tako-key-fingerprint": key.fingerprint,
        "x-tako-timestamp": stamp,
        "x-tako-nonce": nonce,
        "x-tako-signature": base64.b64encode(armored.encode()).decode(),
    }
    assert verifier_for(key).verify(headers, BODY).fingerprint == key.fingerprint


def test_our_rsa_signatures_use_rsa_sha2_512_and_sha512(ssh_keys):
    armored = sshsig.sign(FileSigner.load(ssh_keys["rsa2048"].path), b"m")
    parsed = sshsig.parse(sshsig.dearmor(armored))
    assert parsed.hash_algorithm == "sha512"
    assert parsed.namespace == b"tako-management-rpc-v0"
    assert parsed.signature_blob[4:16] == b"rsa-sha2-512"


@pytest.mark.parametrize(
    ("name", "fmt"), [("rsa2048", "PEM"), ("ecdsa256", "PEM"), ("ecdsa384", "PKCS8"), ("rsa2048", "PKCS8")]
)
def test_pem_private_keys_sign_like_openssh_keys(name, fmt, ssh_keys, tmp_path, openssh):
    key = ssh_keys[name]
    copy = tmp_path / "key"
    shutil.copy(key.path, copy)
    copy.chmod(0o600)
    subprocess.run(["/usr/bin/ssh-keygen", "-q", "-p", "-N", "", "-m", fmt, "-f", str(copy)], check=True)
    assert copy.read_text().startswith("-----BEGIN ") and "OPENSSH" not in copy.read_text().splitlines()[0]
    signer = FileSigner.load(copy)
    assert signer.public_key_blob == key.blob
    message = b"pem message"
    done = openssh.verify(key, sshsig.sign(signer, message), message, tmp_path)
    assert done.returncode == 0, done.stderr


def test_pkcs8_ed25519_key_from_openssl_signs(ssh_keys, tmp_path, openssh):
    key = ssh_keys["ed25519"]
    private = serialization.load_ssh_private_key(key.path.read_bytes(), None)
    pem = tmp_path / "ed25519.pem"
    pem.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    assert pem.read_text().startswith("-----BEGIN PRIVATE KEY-----\n")
    signer = FileSigner.load(pem)
    message = signed_message("1", "0123456789abcdef", b"{}")
    assert sshsig.sign(signer, message) == openssh.sign(key, message)
