"""The server's SSH identity, as Tako's server keeps it: ``identity.key`` and ``identity.pub``.

On first start an Ed25519 key is made and written as an OpenSSH private key (``identity.key``,
0600, never replaced); at every start ``identity.pub`` is (re)written from it as one OpenSSH
public key line with the comment ``tako-server identity``. The identity ``hello`` and
``server_info`` report is the key's OpenSSH SHA-256 fingerprint (``SHA256:...``). A key Tako's
server made is read as it is (any key type OpenSSH writes), so a data dir moves between the two.
(This is not the TLS identity of ``serve --tls``: that is a certificate under ``tls/``.)
"""

from __future__ import annotations

import base64
import logging
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from ..errors import ConfigError
from ..primitives.atomic_files import os_reason, write_atomic
from ..remote import sshwire

__all__ = ["IDENTITY_COMMENT", "IDENTITY_KEY_FILE", "IDENTITY_PUBLIC_FILE", "ensure_server_identity",
           "read_server_identity"]

log = logging.getLogger(__name__)

IDENTITY_KEY_FILE = "identity.key"
IDENTITY_PUBLIC_FILE = "identity.pub"
IDENTITY_COMMENT = "tako-server identity"


def ensure_server_identity(root: Path) -> str:
    """The fingerprint of ``{root}/identity.key``, made first when it does not exist; writes
    ``identity.pub`` when it is missing or differs.

    Raises ConfigError when the key cannot be read, parsed or written.
    """
    key_path = root / IDENTITY_KEY_FILE
    if not key_path.exists():
        key = ed25519.Ed25519PrivateKey.generate()
        data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                 serialization.NoEncryption())
        try:
            root.mkdir(parents=True, exist_ok=True)
            write_atomic(key_path, data, mode=0o600, exclusive=True)
            log.info("made the server identity %s", key_path)
        except FileExistsError:
            pass  # another start made it first: use that one
        except OSError as exc:
            raise ConfigError(f"Cannot write the server identity {key_path}: {os_reason(exc)}.") from None
    blob = _public_blob(key_path)
    line = f"{sshwire.key_type_of(blob)} {base64.b64encode(blob).decode('ascii')} {IDENTITY_COMMENT}\n"
    public_path = root / IDENTITY_PUBLIC_FILE
    try:
        if not public_path.exists() or public_path.read_text(encoding="utf-8", errors="replace") != line:
            write_atomic(public_path, line.encode("ascii"), mode=0o644)
    except OSError as exc:
        raise ConfigError(f"Cannot write the server identity {public_path}: {os_reason(exc)}.") from None
    return sshwire.fingerprint_of_blob(blob)


def read_server_identity(root: Path) -> str | None:
    """The fingerprint of ``{root}/identity.key``, or None when there is none (nothing is made).

    Raises ConfigError when it exists but cannot be read or parsed.
    """
    key_path = root / IDENTITY_KEY_FILE
    return sshwire.fingerprint_of_blob(_public_blob(key_path)) if key_path.exists() else None


def _public_blob(key_path: Path) -> bytes:
    try:
        data = key_path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"Cannot read the server identity {key_path}: {os_reason(exc)}.") from None
    try:
        key = serialization.load_ssh_private_key(data, password=None)
        return sshwire.public_key_blob(key.public_key())  # type: ignore[arg-type]
    except (ValueError, TypeError, UnsupportedAlgorithm, sshwire.WireError):
        raise ConfigError(f"The server identity {key_path} is not an unencrypted OpenSSH private key of a "
                          "type SSH signs with; move it away to make a new one.") from None
