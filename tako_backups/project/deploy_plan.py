"""What ``tako deploy`` would do for an env, worked out locally (no server is contacted)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from .backup_keys import needs_backup_key
from .model import Project
from .secrets import Secrets, load_secrets
from .servers import ServerEntry, Servers, load_servers
from .tako_toml import load_project
from .validation import CheckResult, require_deploy_checks


@dataclass
class DeployPlan:
    """A checked deploy of ``project`` to ``env``: target servers, backup settings, warnings."""

    project: Project
    env: str
    servers: list[ServerEntry]
    secrets: Secrets
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


def plan_deploy(config_path: Path, env: str, servers_path: Path | None = None,
                now: dt.datetime | None = None) -> DeployPlan:
    """Load tako.toml, config.toml and secrets.json and run every deploy-time check.

    Raises ConfigError for an unreadable or invalid file, and DeployCheckError listing every failed
    check. Warnings are in ``plan.checks.warnings``.
    """
    project = load_project(config_path)
    servers: Servers = load_servers(servers_path)
    secrets = load_secrets(project.secrets_path)
    checks = require_deploy_checks(project, secrets, env, servers, now)
    targets = [servers.entries[name] for name in dict.fromkeys(project.envs[env].servers)]
    return DeployPlan(project=project, env=env, servers=targets, secrets=secrets, checks=checks)
