"""The backup settings the CLI sends to a server: Tako's binding (``backup_keys.py``) plus, from
``tako-backups.toml`` (``backup_settings.py``), our optional fields.

With nothing set in tako-backups.toml the binding is Tako's, field for field. Otherwise it carries
``policy`` (when it is not Tako's every 24 h / 30 days; ``retention_days`` then says the policy's
days, or 30 for a tiered policy, for Tako's server), ``copy`` (the ``copy_to`` storage with its
credentials), ``notify`` and ``format``; when someone is notified, each storage also carries the
day its credentials expire (``expires_on``, the earlier of the two secrets' dates), so the server
can warn 14 days before.
"""

from __future__ import annotations

from dataclasses import replace

from ..models import BackupBinding, StorageBinding
from ..policy import BackupPolicy
from .backup_keys import backup_binding_for
from .backup_settings import (
    COPY_ACCESS_KEY_ID,
    COPY_SECRET_ACCESS_KEY,
    BackupSettings,
    backup_extensions_for,
    load_backup_settings,
    uses_resource,
)
from .envkeys import KeyPrompts
from .model import Project
from .secrets import Secrets, SecretValue

__all__ = ["backup_settings_to_send", "copy_binding_for"]


def backup_settings_to_send(project: Project, secrets: Secrets, env: str,
                            prompts: KeyPrompts | None = None) -> BackupBinding | None:
    """``env``'s full, decrypted backup settings with our extensions, or None when backups are not
    enabled for it.

    Raises ConfigError as :func:`~.backup_keys.backup_binding_for` and
    :func:`~.backup_settings.backup_extensions_for` do (missing credentials or backup key, a
    broken settings file, an env key that is missing or wrong).
    """
    base = backup_binding_for(project, secrets, env, prompts)
    if base is None:
        return None
    settings = load_backup_settings(project)
    ext = backup_extensions_for(project, env, secrets, prompts, settings=settings)
    if ext.is_default:
        return base
    storage, copy = base.storage, ext.copy_binding
    if ext.notify is not None:
        resource = project.envs[env].backup_storage
        assert resource is not None
        storage = replace(storage, expires_on=_earliest(_storage_secrets(secrets, env, resource)))
        if copy is not None:
            copy = replace(copy, expires_on=_earliest(_copy_secrets(project, secrets, settings, env)))
    policy = None if ext.policy == BackupPolicy() else ext.policy
    return BackupBinding(storage=storage, backup_keys=base.backup_keys,
                         retention_days=ext.policy.tako_retention_days, policy=policy, copy=copy,
                         notify=ext.notify, format=ext.format)


def copy_binding_for(project: Project, secrets: Secrets, env: str,
                     prompts: KeyPrompts | None = None) -> StorageBinding | None:
    """The storage of ``env``'s backup copy (``copy_to``) with its credentials, or None without
    one (for reading the copy's bucket directly: ``verify``/``extract``). Raises ConfigError."""
    return backup_extensions_for(project, env, secrets, prompts).copy_binding


def _storage_secrets(secrets: Secrets, env: str, resource: str) -> list[SecretValue]:
    found = secrets.envs.get(env)
    creds = None if found is None else found.storages.get(resource)
    return [] if creds is None else [creds.access_key_id, creds.secret_access_key]


def _copy_secrets(project: Project, secrets: Secrets, settings: BackupSettings,
                  env: str) -> list[SecretValue]:
    found = settings.envs[env]
    assert found.copy_to is not None
    if uses_resource(project, env, found.copy_to):
        return _storage_secrets(secrets, env, found.copy_to)
    names = (COPY_ACCESS_KEY_ID, COPY_SECRET_ACCESS_KEY)
    return [found.secrets[name] for name in names if name in found.secrets]


def _earliest(values: list[SecretValue]) -> str | None:
    dates = [v.expires_on for v in values if v.expires_on is not None]
    return min(dates) if dates else None
