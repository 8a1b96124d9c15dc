"""Writing encrypted values into ``tako-backups.toml`` (``[envs.<env>.secrets]``), keeping every
other line and comment (tomlkit), and the deploy checks of those values.

The values are sealed with the env's key from ``.tako/secrets.json``, in Tako's value format
(``{ value = "<enc>", expires_on = "YYYY-MM-DD" }``). A new file starts with a comment saying
what it is.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .backup_settings import (
    COPY_ACCESS_KEY_ID,
    COPY_SECRET_ACCESS_KEY,
    SETTINGS_NAME,
    BackupSettings,
    load_backup_settings,
    settings_from_document,
    settings_path,
    uses_resource,
)
from .expiry import EXPIRY_WARNING_DAYS, expires_soon, is_expired
from .files import write_file
from .model import Project
from .secrets import SecretValue, secret_value_fields
from .validation import CheckResult

HEADER = (
    "# tako-backups' settings beyond Tako's (Tako never reads this file; commit it).\n"
    "# Values under [envs.<env>.secrets] are encrypted with the env's key, like .tako/secrets.json.\n"
)


def store_extension_secrets(project: Project, env: str, values: Mapping[str, SecretValue]) -> Path:
    """Set ``values`` (already encrypted) under ``[envs.<env>.secrets]``, creating the file or the
    tables when missing; every other line stays. The file is checked before and after the edit
    and replaced atomically.

    Raises ConfigError when the existing file is broken or cannot be written.
    """
    import tomlkit

    from .tako_toml import parse_toml, read_text

    load_backup_settings(project)
    path = settings_path(project)
    text = read_text(path, SETTINGS_NAME) if path.exists() else HEADER
    document = parse_toml(text, path)
    envs = _child(document, "envs", super_table=True)
    env_table = _child(envs, env, super_table=env not in envs)
    secrets = _child(env_table, "secrets")
    for name, value in values.items():
        item = tomlkit.inline_table()
        item.update(secret_value_fields(value))
        secrets[name] = item
    new_text = document.as_string()
    if not new_text.endswith("\n"):
        new_text += "\n"
    settings_from_document(project, parse_toml(new_text, path), path)
    write_file(path, new_text.encode("utf-8"))
    return path


def _child(parent: Any, key: str, *, super_table: bool = False) -> Any:
    import tomlkit

    if key not in parent:
        parent[key] = tomlkit.table(is_super_table=super_table)
    child = parent[key]
    if not isinstance(child, dict):
        raise ConfigError(f"Cannot edit {SETTINGS_NAME}: '{key}' is not a table.")
    return child


def copy_credential_checks(project: Project, settings: BackupSettings, env: str,
                           now: dt.datetime | None = None) -> CheckResult:
    """The deploy checks of ``env``'s backup copy credentials kept in tako-backups.toml: missing
    or expired (errors), expiring within 30 days (a warning), worded like Tako's storage checks."""
    result = CheckResult()
    found = settings.envs.get(env)
    if found is None or found.copy_to is None:
        return result
    resource = found.copy_to
    if uses_resource(project, env, resource):
        return result
    fix = f"Run `tako storages credentials {resource} --env {env}`"
    if COPY_ACCESS_KEY_ID not in found.secrets:
        result.errors.append(f"Backup copy uses S3 resource '{resource}' but credentials are missing for "
                             f"environment '{env}' in {SETTINGS_NAME}. {fix}.")
        return result
    dates = dict.fromkeys(v.expires_on for n, v in found.secrets.items()
                          if n in (COPY_ACCESS_KEY_ID, COPY_SECRET_ACCESS_KEY) and v.expires_on)
    for date in dates:
        assert date is not None
        if is_expired(date, now):
            result.errors.append(f"Backup copy credentials for '{resource}' in environment '{env}' expired "
                                 f"on {date}. {fix} to update them.")
        elif expires_soon(date, now):
            result.warnings.append(f"Backup copy credentials for '{resource}' in environment '{env}' expire "
                                   f"within {EXPIRY_WARNING_DAYS} days on {date}. {fix} to rotate them.")
    return result
