"""``tako-backups.toml``: our settings beyond Tako's, per environment, next to tako.toml.

Tako never reads this file (tako.toml must stay loadable by Tako, which refuses unknown keys), and
the encrypted values here stay out of ``.tako/secrets.json`` (Tako refuses unknown credential names
there, and its deploy fails on storage credentials that no binding or backup uses). Shape::

    [envs.production]
    every = "1h"                 # 15m .. 24h; default 24h (Tako's)
    keep_last = 3                # restic-style tiers; none set -> 30 days (Tako's)
    keep_hourly = 24             # also keep_daily, keep_weekly, keep_monthly; or retention_days
    copy_to = "backups-copy"     # a private [storages.*] resource of tako.toml
    format = 2                   # optional: force archive format 2 (1 or 2)
    [envs.production.notify]
    webhook = "https://hooks.example.com/tako"
    command = ["/usr/local/bin/page-me", "--team", "ops"]
    [envs.production.secrets]    # written by our commands, encrypted with the env key
    copy_access_key_id = { value = "<enc>", expires_on = "YYYY-MM-DD" }
    copy_secret_access_key = { value = "<enc>", expires_on = "YYYY-MM-DD" }
    webhook_secret = { value = "<enc>" }

Parsing is strict: an unknown key is refused with a message naming it and the file.
:func:`backup_extensions_for` gives one env's settings, decrypted, for the commands that send them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..models import StorageBinding
from ..policy import TIERS, BackupPolicy, NotifySettings, parse_env_settings
from ..primitives.text import printable
from .envkeys import EnvKey, KeyPrompts
from .model import Project
from .secrets import Secrets, SecretValue, decrypt, open_env_key, parse_secret_value, storage_credentials

SETTINGS_NAME = "tako-backups.toml"
POLICY_KEYS = ("every", "retention_days", *TIERS)
ENV_KEYS = (*POLICY_KEYS, "copy_to", "format", "notify", "secrets")
COPY_ACCESS_KEY_ID = "copy_access_key_id"
COPY_SECRET_ACCESS_KEY = "copy_secret_access_key"
WEBHOOK_SECRET = "webhook_secret"
SECRET_NAMES = (COPY_ACCESS_KEY_ID, COPY_SECRET_ACCESS_KEY, WEBHOOK_SECRET)
FORMATS = (1, 2)


@dataclass(frozen=True)
class EnvSettings:
    """One ``[envs.<env>]`` table, checked; secret values still encrypted."""

    env: str
    table: dict[str, Any]
    copy_to: str | None = None
    format: int | None = None
    secrets: dict[str, SecretValue] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"[envs.{self.env}] of {SETTINGS_NAME}"


@dataclass(frozen=True)
class BackupSettings:
    """Every env's settings, and the file they live in (absent: no settings)."""

    path: Path
    envs: dict[str, EnvSettings] = field(default_factory=dict)


@dataclass(frozen=True)
class BackupExtensions:
    """One env's settings beyond Tako's, decrypted, ready to send: ``policy`` (Tako's every 24 h /
    30 days when nothing is set), ``notify`` (or None), ``copy_binding`` (the ``copy_to`` storage
    with its credentials, or None) and ``format`` (1, 2, or None when not forced)."""

    policy: BackupPolicy = field(default_factory=BackupPolicy)
    notify: NotifySettings | None = None
    copy_binding: StorageBinding | None = None
    format: int | None = None

    @property
    def is_default(self) -> bool:
        """True when nothing differs from Tako (callers then send Tako's shapes unchanged)."""
        return self == BackupExtensions()


def settings_path(project: Project) -> Path:
    """``tako-backups.toml`` next to the project's tako.toml."""
    return project.app_dir / SETTINGS_NAME


def uses_resource(project: Project, env: str, resource: str) -> bool:
    """True when Tako itself uses ``resource`` in ``env`` (a binding or the backup), so its
    credentials belong in secrets.json."""
    config = project.envs.get(env)
    return config is not None and (resource in config.storages.values() or config.backup_storage == resource)


def load_backup_settings(project: Project) -> BackupSettings:
    """Read and check ``tako-backups.toml`` (a missing file means no settings).

    Raises ConfigError naming the key and the file for an unknown key, a value that breaks a rule
    (policy, notify, ``format``), an env tako.toml does not declare, or a ``copy_to`` that is not a
    private storage resource of tako.toml other than the env's backup storage.
    """
    from .tako_toml import read_toml

    path = settings_path(project)
    if not path.exists():
        return BackupSettings(path=path)
    return settings_from_document(project, read_toml(path, SETTINGS_NAME), path)


def settings_from_document(project: Project, document: Any, path: Path) -> BackupSettings:
    """Check a parsed tako-backups.toml (tomlkit document). Raises ConfigError as
    :func:`load_backup_settings` does."""
    data = document.unwrap()
    for key in data:
        if key != "envs":
            raise ConfigError(f"Unknown key '{printable(str(key), 40)}' in {path}; settings go under "
                              "[envs.<env>].")
    envs = data.get("envs", {})
    if not isinstance(envs, Mapping):
        raise ConfigError(f"'envs' in {path} must be tables like [envs.production].")
    return BackupSettings(path=path, envs={name: _env(project, name, table, path)
                                           for name, table in envs.items()})


