"""Make an Ed25519 key pair in OpenSSH format for the demo (private 0600, public .pub)."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..primitives.atomic_files import write_atomic


def make_key(path: Path, comment: str = "tako-demo") -> Path:
    """Write ``path`` (never over an existing key) and ``path.pub``; returns the public key path.

    Raises FileExistsError when ``path`` exists, OSError when writing fails."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(path, private, mode=0o600, exclusive=True)
    pub = path.with_name(path.name + ".pub")
    write_atomic(pub, public + f" {comment}\n".encode())
    return pub
