"""Backup key rotation in ``.tako/secrets.json``: add a key (it becomes the active one, the last
in the list) and retire an old one. Servers get the new list with the next ``tako backups now``
or deploy; re-encrypting old backups and checking that none still needs a key is the server's
and the CLI's part. Key values are never returned or printed, only ids.
"""

from __future__ import annotations

import base64
import os

from ..errors import ConfigError
from ..primitives.names import is_backup_key_id
from .backup_keys import backups_enabled, new_backup_key_id
from .envkeys import KeyPrompts
from .model import Project
from .secrets import EncryptedBackupKey, Secrets, open_env_key, save_secrets, seal

__all__ = ["check_retirable", "retire_backup_key", "rotate_backup_key"]


def rotate_backup_key(project: Project, secrets: Secrets, env: str, prompts: KeyPrompts | None = None, *,
                      save: bool = True) -> str:
    """Add a new random backup key to ``env`` as its active key and return its id.

    secrets.json is written atomically (mode 0600) unless ``save`` is False. Raises ConfigError
    when backups are not enabled for ``env``, the env key is missing or wrong, or the write fails.
    """
    if not backups_enabled(project, env):
        raise ConfigError(f"Backups are not enabled for environment '{env}'. Add "
                          f'`backup = {{ storage = "<resource>" }}` under [envs.{env}] in tako.toml.')
    key = open_env_key(secrets, env, prompts, create=True)
    env_secrets = secrets.ensure_env(env)
    taken = {k.id for k in env_secrets.backup_keys}
    new_id = new_backup_key_id()
    while new_id in taken:
        new_id = new_backup_key_id()
    value = seal(base64.b64encode(os.urandom(32)).decode(), key.key)
    env_secrets.backup_keys.append(EncryptedBackupKey(new_id, value))
    if save:
        save_secrets(secrets)
    return new_id


def check_retirable(secrets: Secrets, env: str, key_id: str) -> None:
    """Raise ConfigError unless ``key_id`` is an older (not the active) backup key of ``env``."""
    if not is_backup_key_id(key_id):
        raise ConfigError(f"'{key_id}' is not a backup key id (expected backup-key-<16 hex>).")
    found = secrets.envs.get(env)
    keys = [] if found is None else [k.id for k in found.backup_keys]
    if key_id not in keys:
        raise ConfigError(f"Environment '{env}' has no backup key '{key_id}' in {secrets.path}.")
    if keys[-1] == key_id:
        raise ConfigError(f"Key {key_id} is the active backup key of '{env}'; run "
                          f"`tako backups keys rotate --env {env}` first.")


def retire_backup_key(secrets: Secrets, env: str, key_id: str, *, save: bool = True) -> None:
    """Remove the older backup key ``key_id`` from ``env`` (see :func:`check_retirable`) and save
    secrets.json atomically unless ``save`` is False. Raises ConfigError."""
    check_retirable(secrets, env, key_id)
    env_secrets = secrets.envs[env]
    env_secrets.backup_keys = [k for k in env_secrets.backup_keys if k.id != key_id]
    if save:
        save_secrets(secrets)
