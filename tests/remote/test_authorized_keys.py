"""Parsing authorized_keys lines and loading private key files."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa

from tako_backups.errors import ConfigError
from tako_backups.remote import sshwire
from tako_backups.remote.signing import (
    EncryptedKeyError,
    FileSigner,
    parse_authorized_keys,
    parse_public_key,
)


def test_parse_authorized_keys_keeps_supported_keys_in_order(ssh_keys):
    ed, rsa, ec = ssh_keys["ed25519"], ssh_keys["rsa2048"], ssh_keys["ecdsa521"]
    ed_data = ed.pub_line.split()[1]
    text = "\n".join(
        [
            "# tako-server management keys",
            "",
            "   ",
            f'command="echo \\"hi there\\"",no-pty,from="10.0.0.1" {rsa.pub_line}',
            f"restrict {ec.pub_line}",
            "ssh-dss AAAAB3NzaC1kc3MAAACBAP unsupported",
            f"sk-ssh-ed25519@openssh.com {ed_data} security-key",
            f"ssh-ed25519-cert-v01@openssh.com {ed_data} cert",
            "ssh-ed25519 not*base64 broken",
            f"ssh-rsa {ed_data} type-mismatch",
            "ssh-ed25519",
            f"  {ed.pub_line}  ",
            ed.pub_line,
        ]
    )
    keys = parse_authorized_keys(text)
    assert [k.fingerprint for k in keys] == [rsa.fingerprint, ec.fingerprint, ed.fingerprint]
    assert [k.comment for k in keys] == ["rsa2048@test", "ecdsa521@test", "ed25519@test"]
    assert keys[0].options == 'command="echo \\"hi there\\"",no-pty,from="10.0.0.1"'
    assert keys[1].options == "restrict"
    assert keys[0].blob == rsa.blob
    assert keys[2].line == ed.pub_line
    assert "AAAA" not in repr(keys[0])


def test_parse_authorized_keys_of_empty_text_is_empty():
    assert parse_authorized_keys("") == []
    assert parse_authorized_keys("# nothing yet\n\n") == []


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("", "Not an SSH public key line (expected e.g. 'ssh-ed25519 AAAA... comment')."),
        ("hello", "Not an SSH public key line (expected e.g. 'ssh-ed25519 AAAA... comment')."),
        (
            "ssh-dss AAAA",
            "SSH key type ssh-dss is not supported; use Ed25519, RSA or ECDSA (nistp256/384/521).",
        ),
        ("ssh-ed25519 @@@@", "Invalid ssh-ed25519 public key: the key data is not base64."),
        (
            "ssh-rsa " + base64.b64encode(b"\0\0\0\x0bssh-ed25519\0\0\0\x01x").decode(),
            "Invalid ssh-rsa public key: the key data is not a ssh-rsa key.",
        ),
        (
            "ssh-ed25519 " + base64.b64encode(b"\0\0\0\x0bssh-ed25519\0\0\0\x01x").decode(),
            "Invalid ssh-ed25519 public key: invalid ssh-ed25519 key.",
        ),
    ],
)
def test_parse_public_key_explains_bad_lines(line, message):
    with pytest.raises(ConfigError) as caught:
        parse_public_key(line)
    assert str(caught.value) == message


def test_small_rsa_keys_are_refused(make_key):
    small = make_key("small", "-t", "rsa", "-b", "1024")
    assert parse_public_key(small.with_suffix(".pub").read_text()).key_type == "ssh-rsa"

    blob = sshwire.string("ssh-rsa") + sshwire.mpint(65537) + sshwire.mpint((1 << 767) | 1)
    line = "ssh-rsa " + base64.b64encode(blob).decode()
    with pytest.raises(ConfigError) as caught:
        parse_public_key(line)
    assert str(caught.value) == "Invalid ssh-rsa public key: RSA key of 768 bits is too small."


def test_encrypted_key_file_says_to_use_ssh_agent(make_key):
    path = make_key("id_ed25519", "-t", "ed25519", passphrase="correct horse")
    with pytest.raises(EncryptedKeyError) as caught:
        FileSigner.load(path)
    assert str(caught.value) == (
        f"SSH key {path} is encrypted with a passphrase; add it to ssh-agent (ssh-add {path}) "
        "and tako will sign through the agent."
    )
    assert "correct horse" not in str(caught.value)


def test_encrypted_pem_key_file_says_to_use_ssh_agent(make_key):
    path = make_key("id_rsa", "-t", "rsa", "-b", "1024", "-m", "PEM", passphrase="secret")
    assert path.read_text().startswith("-----BEGIN RSA PRIVATE KEY-----")
    with pytest.raises(EncryptedKeyError) as caught:
        FileSigner.load(path)
    assert str(caught.value).startswith(f"SSH key {path} is encrypted with a passphrase; add it to ssh-agent")


def test_bad_key_files_are_named(tmp_path, ssh_keys):
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError) as caught:
        FileSigner.load(missing)
    assert str(caught.value) == f"SSH key {missing} does not exist."
    pub = ssh_keys["ed25519"].path.with_suffix(".pub")
    with pytest.raises(ConfigError) as caught:
        FileSigner.load(pub)
    assert str(caught.value) == (
        f"SSH key {pub} is not a valid OpenSSH or PEM private key; pass the private key, not the .pub file."
    )
    junk = tmp_path / "junk"
    junk.write_text("hello\n")
    with pytest.raises(ConfigError) as caught:
        FileSigner.load(junk)
    assert str(caught.value) == f"SSH key {junk} is not a valid OpenSSH or PEM private key."


def test_dsa_pem_key_is_refused_as_unsupported(tmp_path):
    path = tmp_path / "dsa.pem"
    key = dsa.generate_private_key(1024)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    with pytest.raises(ConfigError) as caught:
        FileSigner.load(path)
    assert str(caught.value) == (
        f"SSH key {path} is of an unsupported type; use Ed25519, RSA or ECDSA (nistp256/384/521)."
    )


def test_file_signer_repr_shows_no_key_material(ssh_keys):
    signer = FileSigner.load(ssh_keys["ecdsa256"].path)
    key = ssh_keys["ecdsa256"]
    assert repr(signer) == f"FileSigner(path='{key.path}', fingerprint='{key.fingerprint}')"
