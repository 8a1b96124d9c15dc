"""The server's TLS identity: made once under <data-dir>/tls/, never rotated silently, and
`tako-server identity` prints its fingerprint."""

from __future__ import annotations

import hashlib
import ssl
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from tako_backups.errors import ConfigError
from tako_backups.server.tls import ensure_identity
from tests.support.tako_server import server_env


def identity_cli(data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tako_backups.server.cli", "identity", "--data-dir",
                           str(data_dir)], env=server_env(), capture_output=True, text=True, timeout=60)


def der_sha256(cert_pem: Path) -> str:
    """The fingerprint computed here, independently of the code under test."""
    return "sha256:" + hashlib.sha256(ssl.PEM_cert_to_DER_cert(cert_pem.read_text())).hexdigest()


def test_first_start_makes_a_key_0600_and_a_long_lived_certificate(tmp_path: Path) -> None:
    tls = tmp_path / "tako" / "tls"
    made = ensure_identity(tls, "la", "127.0.0.1")
    assert (made.cert_path, made.key_path) == (tls / "cert.pem", tls / "key.pem")
    assert stat.S_IMODE(made.key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(tls.stat().st_mode) == 0o700
    assert made.fingerprint == der_sha256(made.cert_path)
    cert = x509.load_pem_x509_certificate(made.cert_path.read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["la"]
    assert [str(a) for a in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert cert.not_valid_after_utc.year == 9999


def test_later_starts_keep_the_identity_even_when_the_address_changes(tmp_path: Path) -> None:
    tls = tmp_path / "tls"
    first = ensure_identity(tls, "la", "127.0.0.1")
    before = (first.cert_path.read_bytes(), first.key_path.read_bytes())
    again = ensure_identity(tls, "renamed", "0.0.0.0")
    assert again.fingerprint == first.fingerprint
    assert (again.cert_path.read_bytes(), again.key_path.read_bytes()) == before


def test_a_certificate_without_its_key_is_an_error_not_a_new_identity(tmp_path: Path) -> None:
    tls = tmp_path / "tls"
    made = ensure_identity(tls, "la", "127.0.0.1")
    cert = made.cert_path.read_bytes()
    made.key_path.unlink()
    with pytest.raises(ConfigError) as caught:
        ensure_identity(tls, "la", "127.0.0.1")
    assert str(caught.value) == (
        f"The TLS certificate {made.cert_path} has no key {made.key_path}; restore the key, or move the "
        "certificate away to make a new identity (clients must then pin the new fingerprint).")
    assert made.cert_path.read_bytes() == cert and not made.key_path.exists()


def test_a_key_from_another_identity_is_refused(tmp_path: Path) -> None:
    ours = ensure_identity(tmp_path / "a", "la", "127.0.0.1")
    other = ensure_identity(tmp_path / "b", "la", "")
    ours.key_path.write_bytes(other.key_path.read_bytes())
    with pytest.raises(ConfigError, match="does not belong to the certificate"):
        ensure_identity(tmp_path / "a", "la", "127.0.0.1")


def test_a_key_left_alone_by_a_crash_gets_its_certificate(tmp_path: Path) -> None:
    tls = tmp_path / "tls"
    made = ensure_identity(tls, "la", "127.0.0.1")
    key = made.key_path.read_bytes()
    made.cert_path.unlink()
    again = ensure_identity(tls, "la", "127.0.0.1")
    assert again.key_path.read_bytes() == key and again.fingerprint == der_sha256(again.cert_path)


def test_identity_prints_the_fingerprint_and_nothing_else(tmp_path: Path) -> None:
    data_dir = tmp_path / "tako"
    made = ensure_identity(data_dir / "tls", "la", "127.0.0.1")
    done = identity_cli(data_dir)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == der_sha256(made.cert_path) + "\n"
    assert len(done.stdout.strip()) == len("sha256:") + 64


def test_identity_fails_clearly_before_the_first_tls_start(tmp_path: Path) -> None:
    data_dir = tmp_path / "tako"
    done = identity_cli(data_dir)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (f"tako-server: No TLS certificate at {data_dir}/tls/cert.pem yet; start the "
                           f"server once with `tako-server serve --tls --data-dir {data_dir}` to make it.\n")
    assert not data_dir.exists()
