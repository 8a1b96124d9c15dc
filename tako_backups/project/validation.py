"""Deploy-time checks: everything Tako verifies before a build, reported all together.

Errors stop a deploy; warnings (credentials expiring within 30 days) are shown as
``Validation: ...``. Nothing here decrypts a value or contacts a server.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from ..errors import ConfigError
from ..primitives.names import DEVELOPMENT_ENV, LOCAL_STORAGE
from .expiry import EXPIRY_WARNING_DAYS, expires_soon, is_expired
from .model import Project
from .secrets import Secrets, StorageCredentials
from .servers import Servers


@dataclass
class CheckResult:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


class DeployCheckError(ConfigError):
    """One or more deploy checks failed; ``details`` lists every failure."""

    def __init__(self, env: str, errors: list[str]) -> None:
        count = f"{len(errors)} error" + ("" if len(errors) == 1 else "s")
        super().__init__(f"Deploy checks failed for environment '{env}' ({count}).")
        self.details = list(errors)


def deploy_checks(project: Project, secrets: Secrets, env: str, servers: Servers | None = None,
                  now: dt.datetime | None = None) -> CheckResult:
    """Run every deploy-time check for ``env``; with ``servers`` also check the env's servers exist
    in config.toml. Never raises for a failed check: see the result's errors and warnings."""
    result = CheckResult()
    if env == DEVELOPMENT_ENV:
        result.errors.append(f"Environment '{env}' is reserved for local development; deploy another "
                             "environment.")
        return result
    config = project.envs.get(env)
    if config is None:
        result.errors.append(f"Environment '{env}' is not declared in tako.toml")
        return result
    if servers is not None:
        _check_servers(config.servers, servers, env, result)
    found = secrets.envs.get(env)
    stored = found.storages if found is not None else {}
    checked: set[str] = set()
    for binding, resource in config.storages.items():
        if resource == LOCAL_STORAGE:
            if len(config.servers) != 1:
                result.errors.append(f"Storage '{binding}' uses local storage in environment '{env}', but "
                                     "local storage requires exactly one server")
            continue
        missing = (f"Storage '{binding}' uses S3 resource '{resource}' but credentials are missing for "
                   f"environment '{env}'")
        _check_credentials(stored.get(resource), resource, env, missing, checked, result, now)
    if config.backup_storage is not None:
        resource = config.backup_storage
        missing = f"Backup uses S3 resource '{resource}' but credentials are missing for environment '{env}'"
        _check_credentials(stored.get(resource), resource, env, missing, checked, result, now)
    used = set(config.storages.values()) | {config.backup_storage}
    for resource in sorted(stored):
        if resource not in used:
            result.errors.append(f"Storage credentials for '{resource}' exist in environment '{env}', but "
                                 "no storage binding or backup uses that resource")
    return result


def require_deploy_checks(project: Project, secrets: Secrets, env: str, servers: Servers | None = None,
                          now: dt.datetime | None = None) -> CheckResult:
    """:func:`deploy_checks`, raising DeployCheckError (with every error) when any check fails."""
    result = deploy_checks(project, secrets, env, servers, now)
    if result.errors:
        raise DeployCheckError(env, result.errors)
    return result


def _check_servers(names: tuple[str, ...], servers: Servers, env: str, result: CheckResult) -> None:
    if not names:
        result.errors.append(f"No servers configured for environment '{env}'. Add "
                             f'`servers = ["<name>"]` under [envs.{env}] in tako.toml.')
    for name in dict.fromkeys(names):
        if name not in servers:
            result.errors.append(f"Server '{name}' not found in config.toml ({servers.path}). Add a "
                                 f"[servers.{name}] table with its host there.")


def _check_credentials(creds: StorageCredentials | None, resource: str, env: str, missing: str,
                       checked: set[str], result: CheckResult, now: dt.datetime | None) -> None:
    if resource in checked:
        return
    checked.add(resource)
    if creds is None:
        result.errors.append(missing)
        return
    fix = f"Run `tako storages credentials {resource} --env {env}`"
    dates = dict.fromkeys(d for d in (creds.access_key_id.expires_on, creds.secret_access_key.expires_on)
                          if d)
    for date in dates:
        if is_expired(date, now):
            result.errors.append(f"Storage credentials for '{resource}' in environment '{env}' expired on "
                                 f"{date}. {fix} to update them.")
        elif expires_soon(date, now):
            result.warnings.append(f"Storage credentials for '{resource}' in environment '{env}' expire "
                                   f"within {EXPIRY_WARNING_DAYS} days on {date}. {fix} to rotate them.")
