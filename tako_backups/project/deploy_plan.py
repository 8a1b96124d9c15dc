"""What ``tako deploy`` would do for an env, worked out locally (no server is contacted), with
Tako's checks in Tako's order: tako.toml, config.toml and secrets.json load; the env (``production``
by default; ``development`` is never deployed); the app ``name``; the env's servers; the storage
checks. Then ours: tako-backups.toml loads and its backup copy credentials are checked.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from ..primitives.names import DEFAULT_ENV, DEVELOPMENT_ENV
from .backup_keys import needs_backup_key
from .backup_settings import BackupSettings, load_backup_settings
from .model import Project
from .secrets import Secrets, load_secrets
from .servers import ServerEntry, load_servers, servers_for_env
from .settings_edit import copy_credential_checks
from .tako_toml import load_project
from .validation import CheckResult, DeployCheckError, require_storage_checks


@dataclass
class DeployPlan:
    """A checked deploy of ``project`` to ``env``: target servers, settings, warnings."""

    project: Project
    env: str
    servers: list[ServerEntry]
    secrets: Secrets
    settings: BackupSettings
    checks: CheckResult = field(default_factory=CheckResult)

    @property
    def backup_storage(self) -> str | None:
        return self.project.envs[self.env].backup_storage

    @property
    def backup_key_would_be_created(self) -> bool:
        return needs_backup_key(self.project, self.secrets, self.env)

    @property
    def active_backup_key_id(self) -> str | None:
        found = self.secrets.envs.get(self.env)
        return found.backup_keys[-1].id if found and found.backup_keys else None


def deploy_env(project: Project, requested: str | None) -> str:
    """The env a deploy targets: ``--env`` or ``production``.

    Raises ConfigError with Tako's text for ``development`` or an env tako.toml does not declare.
    """
    if requested == DEVELOPMENT_ENV:
        raise ConfigError("Environment 'development' is reserved for local development and cannot be "
                          "deployed.")
    env = requested or DEFAULT_ENV
    if env not in project.envs:
        available = ", ".join(sorted(project.envs)) or "(none)"
        raise ConfigError(f"Environment '{env}' not found. Available: {available}")
    return env


def plan_deploy(config_path: Path, env: str | None, servers_path: Path | None = None,
                now: dt.datetime | None = None) -> DeployPlan:
    """Load every file and run every deploy-time check for ``env`` (None: production).

    Raises ConfigError for an unreadable or invalid file, a missing name, env or server, and
    DeployCheckError (``Storage errors:`` and each error, Tako's texts) when a storage check
    fails; tako-backups.toml's copy credential errors follow as ``Backup copy errors:``. Warnings
    are in ``plan.checks.warnings``.
    """
    project = load_project(config_path)
    servers = load_servers(servers_path)
    secrets = load_secrets(project.secrets_path)
    name = deploy_env(project, env)
    project.name  # noqa: B018 -- raises Tako's "Could not determine app name" when tako.toml has none
    targets = servers_for_env(project, servers, name)
    checks = require_storage_checks(project, secrets, name, len(targets), now)
    settings = load_backup_settings(project)
    copy = copy_credential_checks(project, settings, name, now)
    if copy.errors:
        raise DeployCheckError("Backup copy errors", copy.errors)
    checks.extend(copy)
    return DeployPlan(project=project, env=name, servers=targets, secrets=secrets, settings=settings,
                      checks=checks)
