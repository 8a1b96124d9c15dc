"""Which keys the client tries, in Tako's order, with a fake HOME and a real ssh-agent."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tako_backups.errors import ConfigError
from tako_backups.remote import keys
from tako_backups.remote.agent import AgentSigner
from tako_backups.remote.keys import discover_signers, iter_signers, public_blob_beside
from tako_backups.remote.signing import EncryptedKeyError, FileSigner


@pytest.fixture
def empty_home(tmp_path, monkeypatch):
    empty_home = tmp_path / "empty_home"
    (empty_home / ".ssh").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(empty_home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    return empty_home


def install(empty_home, ssh_keys, key_name, file_name):
    target = empty_home / ".ssh" / file_name
    shutil.copy(ssh_keys[key_name].path, target)
    shutil.copy(f"{ssh_keys[key_name].path}.pub", f"{target}.pub")
    return target


def encrypt(path, passphrase="hunter2"):
    subprocess.run(
        ["/usr/bin/ssh-keygen", "-q", "-p", "-P", "", "-N", passphrase, "-f", str(path)], check=True
    )


def fingerprints(signers):
    return [(type(s).__name__, s.fingerprint) for s in signers]


def test_files_in_tako_order_then_agent_keys_without_duplicates(empty_home, ssh_keys, ssh_agent, monkeypatch):
    install(empty_home, ssh_keys, "ecdsa256", "id_ecdsa")
    install(empty_home, ssh_keys, "rsa2048", "id_rsa")
    install(empty_home, ssh_keys, "ed25519", "id_ed25519")
    ssh_agent.add(ssh_keys["other"])
    ssh_agent.add(ssh_keys["ed25519"])
    monkeypatch.setenv("SSH_AUTH_SOCK", ssh_agent.socket_path)
    assert fingerprints(discover_signers(None)) == [
        ("FileSigner", ssh_keys["ed25519"].fingerprint),
        ("FileSigner", ssh_keys["rsa2048"].fingerprint),
        ("FileSigner", ssh_keys["ecdsa256"].fingerprint),
        ("AgentSigner", ssh_keys["other"].fingerprint),
    ]


def test_only_existing_default_keys_are_used(empty_home, ssh_keys):
    install(empty_home, ssh_keys, "rsa3072", "id_rsa")
    install(empty_home, ssh_keys, "ed25519", "id_ed25519.old")
    assert fingerprints(discover_signers(None)) == [("FileSigner", ssh_keys["rsa3072"].fingerprint)]


def test_key_path_means_only_that_key(empty_home, ssh_keys, ssh_agent, monkeypatch):
    install(empty_home, ssh_keys, "ed25519", "id_ed25519")
    ssh_agent.add(ssh_keys["rsa2048"])
    monkeypatch.setenv("SSH_AUTH_SOCK", ssh_agent.socket_path)
    (empty_home / "deploy").mkdir()
    shutil.copy(ssh_keys["ecdsa521"].path, empty_home / "deploy" / "key")
    (signer,) = discover_signers("~/deploy/key")
    assert isinstance(signer, FileSigner)
    assert signer.path == empty_home / "deploy" / "key"
    assert signer.fingerprint == ssh_keys["ecdsa521"].fingerprint


def test_missing_key_path_is_a_config_error(empty_home):
    with pytest.raises(ConfigError) as caught:
        discover_signers(str(empty_home / "missing"))
    assert str(caught.value) == f"SSH key {empty_home / 'missing'} does not exist."


def test_encrypted_key_path_signs_through_the_agent_holding_it(empty_home, ssh_keys, ssh_agent, monkeypatch):
    path = install(empty_home, ssh_keys, "ecdsa384", "deploy_key")
    ssh_agent.add(ssh_keys["other"])
    ssh_agent.add(path)
    encrypt(path)
    path.with_name("deploy_key.pub").unlink()
    assert public_blob_beside(path) == ssh_keys["ecdsa384"].blob
    monkeypatch.setenv("SSH_AUTH_SOCK", ssh_agent.socket_path)
    (signer,) = discover_signers(str(path))
    assert isinstance(signer, AgentSigner)
    assert signer.fingerprint == ssh_keys["ecdsa384"].fingerprint


def test_encrypted_pem_key_path_finds_its_public_key_in_the_pub_file(empty_home, ssh_keys, ssh_agent,
                                                                      monkeypatch):
    path = install(empty_home, ssh_keys, "rsa2048", "deploy_rsa")
    ssh_agent.add(path)
    subprocess.run(
        ["/usr/bin/ssh-keygen", "-q", "-p", "-P", "", "-N", "pass-phrase", "-m", "PEM", "-f", str(path)],
        check=True,
    )
    assert path.read_text().startswith("-----BEGIN RSA PRIVATE KEY-----")
    monkeypatch.setenv("SSH_AUTH_SOCK", ssh_agent.socket_path)
    (signer,) = discover_signers(str(path))
    assert isinstance(signer, AgentSigner) and signer.fingerprint == ssh_keys["rsa2048"].fingerprint


def test_encrypted_key_path_not_in_agent_says_to_add_it(empty_home, ssh_keys, ssh_agent, monkeypatch):
    path = install(empty_home, ssh_keys, "ed25519", "id_ed25519")
    encrypt(path)
    monkeypatch.setenv("SSH_AUTH_SOCK", ssh_agent.socket_path)
    with pytest.raises(EncryptedKeyError) as caught:
        discover_signers(str(path))
    assert str(caught.value) == (
        f"SSH key {path} is encrypted with a passphrase; add it to ssh-agent (ssh-add {path}) "
        "and tako will sign through the agent."
    )


def test_encrypted_default_key_is_skipped_for_the_agent(empty_home, ssh_keys, ssh_agent, monkeypatch):
    path = install(empty_home, ssh_keys, "ed25519", "id_ed25519")
    ssh_agent.add(path)
    encrypt(path)
    install(empty_home, ssh_keys, "rsa2048", "id_rsa")
    monkeypatch.setenv("SSH_AUTH_SOCK", ssh_agent.socket_path)
    assert fingerprints(discover_signers(None)) == [
        ("FileSigner", ssh_keys["rsa2048"].fingerprint),
        ("AgentSigner", ssh_keys["ed25519"].fingerprint),
    ]


def test_missing_agent_is_no_error(empty_home, ssh_keys, monkeypatch, tmp_path):
    install(empty_home, ssh_keys, "ecdsa256", "id_ecdsa")
    monkeypatch.setenv("SSH_AUTH_SOCK", str(tmp_path / "dead.sock"))
    assert fingerprints(discover_signers(None)) == [("FileSigner", ssh_keys["ecdsa256"].fingerprint)]


def test_no_key_anywhere_explains_what_was_tried(empty_home):
    with pytest.raises(ConfigError) as caught:
        discover_signers(None)
    ssh = empty_home / ".ssh"
    assert str(caught.value) == (
        f"No usable SSH key: tried {ssh}/id_ed25519, {ssh}/id_rsa, {ssh}/id_ecdsa and ssh-agent "
        "(SSH_AUTH_SOCK is not set); create one with ssh-keygen -t ed25519 or set key_path for the server."
    )


def test_no_usable_key_lists_skipped_files(empty_home, ssh_keys, ssh_agent, monkeypatch):
    path = install(empty_home, ssh_keys, "ed25519", "id_ed25519")
    encrypt(path)
    monkeypatch.setenv("SSH_AUTH_SOCK", ssh_agent.socket_path)
    with pytest.raises(ConfigError) as caught:
        discover_signers(None)
    ssh = empty_home / ".ssh"
    assert str(caught.value) == (
        f"No usable SSH key: tried {ssh}/id_ed25519, {ssh}/id_rsa, {ssh}/id_ecdsa and ssh-agent "
        f"(SSH key {path} is encrypted with a passphrase; add it to ssh-agent (ssh-add {path}) and tako "
        "will sign through the agent); create one with ssh-keygen -t ed25519 or set key_path for the server."
    )


def test_agent_is_asked_only_after_the_key_files(empty_home, ssh_keys, monkeypatch):
    install(empty_home, ssh_keys, "ed25519", "id_ed25519")
    monkeypatch.setenv("SSH_AUTH_SOCK", "/tmp/unused.sock")
    calls = []
    monkeypatch.setattr(keys, "agent_signers", lambda path: calls.append(path) or [])
    signers = iter_signers(None)
    assert next(signers).fingerprint == ssh_keys["ed25519"].fingerprint
    assert calls == []
    assert list(signers) == []
    assert calls == ["/tmp/unused.sock"]
