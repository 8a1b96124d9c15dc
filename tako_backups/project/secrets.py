"""``.tako/secrets.json``: Tako's per-environment encrypted values, read and written exactly.

Field order follows Tako (``key_id``, ``backup_keys``, ``app``, ``storages``, ``credentials``;
``value`` then ``expires_on``), map keys are sorted, ``backup_keys``/``credentials`` are left out
when empty, the JSON is pretty-printed without a trailing newline and the file mode is 0600.
Unknown fields are errors. Values stay encrypted in memory; see :func:`open_env_key`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, FormatError
from ..primitives.json_shapes import check_fields
from ..primitives.names import env_name_problem, is_backup_key_id, is_key_id, storage_name_problem
from .envkeys import (
    EnvKey,
    KeyPrompts,
    Undecryptable,
    create_env_key,
    find_env_key,
    missing_key_error,
    new_key_id,
    seal,
    unseal,
    wrong_key_error,
)
from .expiry import parse_date
from .files import write_file


@dataclass
class SecretValue:
    """An encrypted value and its optional expiry date (``YYYY-MM-DD``)."""

    value: str = field(repr=False)
    expires_on: str | None = None


@dataclass
class StorageCredentials:
    access_key_id: SecretValue
    secret_access_key: SecretValue


@dataclass
class EncryptedBackupKey:
    id: str
    value: str = field(repr=False)


@dataclass
class EnvSecrets:
    key_id: str
    backup_keys: list[EncryptedBackupKey] = field(default_factory=list)
    app: dict[str, SecretValue] = field(default_factory=dict)
    storages: dict[str, StorageCredentials] = field(default_factory=dict)
    credentials: dict[str, SecretValue] = field(default_factory=dict)

    def encrypted_values(self) -> Iterator[str]:
        """Every encrypted value of the env (to check a key against)."""
        yield from (k.value for k in self.backup_keys)
        yield from (v.value for v in self.app.values())
        for creds in self.storages.values():
            yield creds.access_key_id.value
            yield creds.secret_access_key.value
        yield from (v.value for v in self.credentials.values())


@dataclass
class Secrets:
    """Every environment's secrets, and the file they belong in."""

    path: Path
    envs: dict[str, EnvSecrets] = field(default_factory=dict)

    def ensure_env(self, env: str) -> EnvSecrets:
        """The env's secrets, created with a new random key id when missing."""
        if env not in self.envs:
            self.envs[env] = EnvSecrets(key_id=new_key_id())
        return self.envs[env]


def _bad(path: Path, detail: str) -> ConfigError:
    """The error for a bad value in secrets.json, or (for :func:`parse_secret_value` on a ``.toml``
    file) in the settings file ``tako-backups.toml``."""
    kind = "tako-backups settings file" if path.suffix == ".toml" else "Tako secrets file"
    return ConfigError(f"{path} is not a valid {kind}: {detail}.")


def _object(value: Any, path: Path, where: str, required: tuple[str, ...],
            optional: tuple[str, ...] = ()) -> dict[str, Any]:
    try:
        return check_fields(value, where, dict.fromkeys(required, object), dict.fromkeys(optional, object))
    except FormatError as exc:
        raise _bad(path, str(exc).rstrip(".").replace(" must be a JSON object", " must be an object")) \
            from None


def parse_secret_value(value: Any, path: Path, where: str) -> SecretValue:
    """A value in Tako's format, ``{"value": "<enc>", "expires_on": "YYYY-MM-DD"}`` (expiry
    optional; nothing else allowed). Raises ConfigError naming ``path`` and ``where``."""
    obj = _object(value, path, where, ("value",), ("expires_on",))
    if not isinstance(obj["value"], str) or not obj["value"].strip():
        raise _bad(path, f"{where} value must be a non-empty string")
    expires = obj.get("expires_on")
    if expires is not None:
        if not isinstance(expires, str):
            raise _bad(path, f"{where} expires_on must be a YYYY-MM-DD string")
        try:
            parse_date(expires)
        except ConfigError:
            raise _bad(path, f"{where} expires_on '{expires}' is not a YYYY-MM-DD date") from None
    return SecretValue(obj["value"], expires)


