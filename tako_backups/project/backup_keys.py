"""Backup keys and the decrypted backup settings the CLI sends to servers.

An env with ``backup = { storage = ... }`` gets a backup key (``backup-key-<16 hex>``, the
encrypted base64 text of 32 random bytes) the first time one is needed; the last key is active.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets as random

from ..errors import ConfigError
from ..models import DEFAULT_RETENTION_DAYS, BackupBinding, BackupKey, StorageBinding
from .envkeys import EnvKey, KeyPrompts
from .model import Project
from .secrets import (
    EncryptedBackupKey,
    Secrets,
    decrypt,
    open_env_key,
    save_secrets,
    seal,
    storage_credentials,
)


def new_backup_key_id() -> str:
    return f"backup-key-{random.token_hex(8)}"


def backups_enabled(project: Project, env: str) -> bool:
    """True when tako.toml declares the env with a ``backup`` table."""
    config = project.envs.get(env)
    return config is not None and config.backup_enabled


def needs_backup_key(project: Project, secrets: Secrets, env: str) -> bool:
    """True when backups are enabled for ``env`` and it has no backup key yet."""
    found = secrets.envs.get(env)
    return backups_enabled(project, env) and (found is None or not found.backup_keys)


def ensure_backup_keys(project: Project, secrets: Secrets, env: str, prompts: KeyPrompts | None = None,
                       *, save: bool = True) -> bool:
    """Create the env's first backup key when backups are enabled and it has none; True if created.

    The env key is opened (or created) to encrypt it, and secrets.json is saved atomically unless
    ``save`` is False. Raises ConfigError when the env key is missing or wrong, or a write fails.
    """
    if not needs_backup_key(project, secrets, env):
        return False
    key = open_env_key(secrets, env, prompts, create=True)
    value = seal(base64.b64encode(os.urandom(32)).decode(), key.key)
    secrets.ensure_env(env).backup_keys.append(EncryptedBackupKey(new_backup_key_id(), value))
    if save:
        save_secrets(secrets)
    return True


def backup_keys_for(secrets: Secrets, env: str, prompts: KeyPrompts | None = None) -> list[BackupKey]:
    """The env's backup keys, decrypted, oldest first (the last is active); [] when it has none.

    Raises ConfigError when the env key is missing or wrong, or a key is not base64 of 32 bytes.
    """
    found = secrets.envs.get(env)
    if found is None or not found.backup_keys:
        return []
    return _decrypt_keys(secrets, env, open_env_key(secrets, env, prompts))


def _decrypt_keys(secrets: Secrets, env: str, key: EnvKey) -> list[BackupKey]:
    keys = []
    for item in secrets.envs[env].backup_keys:
        text = decrypt(item.value, key, env, f"backup key '{item.id}'")
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != 32:
            raise ConfigError(f"Backup key '{item.id}' of environment '{env}' is damaged: it must be "
                              "base64 of 32 bytes.")
        keys.append(BackupKey(id=item.id, key=raw))
    return keys


def backup_binding_for(project: Project, secrets: Secrets, env: str,
                       prompts: KeyPrompts | None = None) -> BackupBinding | None:
    """The full, decrypted backup settings of ``env`` (storage with credentials, every backup key,
    retention 30 days), or None when backups are not enabled for it.

    Raises ConfigError (Tako's texts) when the backup resource has no credentials, the env has no
    backup key yet (call :func:`ensure_backup_keys` first) or the env key is missing or wrong.
    """
    if not backups_enabled(project, env):
        return None
    resource_name = project.envs[env].backup_storage
    assert resource_name is not None
    resource = project.storages[resource_name]
    found = secrets.envs.get(env)
    if found is None or resource_name not in found.storages:
        raise ConfigError(f"Missing storage credentials for resource '{resource_name}' in environment "
                          f"'{env}'.\nRun `tako storages credentials {resource_name} --env {env}`.")
    if not found.backup_keys:
        raise ConfigError("Backup encryption key is missing. Deploy or run `tako backups now` to create it.")
    key = open_env_key(secrets, env, prompts)
    keys = _decrypt_keys(secrets, env, key)
    access_key_id, secret_access_key = storage_credentials(secrets, env, resource_name, key)
    storage = StorageBinding(bucket=resource.bucket, endpoint=resource.endpoint, region=resource.region,
                             access_key_id=access_key_id, secret_access_key=secret_access_key,
                             force_path_style=resource.force_path_style)
    return BackupBinding(storage=storage, backup_keys=keys, retention_days=DEFAULT_RETENTION_DAYS)
