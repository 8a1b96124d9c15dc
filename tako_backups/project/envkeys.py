"""Environment keys: the AES-256-GCM keys that encrypt values in ``.tako/secrets.json``.

A key is 32 random bytes kept as base64 in ``<data dir>/keys/<key_id>`` (mode 0600), or derived
from a passphrase (PBKDF2-HMAC-SHA256, 600,000 rounds, salt ``tako-secrets-v1:<key_id>``) when
``TAKO_SECRETS_PASSPHRASE`` is set or the user picks a passphrase. Prompts are the caller's job:
it passes them in as :class:`KeyPrompts`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets as random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from .files import ensure_private_dir, write_file
from .paths import keys_dir

PASSPHRASE_ENV = "TAKO_SECRETS_PASSPHRASE"
PBKDF2_ROUNDS = 600_000
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16


@dataclass(frozen=True)
class EnvKey:
    """A usable environment key and where it came from (for messages; never the key itself)."""

    key_id: str
    key: bytes = field(repr=False)
    source: str
    created: bool = False


@dataclass(frozen=True)
class KeyPrompts:
    """Questions the CLI may ask on a terminal.

    ``choose_passphrase(env)``: when a new key is made, a passphrase to derive it from, or None for
    a random key file. ``ask_passphrase(env, key_id)``: when the key file is missing, a passphrase
    to derive it from, or None to give up.
    """

    choose_passphrase: Callable[[str], str | None] | None = None
    ask_passphrase: Callable[[str, str], str | None] | None = None


class Undecryptable(Exception):
    """A value is not valid base64, or its AES-GCM tag does not match under this key."""


def new_key_id() -> str:
    return random.token_hex(8)


def key_path(key_id: str) -> Path:
    return keys_dir() / key_id


def derive_key(passphrase: str, key_id: str) -> bytes:
    """PBKDF2-HMAC-SHA256 of the passphrase with Tako's salt. Raises ConfigError when it is empty."""
    if not passphrase:
        raise ConfigError("Passphrase cannot be empty.")
    salt = f"tako-secrets-v1:{key_id}".encode()
    return hashlib.pbkdf2_hmac("sha256", passphrase.encode(), salt, PBKDF2_ROUNDS, KEY_BYTES)


def seal(plaintext: str, key: bytes) -> str:
    """``base64(nonce || ciphertext || tag)`` of the UTF-8 text under ``key`` (AES-256-GCM)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(NONCE_BYTES)
    return base64.b64encode(nonce + AESGCM(key).encrypt(nonce, plaintext.encode(), None)).decode()


def unseal(token: str, key: bytes) -> str:
    """The text sealed in ``token``. Raises Undecryptable (never showing the token)."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    try:
        raw = base64.b64decode(token, validate=True)
    except (binascii.Error, ValueError):
        raise Undecryptable("not base64") from None
    if len(raw) < NONCE_BYTES + TAG_BYTES:
        raise Undecryptable("too short")
    try:
        return AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], None).decode()
    except (InvalidTag, UnicodeDecodeError):
        raise Undecryptable("wrong key or damaged value") from None


def read_key_file(key_id: str) -> bytes | None:
    """The key stored for ``key_id``, or None when there is no key file.

    Raises ConfigError when the file cannot be read or does not hold base64 of 32 bytes.
    """
    path = key_path(key_id)
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Cannot read key file {path}: {getattr(exc, 'strerror', None) or exc}.") from None
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise ConfigError(f"Key file {path} is damaged: it must hold base64 of {KEY_BYTES} bytes.")
    return key


def write_key_file(key_id: str, key: bytes) -> Path:
    """Store a new key file (mode 0600, folder 0700); an existing key file is never replaced.

    Raises ConfigError when it cannot be written or already exists.
    """
    path = key_path(key_id)
    ensure_private_dir(path.parent)
    write_file(path, base64.b64encode(key), mode=0o600, exclusive=True)
    return path


