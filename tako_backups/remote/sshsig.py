"""SSHSIG (OpenSSH PROTOCOL.sshsig): the signature format of ``ssh-keygen -Y sign``.

A signature binds a message to a namespace; it carries the signer's public key, the namespace,
the hash algorithm and the SSH signature over ``"SSHSIG" || string namespace || string reserved ||
string hash_alg || string H(message)``. The armored form is what ``ssh-keygen -Y sign`` writes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from tako_backups.errors import AuthError
from tako_backups.remote import sshwire

NAMESPACE = "tako-management-rpc-v0"
MAGIC = b"SSHSIG"
VERSION = 1
ACCEPTED_HASHES = ("sha512", "sha256")
BEGIN = "-----BEGIN SSH SIGNATURE-----"
END = "-----END SSH SIGNATURE-----"
LINE_WIDTH = 70


@runtime_checkable
class Signer(Protocol):
    """Something that holds an SSH private key: a key file, or a key held by ssh-agent."""

    @property
    def public_key_blob(self) -> bytes:
        """The SSH wire blob of the public key."""
        ...

    @property
    def description(self) -> str:
        """Where the key comes from, for messages (a path or ``ssh-agent: comment``)."""
        ...

    def sign(self, data: bytes) -> bytes:
        """Sign data; return an SSH signature blob (``string alg || string sig``).

        RSA keys sign with rsa-sha2-512. Raises AuthError or ConfigError when the key cannot sign.
        """
        ...


@dataclass(frozen=True)
class Signature:
    """A parsed SSHSIG blob."""

    public_key_blob: bytes
    namespace: bytes
    reserved: bytes
    hash_algorithm: str
    signature_blob: bytes


def _digest(hash_algorithm: str, message: bytes) -> bytes:
    return hashlib.new(hash_algorithm, message).digest()


def signed_data(namespace: str, hash_algorithm: str, message: bytes) -> bytes:
    """The bytes the SSH key actually signs for an SSHSIG over message."""
    return (
        MAGIC
        + sshwire.string(namespace.encode())
        + sshwire.string(b"")
        + sshwire.string(hash_algorithm)
        + sshwire.string(_digest(hash_algorithm, message))
    )


def armor(blob: bytes) -> str:
    """Armor an SSHSIG blob exactly as ssh-keygen does (70-column base64, trailing newline)."""
    text = base64.b64encode(blob).decode("ascii")
    lines = [text[i : i + LINE_WIDTH] for i in range(0, len(text), LINE_WIDTH)]
    return "\n".join([BEGIN, *lines, END]) + "\n"


def dearmor(text: str) -> bytes:
    """Return the blob inside an armored SSH signature. Raises AuthError when it is not one."""
    lines = [line.strip() for line in text.strip().splitlines()]
    if len(lines) < 3 or lines[0] != BEGIN or lines[-1] != END:
        raise AuthError("Signature is not an armored SSH signature.")
    try:
        return base64.b64decode("".join(lines[1:-1]), validate=True)
    except (binascii.Error, ValueError):
        raise AuthError("Signature is not an armored SSH signature.") from None


def parse(blob: bytes) -> Signature:
    """Parse an SSHSIG blob. Raises AuthError when it is malformed or of another version."""
    reader = sshwire.Reader(blob)
    try:
        if reader.take(len(MAGIC)) != MAGIC:
            raise AuthError("Signature is not an SSHSIG signature.")
        version = reader.uint32()
        if version != VERSION:
            raise AuthError(f"Signature version {version} is not supported.")
        fields = [reader.string() for _ in range(3)]
        hash_algorithm = reader.text()
        signature_blob = reader.string()
        reader.finish()
    except sshwire.WireError:
        raise AuthError("Signature is malformed.") from None
    return Signature(fields[0], fields[1], fields[2], hash_algorithm, signature_blob)


def sign(
    signer: Signer, message: bytes, *, namespace: str = NAMESPACE, hash_algorithm: str = "sha512"
) -> str:
    """Make an armored SSHSIG over message, byte for byte what ``ssh-keygen -Y sign`` writes.

    Raises whatever the signer raises (AuthError, ConfigError).
    """
    if hash_algorithm not in ACCEPTED_HASHES:
        raise ValueError(f"hash algorithm must be one of {ACCEPTED_HASHES}")
    signature_blob = signer.sign(signed_data(namespace, hash_algorithm, message))
    blob = (
        MAGIC
        + VERSION.to_bytes(4, "big")
        + sshwire.string(signer.public_key_blob)
        + sshwire.string(namespace.encode())
        + sshwire.string(b"")
        + sshwire.string(hash_algorithm)
        + sshwire.string(signature_blob)
    )
    return armor(blob)


def verify(armored: str, message: bytes, key_blob: bytes, *, namespace: str = NAMESPACE) -> None:
    """Check an armored SSHSIG over message made by the key whose blob is key_blob.

    Raises AuthError naming the first thing wrong: not a signature, another key, wrong namespace,
    a hash other than sha512/sha256, or a signature that does not verify.
    """
    sig = parse(dearmor(armored))
    if sig.public_key_blob != key_blob:
        raise AuthError(
            f"Signature was made by key {sshwire.fingerprint_of_blob(sig.public_key_blob)}, "
            f"not by {sshwire.fingerprint_of_blob(key_blob)}."
        )
    if sig.namespace != namespace.encode():
        raise AuthError(f"Signature namespace is not {namespace}.")
    if sig.hash_algorithm not in ACCEPTED_HASHES:
        raise AuthError("Signature hash algorithm must be sha512 or sha256.")
    data = signed_data(namespace, sig.hash_algorithm, message)
    try:
        sshwire.verify_signature(key_blob, sig.signature_blob, data)
    except sshwire.WireError as exc:
        raise AuthError(f"Bad signature: {exc}.") from None
