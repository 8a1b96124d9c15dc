"""OpenSSH ``authorized_keys`` lines: the keys allowed to call tako-server's management RPC."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field

from tako_backups.errors import ConfigError
from tako_backups.remote import sshwire


@dataclass(frozen=True)
class AuthorizedKey:
    """One public key from an authorized keys file (options are kept but not enforced)."""

    key_type: str
    blob: bytes = field(repr=False)
    fingerprint: str
    comment: str = ""
    options: str = ""
    public_key: sshwire.PublicKey | None = field(default=None, repr=False, compare=False)

    @property
    def line(self) -> str:
        """The key as one authorized_keys line (without options)."""
        text = f"{self.key_type} {base64.b64encode(self.blob).decode('ascii')}"
        return f"{text} {self.comment}" if self.comment else text


def _split_options(line: str) -> tuple[str, str]:
    """Split a leading options field off a line, as sshd does (quotes may hold spaces)."""
    in_quote = False
    i = 0
    while i < len(line) and (in_quote or line[i] not in " \t"):
        if line[i] == "\\" and line[i + 1 : i + 2] == '"':
            i += 1
        elif line[i] == '"':
            in_quote = not in_quote
        i += 1
    return line[:i], line[i:].lstrip(" \t")


def _parse_key(key_type: str, encoded: str, comment: str, options: str) -> AuthorizedKey:
    try:
        blob = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise sshwire.WireError("the key data is not base64") from None
    if sshwire.key_type_of(blob) != key_type:
        raise sshwire.WireError(f"the key data is not a {key_type} key")
    public_key = sshwire.load_public_key(blob)
    return AuthorizedKey(
        key_type=key_type,
        blob=blob,
        fingerprint=sshwire.fingerprint_of_blob(blob),
        comment=comment,
        options=options,
        public_key=public_key,
    )


def parse_public_key(line: str) -> AuthorizedKey:
    """Parse one public key line (``ssh-ed25519 AAAA... comment``, options allowed in front).

    Raises ConfigError naming what is wrong: not a key line, an unsupported key type (only
    Ed25519, RSA and ECDSA P-256/384/521 are accepted) or damaged key data.
    """
    text = line.strip()
    if not text or text.startswith("#"):
        raise ConfigError("Not an SSH public key line (expected e.g. 'ssh-ed25519 AAAA... comment').")
    parts = text.split(None, 2)
    options = ""
    if parts[0] not in sshwire.SUPPORTED_KEY_TYPES and len(parts) > 1 and not _looks_like_key_type(parts[0]):
        options, rest = _split_options(text)
        parts = rest.split(None, 2)
    if len(parts) < 2:
        raise ConfigError("Not an SSH public key line (expected e.g. 'ssh-ed25519 AAAA... comment').")
    key_type, encoded = parts[0], parts[1]
    if key_type not in sshwire.SUPPORTED_KEY_TYPES:
        raise ConfigError(
            f"SSH key type {key_type} is not supported; use Ed25519, RSA or ECDSA (nistp256/384/521)."
        )
    try:
        return _parse_key(key_type, encoded, parts[2].strip() if len(parts) > 2 else "", options)
    except sshwire.WireError as exc:
        raise ConfigError(f"Invalid {key_type} public key: {exc}.") from None


def _looks_like_key_type(word: str) -> bool:
    return word.startswith(("ssh-", "ecdsa-", "sk-")) and "=" not in word and '"' not in word


def parse_authorized_keys(text: str) -> list[AuthorizedKey]:
    """Parse an authorized_keys file: every supported key, in file order, duplicates dropped.

    Blank lines and ``#`` comments are skipped; so are lines with unsupported key types or
    damaged key data (as sshd does), so one bad line never locks every client out. Never raises.
    """
    keys: list[AuthorizedKey] = []
    seen: set[str] = set()
    for line in text.splitlines():
        try:
            key = parse_public_key(line)
        except ConfigError:
            continue
        if key.fingerprint not in seen:
            seen.add(key.fingerprint)
            keys.append(key)
    return keys
