"""The server's TLS identity: a self-signed certificate and its key under ``<data-dir>/tls/``.

``serve --tls`` makes them on first start: an ECDSA P-256 key (``key.pem``, 0600) and a
certificate (``cert.pem``) naming the server and its listen address, valid until 9999 so it never
expires under a client that pinned it. They are never replaced or rotated silently: a certificate
without its key is an error, not a reason to make a new one, because clients pin the certificate
(``tako-server identity`` prints its fingerprint). Both files are written crash-safely; a key left
without a certificate by a crash gets its certificate at the next start (no client can have pinned
a certificate that was never written).
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..core.layout import sanitize_segment
from ..errors import ConfigError
from ..primitives.atomic_files import write_atomic
from ..remote.addresses import parse_ip
from ..remote.pinning import certificate_fingerprint

__all__ = ["CERT_FILE", "KEY_FILE", "TlsIdentity", "ensure_identity", "load_identity"]

log = logging.getLogger(__name__)

CERT_FILE = "cert.pem"
KEY_FILE = "key.pem"
_NOT_AFTER = datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.UTC)


@dataclass(frozen=True)
class TlsIdentity:
    """The certificate and key files uvicorn serves, and the certificate's fingerprint."""

    cert_path: Path
    key_path: Path
    fingerprint: str


def load_identity(tls_dir: Path) -> TlsIdentity:
    """The existing certificate's identity (the key is not read).

    Raises ConfigError when there is no certificate yet or it cannot be read or parsed.
    """
    cert_path = tls_dir / CERT_FILE
    if not cert_path.exists():
        raise ConfigError(f"No TLS certificate at {cert_path} yet; start the server once with "
                          f"`tako-server serve --tls --data-dir {tls_dir.parent}` to make it.")
    cert = _read_certificate(cert_path)
    return TlsIdentity(cert_path, tls_dir / KEY_FILE,
                       certificate_fingerprint(cert.public_bytes(serialization.Encoding.DER)))


def ensure_identity(tls_dir: Path, server_name: str, host: str) -> TlsIdentity:
    """The certificate and key in ``tls_dir``, made first when neither exists.

    Raises ConfigError when only the certificate exists, when the key does not belong to the
    certificate, or when the files cannot be read or written.
    """
    cert_path, key_path = tls_dir / CERT_FILE, tls_dir / KEY_FILE
    if cert_path.exists() and not key_path.exists():
        raise ConfigError(f"The TLS certificate {cert_path} has no key {key_path}; restore the key, or "
                          "move the certificate away to make a new identity (clients must then pin the new "
                          "fingerprint).")
    try:
        tls_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not key_path.exists():
            _write_new(key_path, _key_pem(ec.generate_private_key(ec.SECP256R1())))
            log.info("made a new TLS key %s", key_path)
        key = _read_key(key_path)
        if not cert_path.exists():
            cert = _self_signed(key, server_name, host)
            _write_new(cert_path, cert.public_bytes(serialization.Encoding.PEM))
            log.info("made a new self-signed TLS certificate %s", cert_path)
    except OSError as exc:
        raise ConfigError(f"Cannot make the TLS identity in {tls_dir}: {exc.strerror}.") from None
    if _public_der(_read_certificate(cert_path).public_key()) != _public_der(key.public_key()):
        raise ConfigError(f"The TLS key {key_path} does not belong to the certificate {cert_path}; restore "
                          "the matching key.")
    return load_identity(tls_dir)


def _public_der(key: CertificatePublicKeyTypes) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _write_new(path: Path, data: bytes) -> None:
    try:
        write_atomic(path, data, mode=0o600, exclusive=True)
    except FileExistsError:
        pass  # another start made it first: use that one


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _read_key(path: Path) -> CertificateIssuerPrivateKeyTypes:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise ConfigError(f"Cannot read the TLS key {path}: {exc.strerror}.") from None
    except (ValueError, TypeError):
        raise ConfigError(f"The TLS key {path} is not an unencrypted PEM private key.") from None
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey)):
        raise ConfigError(f"The TLS key {path} is not an ECDSA, RSA or Ed25519 key.")
    return key


def _read_certificate(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"Cannot read the TLS certificate {path}: {exc.strerror}.") from None
    except ValueError:
        raise ConfigError(f"The TLS certificate {path} is not a PEM certificate.") from None


def _self_signed(key: CertificateIssuerPrivateKeyTypes, server_name: str, host: str) -> x509.Certificate:
    label = sanitize_segment(server_name)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, label[:64])])
    names: list[x509.GeneralName] = [x509.DNSName(label)]
    address = parse_ip(host)
    if address is not None and not address.is_unspecified and "%" not in str(address):
        names.append(x509.IPAddress(address))
    elif address is None and host:
        names.append(x509.DNSName(host))
    public = key.public_key()
    now = datetime.datetime.now(datetime.UTC)
    usage = x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                          encipher_only=False, decipher_only=False)
    return (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(_NOT_AFTER)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(usage, critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
            .sign(key, None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()))
