"""The checked contents of a ``tako.toml``: :class:`Project`, its envs and storage resources.

Plain frozen dataclasses with no parsing, so the loader (:mod:`.tako_toml`), the rules
(:mod:`.toml_rules`) and every reader depend on this module and never on each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError

CONFIG_NAME = "tako.toml"
SECRETS_RELATIVE = Path(".tako") / "secrets.json"
DEFAULT_IDLE_TIMEOUT = 300


@dataclass(frozen=True)
class StorageResource:
    """A ``[storages.<name>]`` resource (always S3: ``local`` is built in and never declared)."""

    name: str
    bucket: str
    endpoint: str
    region: str
    force_path_style: bool = False
    public_base_url: str | None = None
    provider: str = "s3"


@dataclass(frozen=True)
class EnvConfig:
    """An ``[envs.<name>]`` table."""

    name: str
    servers: tuple[str, ...] = ()
    storages: dict[str, str] = field(default_factory=dict)
    backup_storage: str | None = None
    route: str | None = None
    routes: tuple[str, ...] | None = None
    idle_timeout: int = DEFAULT_IDLE_TIMEOUT

    @property
    def backup_enabled(self) -> bool:
        return self.backup_storage is not None


NAME_REQUIRED = ("Could not determine app name: tako.toml must have a `name` field. Run `tako init` to set "
                 "it.")


@dataclass(frozen=True)
class Project:
    """A loaded, validated ``tako.toml`` and where it lives. ``declared_name`` is its raw ``name``
    (None when absent); :attr:`name` is the app name the commands use."""

    path: Path
    declared_name: str | None
    envs: dict[str, EnvConfig]
    storages: dict[str, StorageResource]
    start: tuple[str, ...] | None = None

    @property
    def name(self) -> str:
        """The app name, as Tako's backups and deploy take it: ``name`` from tako.toml (sanitized:
        ``my--app`` is ``my-app``), never the folder name.

        Raises ConfigError with Tako's text when tako.toml has no ``name``.
        """
        from ..primitives.names import sanitize_app_name

        if self.declared_name is None:
            raise ConfigError(NAME_REQUIRED)
        return sanitize_app_name(self.declared_name)

    @property
    def app_dir(self) -> Path:
        return self.path.parent

    @property
    def secrets_path(self) -> Path:
        return self.app_dir / SECRETS_RELATIVE

    def env(self, name: str) -> EnvConfig:
        """The env called ``name``. Raises ConfigError (Tako's text, then the declared envs on its own
        line) when tako.toml does not declare it."""
        found = self.envs.get(name)
        if found is None:
            declared = ", ".join(sorted(self.envs)) or "none"
            raise ConfigError(f"Environment '{name}' not found in tako.toml.\nDeclared: {declared}; add an "
                              f"[envs.{name}] table for another.")
        return found
