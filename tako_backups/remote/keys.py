"""Client key discovery: which SSH keys the client tries, in Tako's order.

With a server's ``key_path`` only that key is used (through ssh-agent when the file is encrypted
and the agent holds it). Otherwise: ``~/.ssh/id_ed25519``, ``id_rsa``, ``id_ecdsa`` (those that
exist and load), then the keys of the ssh-agent at ``$SSH_AUTH_SOCK``.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Iterator
from pathlib import Path

from tako_backups.errors import AuthError, ConfigError
from tako_backups.remote import sshwire
from tako_backups.remote.agent import agent_signers
from tako_backups.remote.signing import EncryptedKeyError, FileSigner, Signer

DEFAULT_KEY_NAMES = ("id_ed25519", "id_rsa", "id_ecdsa")
_OPENSSH_MAGIC = b"openssh-key-v1\0"


def discover_signers(key_path: str | None) -> list[Signer]:
    """Every key the client should try, in order (see the module docstring).

    Raises ConfigError when key_path cannot be used, or when no key at all is found (the
    message says what was tried and why files were skipped). A missing agent is no error.
    """
    return list(iter_signers(key_path))


def iter_signers(key_path: str | None) -> Iterator[Signer]:
    """Like discover_signers, but lazy: ssh-agent is asked only once the key files are used up.

    Raises ConfigError as discover_signers does (at the end, when nothing was yielded).
    """
    if key_path:
        yield _signer_for_path(Path(key_path).expanduser())
        return
    ssh_dir = Path.home() / ".ssh"
    used: set[bytes] = set()
    skipped: list[str] = []
    for name in DEFAULT_KEY_NAMES:
        path = ssh_dir / name
        if not path.is_file():
            continue
        try:
            signer = FileSigner.load(path)
        except ConfigError as exc:
            skipped.append(str(exc))
            continue
        used.add(signer.public_key_blob)
        yield signer
    for agent_signer in _agent_signers():
        if agent_signer.public_key_blob not in used:
            used.add(agent_signer.public_key_blob)
            yield agent_signer
    if not used:
        raise ConfigError(_no_key_message(ssh_dir, skipped))


def _agent_signers() -> list[Signer]:
    socket_path = os.environ.get("SSH_AUTH_SOCK")
    if not socket_path:
        return []
    try:
        signers: list[Signer] = [*agent_signers(socket_path)]
        return signers
    except AuthError:
        return []


def _signer_for_path(path: Path) -> Signer:
    try:
        return FileSigner.load(path)
    except EncryptedKeyError:
        blob = public_blob_beside(path)
        if blob is not None:
            for signer in _agent_signers():
                if signer.public_key_blob == blob:
                    return signer
        raise


def public_blob_beside(path: Path) -> bytes | None:
    """The public key of a private key file without decrypting it, or None when unknown.

    Reads the unencrypted public part of an OpenSSH key file, else the ``.pub`` file beside it.
    """
    try:
        data = path.read_bytes()
        blob = _openssh_public_blob(data)
        if blob is not None:
            return blob
        pub = path.with_name(path.name + ".pub").read_text(encoding="ascii")
        return base64.b64decode(pub.split()[1], validate=True)
    except (OSError, UnicodeDecodeError, IndexError, binascii.Error, ValueError):
        return None


def _openssh_public_blob(data: bytes) -> bytes | None:
    lines = data.decode("ascii", "replace").strip().splitlines()
    if len(lines) < 3 or lines[0] != "-----BEGIN OPENSSH PRIVATE KEY-----":
        return None
    try:
        raw = base64.b64decode("".join(lines[1:-1]))
    except (binascii.Error, ValueError):
        return None
    if not raw.startswith(_OPENSSH_MAGIC):
        return None
    reader = sshwire.Reader(raw[len(_OPENSSH_MAGIC) :])
    try:
        for _ in range(3):
            reader.string()
        if reader.uint32() != 1:
            return None
        return reader.string()
    except sshwire.WireError:
        return None


def _no_key_message(ssh_dir: Path, skipped: list[str]) -> str:
    agent = "ssh-agent" if os.environ.get("SSH_AUTH_SOCK") else "ssh-agent (SSH_AUTH_SOCK is not set)"
    tried = ", ".join(str(ssh_dir / name) for name in DEFAULT_KEY_NAMES)
    message = f"No usable SSH key: tried {tried} and {agent}"
    if skipped:
        message += " (" + "; ".join(reason.rstrip(".") for reason in skipped) + ")"
    return message + "; create one with ssh-keygen -t ed25519 or set key_path for the server."
