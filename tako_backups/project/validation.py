"""Deploy-time storage checks, as Tako runs them (tako/src/validation/storages.rs): every error
collected, then the deploy fails with ``Storage errors:`` and each error on its own indented
line; warnings (credentials expiring within 30 days) are shown as ``Validation: ...`` and the
deploy goes on. Nothing here decrypts a value or contacts a server.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from ..errors import ConfigError
from ..primitives.names import DEVELOPMENT_ENV, LOCAL_STORAGE
from .expiry import EXPIRY_WARNING_DAYS, expires_soon, is_expired
from .model import Project
from .secrets import Secrets, StorageCredentials


@dataclass
class CheckResult:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def extend(self, other: CheckResult) -> None:
        self.errors.extend(other.errors)
        self.warnings.extend(other.warnings)


class DeployCheckError(ConfigError):
    """Deploy checks failed: ``{title}:`` and each error on its own line indented by two spaces
    (Tako's ``Storage errors:`` shape); ``errors`` lists them."""

    def __init__(self, title: str, errors: list[str]) -> None:
        super().__init__(f"{title}:\n  " + "\n  ".join(errors))
        self.errors = list(errors)


@dataclass(frozen=True)
class CredentialUse:
    """Why an env needs a resource's credentials: an app binding (its name) or the backup."""

    binding: str | None = None

    def missing(self, resource: str, env: str) -> str:
        if self.binding is None:
            return f"Backup uses S3 resource '{resource}' but credentials are missing for environment '{env}'"
        return (f"Storage '{self.binding}' uses S3 resource '{resource}' but credentials are missing for "
                f"environment '{env}'")

    def update_hint(self, env: str) -> str:
        if self.binding is None:
            return "Update the backup storage credentials before deploying."
        return f"Run `tako storages add {self.binding} --env {env}` to update them."

    def rotate_hint(self, env: str) -> str:
        if self.binding is None:
            return "Rotate the backup storage credentials before they expire."
        return f"Run `tako storages add {self.binding} --env {env}` to rotate them."


def storage_checks(project: Project, secrets: Secrets, env: str, server_count: int,
                   now: dt.datetime | None = None) -> CheckResult:
    """Tako's storage checks of a deploy of ``env`` to ``server_count`` servers. Never raises for a
    failed check: see the result's errors and warnings."""
    result = CheckResult()
    config = project.envs.get(env)
    if config is None:
        result.errors.append(f"Environment '{env}' is not declared in tako.toml")
        return result
    found = secrets.envs.get(env)
    stored = found.storages if found is not None else {}
    checked: set[str] = set()
    for binding, resource in config.storages.items():
        if resource == LOCAL_STORAGE:
            if env != DEVELOPMENT_ENV and server_count != 1:
                result.errors.append(f"Storage '{binding}' uses local storage in environment '{env}', but "
                                     "local storage requires exactly one server")
        elif resource not in project.storages and env != DEVELOPMENT_ENV:
            result.errors.append(f"Environment '{env}' storage '{binding}' references missing storage "
                                 f"resource '{resource}'")
        elif resource not in checked:
            checked.add(resource)
            check_credentials(stored.get(resource), resource, env, CredentialUse(binding), result, now)
    if config.backup_storage is not None:
        resource = config.backup_storage
        if resource not in checked:
            checked.add(resource)
            check_credentials(stored.get(resource), resource, env, CredentialUse(), result, now)
    used = set(config.storages.values()) | {config.backup_storage}
    for resource in sorted(stored):
        if resource not in used:
            result.errors.append(f"Storage credentials for '{resource}' exist in environment '{env}', but no "
                                 "storage binding uses that resource")
    return result


def require_storage_checks(project: Project, secrets: Secrets, env: str, server_count: int,
                           now: dt.datetime | None = None) -> CheckResult:
    """:func:`storage_checks`, raising DeployCheckError (``Storage errors:`` and every error) when
    any check fails; returns the warnings otherwise."""
    result = storage_checks(project, secrets, env, server_count, now)
    if result.errors:
        raise DeployCheckError("Storage errors", result.errors)
    return result


def check_credentials(creds: StorageCredentials | None, resource: str, env: str, use: CredentialUse,
                      result: CheckResult, now: dt.datetime | None) -> None:
    """Missing (an error), expired (an error per field) or expiring within 30 days (one warning
    per distinct date), with Tako's texts and hints."""
    if creds is None:
        result.errors.append(use.missing(resource, env))
        return
    warned: set[str] = set()
    fields = (("access key id", creds.access_key_id), ("secret access key", creds.secret_access_key))
    for label, value in fields:
        date = value.expires_on
        if date is None:
            continue
        if is_expired(date, now):
            result.errors.append(f"Storage credentials for '{resource}' in environment '{env}' expired on "
                                 f"{date} ({label}). {use.update_hint(env)}")
        elif expires_soon(date, now) and date not in warned:
            warned.add(date)
            result.warnings.append(f"Storage credentials for '{resource}' in environment '{env}' expire "
                                   f"within {EXPIRY_WARNING_DAYS} days on {date}. {use.rotate_hint(env)}")
