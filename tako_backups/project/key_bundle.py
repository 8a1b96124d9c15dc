"""Tako's exported key bundle (``tako secrets key export|import``, tako/src/commands/secret/key.rs)
and importing a key: from a bundle or a passphrase, checked against the env's encrypted values
before anything is written.

Bundle: URL-safe base64 without padding of the compact JSON ``{"version":1,"id":"<16 hex key
id>","key":"<standard base64 of the 32-byte key>"}``. Texts are Tako's; the detail after
``Invalid key payload: `` names the same mistake in our words.

Beyond Tako, the check also covers the env's storage credentials and the encrypted values of
tako-backups.toml (Tako checks app secrets, backup keys and credentials only), so a key that
cannot open them is never imported.
"""

from __future__ import annotations

import base64
import binascii
import json
import string
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..primitives.names import is_key_id
from .envkeys import KEY_BYTES, Undecryptable, derive_key, save_imported_key, unseal
from .secrets import EnvSecrets, Secrets

BUNDLE_VERSION = 1
_URL_SAFE = set(string.ascii_letters + string.digits + "-_")


def encode_bundle(key_id: str, key: bytes) -> str:
    """The bundle Tako's ``secrets key export`` copies to the clipboard."""
    payload = json.dumps({"version": BUNDLE_VERSION, "id": key_id, "key": base64.b64encode(key).decode()},
                         separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).rstrip(b"=").decode()


def _payload_error(detail: str) -> ConfigError:
    return ConfigError(f"Invalid key payload: {detail}")


def _unbase64(text: str) -> bytes:
    """URL-safe base64 without padding, refused as Rust's base64 crate refuses it."""
    for index, ch in enumerate(text):
        if ch not in _URL_SAFE:
            if ch == "=" and set(text[index:]) == {"="}:
                raise _payload_error("Invalid padding")
            raise _payload_error(f"Invalid symbol {ord(ch)}, offset {index}.")
    if len(text) % 4 == 1:
        raise _payload_error(f"Invalid input length: {len(text)}")
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != text:
        raise _payload_error(f"Invalid last symbol {ord(text[-1])}, offset {len(text) - 1}.")
    return raw


def decode_bundle(text: str) -> tuple[str, bytes]:
    """``(key_id, key)`` from a bundle (extra JSON fields are ignored, as Tako ignores them).

    Raises ConfigError with Tako's texts: ``Invalid key payload: ...``, ``Unsupported key version:
    {n}``, ``Validation error: Invalid key id '{id}'. Expected 16 hex characters.``,
    ``Encryption error: Invalid base64 key: ...`` and ``Encryption error: Key must be 32 bytes,
    got {n}``.
    """
    raw = _unbase64(text.strip())
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        where = f" at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise _payload_error(f"{getattr(exc, 'msg', 'not UTF-8 text')}{where}".lower()) from None
    if not isinstance(data, dict):
        raise _payload_error("invalid type: expected struct ExportedKeyBundle")
    for name in ("version", "id", "key"):
        if name not in data:
            raise _payload_error(f"missing field `{name}`")
    version, key_id, encoded = data["version"], data["id"], data["key"]
    if isinstance(version, bool) or not isinstance(version, int) or not 0 <= version <= 255:
        raise _payload_error(f"invalid value: {json.dumps(version)}, expected u8")
    if not isinstance(key_id, str) or not isinstance(encoded, str):
        raise _payload_error("invalid type: `id` and `key` must be strings")
    if version != BUNDLE_VERSION:
        raise ConfigError(f"Unsupported key version: {version}")
    if not is_key_id(key_id):
        raise ConfigError(f"Validation error: Invalid key id '{key_id}'. Expected 16 hex characters.")
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConfigError(f"Encryption error: Invalid base64 key: {exc}") from None
    if len(key) != KEY_BYTES:
        raise ConfigError(f"Encryption error: Key must be {KEY_BYTES} bytes, got {len(key)}")
    return key_id, key


