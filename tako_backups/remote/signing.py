"""Signing and verifying Tako management RPC requests (client signs, tako-server verifies).

A request carries four headers: the key's OpenSSH fingerprint, a unix timestamp, a random nonce,
and the standard base64 of an armored SSHSIG (namespace ``tako-management-rpc-v0``, hash sha512)
over ``tako-management-rpc-v0\\n{timestamp}\\n{nonce}\\n{body}``.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from tako_backups.errors import AuthError, ConfigError
from tako_backups.remote import sshsig, sshwire
from tako_backups.remote.authorized_keys import AuthorizedKey, parse_authorized_keys, parse_public_key
from tako_backups.remote.replay import NonceCache, NonceJournal
from tako_backups.remote.sshsig import NAMESPACE, Signer

__all__ = [
    "NAMESPACE",
    "HEADER_FINGERPRINT",
    "HEADER_TIMESTAMP",
    "HEADER_NONCE",
    "HEADER_SIGNATURE",
    "AuthorizedKey",
    "EncryptedKeyError",
    "FileSigner",
    "MissingAuthError",
    "RequestVerifier",
    "Signer",
    "fingerprint",
    "parse_authorized_keys",
    "parse_public_key",
    "sign_request",
    "signed_message",
]

HEADER_FINGERPRINT = "x-tako-key-fingerprint"
HEADER_TIMESTAMP = "x-tako-timestamp"
HEADER_NONCE = "x-tako-nonce"
HEADER_SIGNATURE = "x-tako-signature"
_HEADERS = (HEADER_FINGERPRINT, HEADER_TIMESTAMP, HEADER_NONCE, HEADER_SIGNATURE)
_NONCE_RE = re.compile(r"[A-Za-z0-9_-]{16,128}")
_TIMESTAMP_RE = re.compile(r"[+-]?[0-9]{1,18}")  # what Rust's i64 parse takes, short of overflow
_FINGERPRINT_RE = re.compile(r"SHA256:[A-Za-z0-9+/]{43}")
_MAX_SIGNATURE_HEADER = 32 * 1024


class EncryptedKeyError(ConfigError):
    """A private key file is protected by a passphrase (load it into ssh-agent instead)."""


class MissingAuthError(AuthError):
    """The request cannot be checked at all: a signing header is missing or blank, or the server
    has no authorized keys file it can read. Tako's server answers ``management auth required``
    here and ``management auth failed`` for every other :class:`AuthError`."""


def fingerprint(public_key: bytes | sshwire.PublicKey) -> str:
    """OpenSSH SHA-256 fingerprint (``SHA256:`` + unpadded base64) of a key object or key blob.

    Raises ConfigError for key types SSH cannot carry.
    """
    if isinstance(public_key, bytes):
        return sshwire.fingerprint_of_blob(public_key)
    try:
        return sshwire.fingerprint_of_blob(sshwire.public_key_blob(public_key))
    except sshwire.WireError as exc:
        raise ConfigError(f"Unsupported public key: {exc}.") from None


def signed_message(timestamp: str, nonce: str, body: bytes) -> bytes:
    """The message an RPC signature covers."""
    return f"{NAMESPACE}\n{timestamp}\n{nonce}\n".encode() + body


class FileSigner:
    """A Signer backed by a private key file (OpenSSH or PEM format, no passphrase)."""

    def __init__(self, path: Path, key: sshwire.PrivateKey) -> None:
        self.path = path
        self._key = key
        try:
            self._blob = sshwire.public_key_blob(key.public_key())
        except sshwire.WireError as exc:
            raise ConfigError(f"SSH key {path} is not supported: {exc}.") from None

    @classmethod
    def load(cls, path: str | Path) -> FileSigner:
        """Load a private key file.

        Raises EncryptedKeyError (a ConfigError) for passphrase-protected keys, and ConfigError
        when the file is missing, unreadable, not a private key or of an unsupported type.
        """
        path = Path(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ConfigError(f"SSH key {path} does not exist.") from None
        except OSError as exc:
            raise ConfigError(f"Cannot read SSH key {path}: {exc.strerror}.") from None
        key: object
        try:
            if data.lstrip().startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----"):
                key = serialization.load_ssh_private_key(data, password=None)
            else:
                key = serialization.load_pem_private_key(data, password=None)
        except TypeError:
            raise EncryptedKeyError(
                f"SSH key {path} is encrypted with a passphrase; add it to ssh-agent "
                f"(ssh-add {path}) and tako will sign through the agent."
            ) from None
        except (ValueError, UnsupportedAlgorithm):
            hint = (
                "; pass the private key, not the .pub file" if data.startswith((b"ssh-", b"ecdsa-")) else ""
            )
            raise ConfigError(f"SSH key {path} is not a valid OpenSSH or PEM private key{hint}.") from None
        if not isinstance(key, (ed25519.Ed25519PrivateKey, rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
            raise ConfigError(
                f"SSH key {path} is of an unsupported type; use Ed25519, RSA or ECDSA (nistp256/384/521)."
            )
        return cls(path, key)

    @property
    def public_key_blob(self) -> bytes:
        return self._blob

    @property
    def description(self) -> str:
        return str(self.path)

    @property
    def fingerprint(self) -> str:
        return sshwire.fingerprint_of_blob(self._blob)

    def sign(self, data: bytes) -> bytes:
        """Sign data with the file's key; returns an SSH signature blob (RSA: rsa-sha2-512)."""
        return sshwire.sign_with_private_key(self._key, data)

    def __repr__(self) -> str:
        return f"FileSigner(path={str(self.path)!r}, fingerprint={self.fingerprint!r})"


