"""SSH wire encoding (RFC 4251) and the SSH public-key signature algorithms Tako accepts.

Key blobs and signature blobs are the byte strings the SSH protocol, ssh-agent and SSHSIG carry:
``string key-type || key fields`` and ``string sig-alg || string sig-bytes``.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from typing import TypeAlias

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

PublicKey: TypeAlias = ed25519.Ed25519PublicKey | rsa.RSAPublicKey | ec.EllipticCurvePublicKey
PrivateKey: TypeAlias = ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

ED25519 = "ssh-ed25519"
RSA = "ssh-rsa"
ECDSA_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "ecdsa-sha2-nistp256": hashes.SHA256,
    "ecdsa-sha2-nistp384": hashes.SHA384,
    "ecdsa-sha2-nistp521": hashes.SHA512,
}
SUPPORTED_KEY_TYPES = frozenset({ED25519, RSA, *ECDSA_HASHES})
RSA_SIGNATURE_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "rsa-sha2-512": hashes.SHA512,
    "rsa-sha2-256": hashes.SHA256,
}
RSA_MIN_BITS = 1024


class WireError(ValueError):
    """Bytes that do not follow the SSH wire encoding."""


class Reader:
    """Reads SSH wire values from a byte string; raises WireError when the data runs short."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def take(self, size: int) -> bytes:
        end = self._pos + size
        if end > len(self._data):
            raise WireError("truncated data")
        chunk = self._data[self._pos : end]
        self._pos = end
        return chunk

    def uint32(self) -> int:
        return int(struct.unpack(">I", self.take(4))[0])

    def string(self) -> bytes:
        return self.take(self.uint32())

    def text(self) -> str:
        """An algorithm or key-type name: 1 to 64 printable ASCII characters."""
        raw = self.string()
        if not 0 < len(raw) <= 64 or any(not 0x21 <= byte <= 0x7E for byte in raw):
            raise WireError("invalid algorithm name")
        return raw.decode("ascii")

    def mpint(self) -> int:
        raw = self.string()
        if raw and raw[0] & 0x80:
            raise WireError("negative mpint")
        return int.from_bytes(raw, "big")

    def done(self) -> bool:
        return self._pos == len(self._data)

    def finish(self) -> None:
        if not self.done():
            raise WireError("trailing data")


def string(value: bytes | str) -> bytes:
    """Encode an SSH ``string`` (uint32 length, then the bytes)."""
    raw = value.encode("ascii") if isinstance(value, str) else value
    return struct.pack(">I", len(raw)) + raw


def mpint(value: int) -> bytes:
    """Encode a non-negative SSH ``mpint`` (minimal two's complement, big-endian)."""
    raw = value.to_bytes((value.bit_length() + 8) // 8, "big") if value else b""
    return string(raw)


def key_type_of(blob: bytes) -> str:
    """The key type named at the start of a key blob. Raises WireError when it is malformed."""
    return Reader(blob).text()


def load_public_key(blob: bytes) -> PublicKey:
    """Turn a key blob into a public key object.

    Raises WireError for malformed blobs, unsupported key types and RSA keys under 1024 bits.
    """
    key_type = key_type_of(blob)
    if key_type not in SUPPORTED_KEY_TYPES:
        raise WireError(f"unsupported key type {key_type}")
    try:
        key = serialization.load_ssh_public_key(key_type.encode() + b" " + base64.b64encode(blob))
    except (ValueError, TypeError):
        raise WireError(f"invalid {key_type} key") from None
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < RSA_MIN_BITS:
        raise WireError(f"RSA key of {key.key_size} bits is too small")
    if not isinstance(key, (ed25519.Ed25519PublicKey, rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
        raise WireError(f"unsupported key type {key_type}")
    return key


def public_key_blob(key: PublicKey) -> bytes:
    """The SSH key blob of a public key. Raises WireError for keys SSH cannot carry."""
    try:
        line = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    except ValueError:
        raise WireError("key type not supported by SSH") from None
    blob = base64.b64decode(line.split()[1])
    if key_type_of(blob) not in SUPPORTED_KEY_TYPES:
        raise WireError(f"unsupported key type {key_type_of(blob)}")
    return blob


def fingerprint_of_blob(blob: bytes) -> str:
    """OpenSSH SHA-256 fingerprint of a key blob: ``SHA256:`` + unpadded base64 of its digest."""
    digest = hashlib.sha256(blob).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def sign_with_private_key(key: PrivateKey, data: bytes) -> bytes:
    """Sign data the way OpenSSH does and return the signature blob (RSA uses rsa-sha2-512)."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return string(ED25519) + string(key.sign(data))
    if isinstance(key, rsa.RSAPrivateKey):
        return string("rsa-sha2-512") + string(key.sign(data, padding.PKCS1v15(), hashes.SHA512()))
    key_type = key_type_of(public_key_blob(key.public_key()))
    der = key.sign(data, ec.ECDSA(ECDSA_HASHES[key_type]()))
    r, s = decode_dss_signature(der)
    return string(key_type) + string(mpint(r) + mpint(s))


def verify_signature(key_blob: bytes, signature_blob: bytes, data: bytes) -> None:
    """Check an SSH signature blob over data against a key blob.

    Raises WireError when the blob is malformed, its algorithm does not fit the key (RSA must use
    rsa-sha2-512 or rsa-sha2-256; SHA-1 ``ssh-rsa`` is refused) or the signature does not verify.
    """
    key = load_public_key(key_blob)
    key_type = key_type_of(key_blob)
    reader = Reader(signature_blob)
    algorithm = reader.text()
    raw = reader.string()
    reader.finish()
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            if algorithm != ED25519 or len(raw) != 64:
                raise WireError(f"signature algorithm {algorithm} does not fit an {key_type} key")
            key.verify(raw, data)
        elif isinstance(key, rsa.RSAPublicKey):
            if algorithm not in RSA_SIGNATURE_HASHES:
                raise WireError(f"signature algorithm {algorithm} is not accepted for RSA keys")
            size = (key.key_size + 7) // 8
            if len(raw) > size:
                raise WireError("RSA signature is longer than the key")
            padded = raw.rjust(size, b"\0")
            key.verify(padded, data, padding.PKCS1v15(), RSA_SIGNATURE_HASHES[algorithm]())
        else:
            if algorithm != key_type:
                raise WireError(f"signature algorithm {algorithm} does not fit an {key_type} key")
            inner = Reader(raw)
            r, s = inner.mpint(), inner.mpint()
            inner.finish()
            if r == 0 or s == 0:
                raise WireError("ECDSA signature has a zero component")
            key.verify(encode_dss_signature(r, s), data, ec.ECDSA(ECDSA_HASHES[key_type]()))
    except InvalidSignature:
        raise WireError("signature does not verify") from None