@dataclass(frozen=True)
class Imported:
    """An imported key: its id, the env it belongs to (None when no env uses it), its file."""

    key_id: str
    env: str | None
    path: Path


def _opens(tokens: Iterable[str], key: bytes) -> bool:
    try:
        for token in tokens:
            unseal(token, key)
    except Undecryptable:
        return False
    return True


def check_key(secrets: Secrets, env: str, key: bytes, source: str, extra: Iterable[str] = ()) -> bool:
    """Check that ``key`` decrypts every encrypted value of ``env``: Tako's order (app secrets,
    backup keys, credentials), then ours (storage credentials, then ``extra``: the env's values in
    tako-backups.toml). Returns True when there was at least one value to prove it with.

    Raises ConfigError ``{source} does not decrypt {env} secrets.`` (or ``backup keys``,
    ``credentials``, ``storage credentials``, ``secrets in tako-backups.toml``).
    """
    found = secrets.envs.get(env)
    extra = list(extra)
    groups: list[tuple[str, list[str]]] = [
        ("secrets", []), ("backup keys", []), ("credentials", []), ("storage credentials", []),
        ("secrets in tako-backups.toml", extra)]
    if found is not None:
        groups[0][1].extend(v.value for v in found.app.values())
        groups[1][1].extend(k.value for k in found.backup_keys)
        groups[2][1].extend(v.value for v in found.credentials.values())
        for creds in found.storages.values():
            groups[3][1].extend((creds.access_key_id.value, creds.secret_access_key.value))
    for label, tokens in groups:
        if not _opens(tokens, key):
            raise ConfigError(f"{source} does not decrypt {env} {label}.")
    return any(tokens for _, tokens in groups)


def import_bundle(secrets: Secrets, key_id: str, key: bytes, env: str | None,
                  extra_for: dict[str, list[str]]) -> tuple[Imported, bool]:
    """Import a decoded bundle. With ``env``: it must have this key id in secrets.json, or get it
    (``Exported key does not match {env} key.`` otherwise); without: the first env (by name) whose
    key id this is, if any. That env's values are checked (``extra_for[env]``: its values in
    tako-backups.toml) before the key file is written. Returns the result and whether secrets.json
    changed (the caller saves it, after the key).

    Raises ConfigError as :func:`check_key` and :func:`~.envkeys.save_imported_key` do.
    """
    changed = False
    if env is not None:
        found = secrets.envs.get(env)
        if found is not None and found.key_id != key_id:
            raise ConfigError(f"Exported key does not match {env} key.")
        if found is None:
            secrets.envs[env] = EnvSecrets(key_id=key_id)
            changed = True
    else:
        env = next((name for name in sorted(secrets.envs) if secrets.envs[name].key_id == key_id), None)
    proven = env is not None and check_key(secrets, env, key, "Exported key", extra_for.get(env, []))
    return Imported(key_id, env, save_imported_key(key_id, key, proven=proven)), changed


def passphrase_key(secrets: Secrets, env: str, passphrase: str,
                   extra: Iterable[str] = ()) -> tuple[bytes, bool]:
    """The env's key derived from ``passphrase`` (the env gets a new key id when it has none),
    checked against its values, and whether there was a value to prove it with.

    Raises ConfigError ``Passphrase cannot be empty.`` or ``Invalid passphrase.``
    """
    if not passphrase:
        raise ConfigError("Passphrase cannot be empty.")
    key = derive_key(passphrase, secrets.ensure_env(env).key_id)
    try:
        proven = check_key(secrets, env, key, "Passphrase", extra)
    except ConfigError:
        raise ConfigError("Invalid passphrase.") from None
    return key, proven


def save_passphrase_key(secrets: Secrets, env: str, key: bytes, proven: bool) -> Imported:
    """Store a key from :func:`passphrase_key`. Raises ConfigError as
    :func:`~.envkeys.save_imported_key` does."""
    key_id = secrets.envs[env].key_id
    return Imported(key_id, env, save_imported_key(key_id, key, proven=proven))