def sign_request(
    signer: Signer, body: bytes, *, timestamp: int | None = None, nonce: str | None = None
) -> dict[str, str]:
    """Return the four x-tako-* headers that authenticate body (nonce: 24 random bytes as hex).

    Raises whatever the signer raises (AuthError from ssh-agent, ConfigError).
    """
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    nonce = secrets.token_hex(24) if nonce is None else nonce
    armored = sshsig.sign(signer, signed_message(stamp, nonce, body))
    return {
        HEADER_FINGERPRINT: sshwire.fingerprint_of_blob(signer.public_key_blob),
        HEADER_TIMESTAMP: stamp,
        HEADER_NONCE: nonce,
        HEADER_SIGNATURE: base64.b64encode(armored.encode("ascii")).decode("ascii"),
    }


class _AuthorizedKeysFile:
    """The authorized keys file, re-read whenever its inode, size or times change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, ...] | None = None
        self._keys: dict[str, AuthorizedKey] = {}

    def keys(self) -> dict[str, AuthorizedKey] | None:
        """The keys by fingerprint; None when the file does not exist. Raises ConfigError when it
        cannot be read."""
        with self._lock:
            try:
                st = self.path.stat()
                stamp: tuple[int, ...] = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            except FileNotFoundError:
                stamp = ()
            except OSError as exc:
                raise ConfigError(f"Cannot read authorized keys file {self.path}: {exc.strerror}.") from None
            if stamp != self._stamp:
                self._keys = {key.fingerprint: key for key in self._read()} if stamp else {}
                self._stamp = stamp
            return self._keys if stamp else None

    def _read(self) -> list[AuthorizedKey]:
        try:
            return parse_authorized_keys(self.path.read_text(encoding="utf-8", errors="replace"))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise ConfigError(f"Cannot read authorized keys file {self.path}: {exc.strerror}.") from None


class RequestVerifier:
    """Checks signed RPC requests against an authorized keys file. Safe to share between threads."""

    def __init__(
        self,
        authorized_keys_path: str | Path,
        *,
        skew: int = 300,
        max_nonces: int = 100_000,
        clock: Callable[[], float] | None = None,
        journal: NonceJournal | None = None,
    ) -> None:
        """``clock`` gives unix time (default ``time.time``; whole seconds are used, for the timestamp
        check and the nonce memory alike); ``journal`` keeps the nonces across restarts.

        Raises ConfigError when the journal cannot be read.
        """
        self._keys = _AuthorizedKeysFile(Path(authorized_keys_path))
        self.skew = skew
        self._clock = clock
        self._nonces = NonceCache(max_nonces, journal, second=self._second(None))

    def _second(self, now: float | None) -> int:
        if now is None:
            now = time.time() if self._clock is None else self._clock()
        return math.floor(now)

    def authorized_keys(self) -> list[AuthorizedKey]:
        """The keys currently authorized (re-reads the file when it changed)."""
        return list((self._keys.keys() or {}).values())

    def remembered_nonces(self) -> int:
        """How many nonces are remembered (expired ones are dropped at the next request)."""
        return len(self._nonces)

    def verify(self, headers: Mapping[str, str], body: bytes, now: float | None = None) -> AuthorizedKey:
        """Check a request's x-tako-* headers against body; return the key that signed it.

        ``now`` (unix time) overrides the clock. A timestamp passes during the whole seconds
        ``stamp - skew`` to ``stamp + skew``; once the signature verifies, the nonce is remembered
        through the last of them. Checks run in Tako's order: the headers (fingerprint, timestamp,
        nonce, signature), the timestamp, the nonce's form, the authorized keys file and the key,
        the signature, the nonce's novelty (a nonce already seen is refused before the signature
        is checked, too, to spare the work).

        Raises MissingAuthError (an AuthError) for a missing or blank header or an authorized keys
        file that does not exist or cannot be read; AuthError with a short reason for everything
        else (duplicated or non-ASCII header, bad, stale or future timestamp, bad or replayed
        nonce, unknown key, bad signature, wrong namespace); ConfigError when the journal cannot
        record the nonce.
        """
        second = self._second(now)
        values = _auth_headers(headers)
        fp, stamp, nonce, signature = (values[name] for name in _HEADERS)
        if not _TIMESTAMP_RE.fullmatch(stamp):
            raise AuthError(f"Invalid {HEADER_TIMESTAMP} header (expected unix seconds).")
        offset = int(stamp) - second
        if offset < -self.skew:
            raise AuthError(f"Request timestamp is {-offset} s old (limit {self.skew} s); check the clock.")
        if offset > self.skew:
            raise AuthError(
                f"Request timestamp is {offset} s in the future (limit {self.skew} s); check the clock."
            )
        if not _NONCE_RE.fullmatch(nonce):
            raise AuthError(f"Invalid {HEADER_NONCE} header (expected 16-128 characters of A-Za-z0-9_-).")
        key = self._authorized_key(fp)
        if self._nonces.seen(nonce, second):
            raise AuthError("Nonce was already used (replayed request).")
        sshsig.verify(_decode_signature_header(signature), signed_message(stamp, nonce, body), key.blob)
        if not self._nonces.add(nonce, int(stamp) + self.skew, second):
            raise AuthError("Nonce was already used (replayed request).")
        return key

    def _authorized_key(self, fp: str) -> AuthorizedKey:
        try:
            keys = self._keys.keys()
        except ConfigError as exc:
            raise MissingAuthError(str(exc)) from None
        if keys is None:
            raise MissingAuthError(f"There is no authorized keys file ({self._keys.path}); add a key with "
                                   "tako-server authorize-key.")
        if not _FINGERPRINT_RE.fullmatch(fp):
            raise AuthError(f"Invalid {HEADER_FINGERPRINT} header (expected SHA256:<43 base64 chars>).")
        key = keys.get(fp)
        if key is None:
            raise AuthError(f"Key {fp} is not authorized; add it with tako-server authorize-key.")
        return key


def _auth_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The four signing headers, trimmed, checked in Tako's order: for each header in turn, missing
    or blank → MissingAuthError, not visible ASCII (or given twice) → AuthError."""
    found: dict[str, list[str]] = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower in _HEADERS:
            found.setdefault(lower, []).append(value)
    values: dict[str, str] = {}
    for name in _HEADERS:
        given = found.get(name)
        if not given:
            raise MissingAuthError(f"Missing {name} header; the request must be signed.")
        if len(given) > 1:
            raise AuthError(f"Duplicate {name} header.")
        if not all(ch == "\t" or " " <= ch <= "~" for ch in given[0]):
            raise AuthError(f"The {name} header holds characters other than visible ASCII.")
        values[name] = given[0].strip()
        if not values[name]:
            raise MissingAuthError(f"Blank {name} header; the request must be signed.")
    return values


def _decode_signature_header(value: str) -> str:
    if len(value) > _MAX_SIGNATURE_HEADER:
        raise AuthError(f"{HEADER_SIGNATURE} header is too long.")
    try:
        return base64.b64decode(value, validate=True).decode("ascii")
    except (binascii.Error, ValueError):
        raise AuthError(f"{HEADER_SIGNATURE} header is not base64 of an armored SSH signature.") from None