def _map(value: Any, path: Path, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _bad(path, f"{where} must be an object")
    return value


def _env(name: str, value: Any, path: Path) -> EnvSecrets:
    where = f"environment '{name}'"
    if env_name_problem(name):
        raise _bad(path, f"environment name '{name}' is not valid")
    obj = _object(value, path, where, ("key_id",), ("backup_keys", "app", "storages", "credentials"))
    if not isinstance(obj["key_id"], str) or not is_key_id(obj["key_id"]):
        raise _bad(path, f"{where} key_id must be 16 hex characters")
    keys = obj.get("backup_keys") or []
    if not isinstance(keys, list):
        raise _bad(path, f"{where} backup_keys must be a list")
    backup_keys = []
    for item in keys:
        key = _object(item, path, f"{where} backup key", ("id", "value"))
        if not isinstance(key["id"], str) or not is_backup_key_id(key["id"]):
            raise _bad(path, f"{where} has a backup key id that is not backup-key-<16 hex>")
        if not isinstance(key["value"], str) or not key["value"].strip():
            raise _bad(path, f"{where} backup key '{key['id']}' has an empty value")
        backup_keys.append(EncryptedBackupKey(key["id"], key["value"]))
    app = {n: parse_secret_value(v, path, f"{where} secret '{n}'")
           for n, v in _map(obj.get("app"), path, f"{where} app").items()}
    storages = {}
    for resource, creds in _map(obj.get("storages"), path, f"{where} storages").items():
        if storage_name_problem(resource):
            raise _bad(path, f"{where} storage name '{resource}' is not valid")
        c = _object(creds, path, f"{where} storage '{resource}'", ("access_key_id", "secret_access_key"))
        storages[resource] = StorageCredentials(
            parse_secret_value(c["access_key_id"], path, f"{where} storage '{resource}' access_key_id"),
            parse_secret_value(c["secret_access_key"], path,
                               f"{where} storage '{resource}' secret_access_key"))
    credentials = {n: parse_secret_value(v, path, f"{where} credential '{n}'")
                   for n, v in _map(obj.get("credentials"), path, f"{where} credentials").items()}
    return EnvSecrets(obj["key_id"], backup_keys, app, storages, credentials)


def parse_secrets(text: str, path: Path) -> Secrets:
    """Parse secrets.json text (blank means empty). Raises ConfigError naming the bad field."""
    if not text.strip():
        return Secrets(path=path)
    try:
        data = json.loads(text)
    except ValueError as exc:
        where = f"line {getattr(exc, 'lineno', '?')}, column {getattr(exc, 'colno', '?')}"
        raise _bad(path, f"not valid JSON ({where})") from None
    if not isinstance(data, dict):
        raise _bad(path, "the top level must be an object of environments")
    return Secrets(path=path, envs={name: _env(name, value, path) for name, value in data.items()})


def load_secrets(path: Path) -> Secrets:
    """Read secrets.json; a missing file means no secrets. Raises ConfigError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Secrets(path=path)
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc.__class__.__name__
        raise ConfigError(f"Cannot read {path}: {reason}.") from None
    return parse_secrets(text, path)


def secret_value_fields(value: SecretValue) -> dict[str, str]:
    """``{"value": ..., "expires_on": ...}`` (expiry left out when none), Tako's order."""
    out = {"value": value.value}
    if value.expires_on is not None:
        out["expires_on"] = value.expires_on
    return out


def dump_secrets(secrets: Secrets) -> str:
    """The file text exactly as Tako writes it."""
    out: dict[str, Any] = {}
    for name in sorted(secrets.envs):
        env = secrets.envs[name]
        item: dict[str, Any] = {"key_id": env.key_id}
        if env.backup_keys:
            item["backup_keys"] = [{"id": k.id, "value": k.value} for k in env.backup_keys]
        item["app"] = {n: secret_value_fields(env.app[n]) for n in sorted(env.app)}
        item["storages"] = {r: {"access_key_id": secret_value_fields(env.storages[r].access_key_id),
                                "secret_access_key": secret_value_fields(env.storages[r].secret_access_key)}
                            for r in sorted(env.storages)}
        if env.credentials:
            item["credentials"] = {n: secret_value_fields(env.credentials[n])
                                   for n in sorted(env.credentials)}
        out[name] = item
    return json.dumps(out, indent=2, ensure_ascii=False)


def save_secrets(secrets: Secrets) -> None:
    """Write secrets.json atomically with mode 0600 (creating ``.tako/``). Raises ConfigError."""
    try:
        secrets.path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"Cannot create {secrets.path.parent}: {exc.strerror or exc}.") from None
    write_file(secrets.path, dump_secrets(secrets).encode("utf-8"), mode=0o600)