def save_imported_key(key_id: str, key: bytes, *, proven: bool) -> Path:
    """Store an imported key as ``<data dir>/keys/<key_id>`` (mode 0600, folder 0700). A key file
    that already holds this key is left as it is; one that holds another key (or is damaged) is
    replaced atomically only when ``proven`` (the key decrypted the env's values).

    Raises ConfigError when the file cannot be written, or holds another key and the import is not
    proven.
    """
    path = key_path(key_id)
    try:
        existing = read_key_file(key_id)
    except ConfigError:
        existing = b""
    if existing is None:
        return write_key_file(key_id, key)
    if existing == key:
        return path
    if not proven:
        raise ConfigError(f"{path} already holds another key for {key_id}, and the imported key could not "
                          "be checked against any encrypted value. Move that file away to import this key.")
    write_file(path, base64.b64encode(key), mode=0o600)
    return path


def find_env_key(env: str, key_id: str, prompts: KeyPrompts | None = None,
                 verify: Callable[[bytes], bool] | None = None) -> EnvKey | None:
    """The env's key from its key file, ``TAKO_SECRETS_PASSPHRASE`` or a passphrase prompt (whose
    derived key, once ``verify`` accepts it, is saved as the key file); None when none is found.

    Raises ConfigError for a damaged key file or a prompted passphrase that does not decrypt.
    """
    key = read_key_file(key_id)
    if key is not None:
        return EnvKey(key_id, key, f"key file {key_path(key_id)}")
    passphrase = os.environ.get(PASSPHRASE_ENV)
    if passphrase:
        return EnvKey(key_id, derive_key(passphrase, key_id), PASSPHRASE_ENV)
    if prompts is not None and prompts.ask_passphrase is not None:
        typed = prompts.ask_passphrase(env, key_id)
        if typed:
            derived = derive_key(typed, key_id)
            if verify is not None and not verify(derived):
                raise ConfigError(f"That passphrase does not decrypt the secrets of environment '{env}' "
                                  f"(key id '{key_id}').")
            write_key_file(key_id, derived)
            return EnvKey(key_id, derived, f"key file {key_path(key_id)}")
    return None


def create_env_key(env: str, key_id: str, prompts: KeyPrompts | None = None) -> EnvKey:
    """Make the key for a new env: from ``TAKO_SECRETS_PASSPHRASE`` (no file written), from a
    passphrase the user chooses (saved as the key file), or 32 random bytes (saved as the key file).

    Raises ConfigError when the key file cannot be written.
    """
    passphrase = os.environ.get(PASSPHRASE_ENV)
    if passphrase:
        return EnvKey(key_id, derive_key(passphrase, key_id), PASSPHRASE_ENV, created=True)
    chosen = prompts.choose_passphrase(env) if prompts and prompts.choose_passphrase else None
    key = derive_key(chosen, key_id) if chosen else os.urandom(KEY_BYTES)
    return EnvKey(key_id, key, f"key file {write_key_file(key_id, key)}", created=True)


def key_available(key_id: str) -> bool:
    """True when a key file exists for ``key_id`` or ``TAKO_SECRETS_PASSPHRASE`` is set."""
    return key_path(key_id).exists() or bool(os.environ.get(PASSPHRASE_ENV))


def missing_key_error(env: str, key_id: str) -> ConfigError:
    """Tako's text, then (on its own line) where we looked and our passphrase variable."""
    return ConfigError(
        f"Unable to decrypt {env} secrets. Run `tako secrets key import` to import an exported key or "
        f"passphrase.\nNo key {key_id} at {key_path(key_id)} and {PASSPHRASE_ENV} is not set.")


def wrong_key_error(env: str, key: EnvKey, what: str = "secrets") -> ConfigError:
    return ConfigError(
        f"Cannot decrypt the {what} of environment '{env}' with {key.source}. They need key "
        f"'{key.key_id}', looked for at {key_path(key.key_id)} (or derived from {PASSPHRASE_ENV}). "
        "Put the right key file there or set the right passphrase.")