def _env(project: Project, env: str, table: Any, path: Path) -> EnvSettings:
    where = f"[envs.{env}] of {SETTINGS_NAME}"
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where} must be a table.")
    if env not in project.envs:
        raise ConfigError(f"Environment '{env}' in {path} is not declared in tako.toml; add [envs.{env}] "
                          "there or remove it here.")
    for key in table:
        if key not in ENV_KEYS:
            raise ConfigError(f"Unknown key '{printable(str(key), 40)}' in {where}; the keys are "
                              f"{', '.join(ENV_KEYS)}.")
    policy_table = {k: v for k, v in table.items() if k in (*POLICY_KEYS, "notify")}
    secrets = _secrets(table.get("secrets", {}), env, path)
    parse_env_settings(policy_table, where)
    if WEBHOOK_SECRET in secrets and not (isinstance(table.get("notify"), Mapping)
                                          and "webhook" in table["notify"]):
        raise ConfigError(f"The webhook secret for {where} is set but there is no notify.webhook; add one "
                          "or remove the secret.")
    fmt = table.get("format")
    if fmt is not None and (isinstance(fmt, bool) or fmt not in FORMATS):
        raise ConfigError(f"`format` in {where} must be 1 or 2 (2 forces archive format 2); leave it out "
                          "for the default.")
    copy_to = table.get("copy_to")
    if copy_to is not None:
        _check_copy_to(project, env, copy_to, where)
    return EnvSettings(env=env, table=policy_table, copy_to=copy_to, format=fmt, secrets=secrets)


def _secrets(table: Any, env: str, path: Path) -> dict[str, SecretValue]:
    where = f"[envs.{env}] of {SETTINGS_NAME}"
    if not isinstance(table, Mapping):
        raise ConfigError(f"`secrets` in {where} must be a table of encrypted values.")
    out = {}
    for name, value in table.items():
        if name not in SECRET_NAMES:
            raise ConfigError(f"Unknown secret '{printable(str(name), 40)}' in {where}; the secrets are "
                              f"{', '.join(SECRET_NAMES)}.")
        out[name] = parse_secret_value(value, path, f"[envs.{env}.secrets] {name}")
    if (COPY_ACCESS_KEY_ID in out) != (COPY_SECRET_ACCESS_KEY in out):
        raise ConfigError(f"{where} has only one of {COPY_ACCESS_KEY_ID} and {COPY_SECRET_ACCESS_KEY}; run "
                          "`tako storages credentials <copy_to resource>` to set both.")
    return out


def _check_copy_to(project: Project, env: str, copy_to: Any, where: str) -> None:
    if not isinstance(copy_to, str) or not copy_to:
        raise ConfigError(f"`copy_to` in {where} must name a storage resource of tako.toml, "
                          'e.g. copy_to = "backups-copy".')
    resource = project.storages.get(copy_to)
    if resource is None:
        raise ConfigError(f"`copy_to` in {where} names '{printable(copy_to, 40)}', which is not declared "
                          f"in tako.toml; add [storages.{printable(copy_to, 40)}] there.")
    if resource.public_base_url is not None:
        raise ConfigError(f"`copy_to` in {where} names '{copy_to}', which has a public_base_url; backup "
                          "copies need a private storage resource.")
    if project.envs[env].backup_storage == copy_to:
        raise ConfigError(f"`copy_to` in {where} names '{copy_to}', the env's own backup storage; name "
                          "another storage resource.")


def copy_only_resource(project: Project, settings: BackupSettings, env: str, resource: str) -> bool:
    """True when ``resource`` is ``env``'s ``copy_to`` and Tako does not use it in ``env``: its
    credentials then live in ``[envs.<env>.secrets]`` of tako-backups.toml, not in secrets.json."""
    found = settings.envs.get(env)
    return found is not None and found.copy_to == resource and not uses_resource(project, env, resource)


def backup_extensions_for(project: Project, env: str, secrets: Secrets, prompts: KeyPrompts | None = None,
                          *, settings: BackupSettings | None = None) -> BackupExtensions:
    """``env``'s settings from tako-backups.toml, decrypted with the env key (opened only when a
    secret is needed): the copy's credentials come from secrets.json when Tako uses the resource
    in ``env`` too, else from ``[envs.<env>.secrets]``.

    Raises ConfigError for a broken settings file, missing copy credentials, or an env key that
    is missing or does not decrypt.
    """
    settings = settings if settings is not None else load_backup_settings(project)
    found = settings.envs.get(env)
    if found is None:
        return BackupExtensions()
    key: EnvKey | None = None

    def env_key() -> EnvKey:
        nonlocal key
        key = key or open_env_key(secrets, env, prompts)
        return key

    secret = found.secrets.get(WEBHOOK_SECRET)
    webhook_secret = None if secret is None else decrypt(secret.value, env_key(), env, "webhook secret")
    policy, notify = parse_env_settings(found.table, found.where, webhook_secret)
    copy = None
    if found.copy_to is not None:
        resource = project.storages[found.copy_to]
        access_key_id, secret_access_key = _copy_credentials(project, secrets, found, env_key)
        copy = StorageBinding(bucket=resource.bucket, endpoint=resource.endpoint, region=resource.region,
                              access_key_id=access_key_id, secret_access_key=secret_access_key,
                              force_path_style=resource.force_path_style)
    return BackupExtensions(policy=policy, notify=notify, copy_binding=copy, format=found.format)


def _copy_credentials(project: Project, secrets: Secrets, found: EnvSettings,
                      env_key: Any) -> tuple[str, str]:
    resource, env = found.copy_to, found.env
    assert resource is not None
    if uses_resource(project, env, resource):
        return storage_credentials(secrets, env, resource, env_key())
    if COPY_ACCESS_KEY_ID not in found.secrets:
        raise ConfigError(f"Backup copy to '{resource}' has no credentials for environment '{env}'. Run "
                          f"`tako storages credentials {resource} --env {env}`.")
    what = f"credentials of backup copy storage '{resource}'"
    return (decrypt(found.secrets[COPY_ACCESS_KEY_ID].value, env_key(), env, what),
            decrypt(found.secrets[COPY_SECRET_ACCESS_KEY].value, env_key(), env, what))