def _opens(env: EnvSecrets, key: bytes) -> bool:
    token = next(env.encrypted_values(), None)
    if token is None:
        return True
    try:
        unseal(token, key)
    except Undecryptable:
        return False
    return True


def open_env_key(secrets: Secrets, env: str, prompts: KeyPrompts | None = None, *,
                 create: bool = False) -> EnvKey:
    """The key of ``env``, checked against one of its values.

    With ``create`` a missing env gets a key id and, when it has no encrypted values yet and no key
    is found, a new key (see :func:`~.envkeys.create_env_key`); the caller saves secrets.json.
    Raises ConfigError when the env has no secrets (without ``create``), when no key is found
    (naming the key id and where it is looked for) or when the key does not decrypt its values.
    """
    if create:
        env_secrets = secrets.ensure_env(env)
    else:
        found = secrets.envs.get(env)
        if found is None:
            raise ConfigError(f"No secrets for environment '{env}' in {secrets.path}.")
        env_secrets = found
    has_values = next(env_secrets.encrypted_values(), None) is not None
    key = find_env_key(env, env_secrets.key_id, prompts if has_values else None,
                       verify=lambda k: _opens(env_secrets, k))
    if key is None:
        if create and not has_values:
            return create_env_key(env, env_secrets.key_id, prompts)
        raise missing_key_error(env, env_secrets.key_id)
    if not _opens(env_secrets, key.key):
        raise wrong_key_error(env, key)
    return key


def decrypt(token: str, key: EnvKey, env: str, what: str) -> str:
    """Decrypt one value. Raises ConfigError naming ``what``, the env and the key (not the value)."""
    try:
        return unseal(token, key.key)
    except Undecryptable:
        raise wrong_key_error(env, key, what) from None


def set_storage_credentials(secrets: Secrets, env: str, resource: str, key: EnvKey, access_key_id: str,
                            secret_access_key: str, expires_on: str | None) -> None:
    """Encrypt and store (or replace) the credentials of ``resource`` for ``env``.

    Raises ConfigError when a value is blank.
    """
    for label, text in (("Access key id", access_key_id), ("Secret access key", secret_access_key)):
        if not text.strip():
            raise ConfigError(f"{label} cannot be empty.")
    secrets.ensure_env(env).storages[resource] = StorageCredentials(
        SecretValue(seal(access_key_id, key.key), expires_on),
        SecretValue(seal(secret_access_key, key.key), expires_on))


def storage_credentials(secrets: Secrets, env: str, resource: str, key: EnvKey) -> tuple[str, str]:
    """The decrypted ``(access_key_id, secret_access_key)`` of ``resource`` in ``env``.

    Raises ConfigError when they are missing or do not decrypt.
    """
    creds = secrets.envs.get(env, EnvSecrets(key_id=key.key_id)).storages.get(resource)
    if creds is None:
        raise ConfigError(f"Storage resource '{resource}' has no credentials for environment '{env}'. "
                          f"Run `tako storages credentials {resource} --env {env}`.")
    what = f"credentials of storage '{resource}'"
    return (decrypt(creds.access_key_id.value, key, env, what),
            decrypt(creds.secret_access_key.value, key, env, what))
