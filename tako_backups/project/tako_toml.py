"""``tako.toml``: find it, load it with tomlkit, and turn it into a checked :class:`Project`.

Only the parts this tool uses are modelled (name, ``start``, ``[envs.*]``, ``[storages.*]``); every
other key is left to Tako and preserved untouched by edits (see :mod:`.toml_edit`).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .names import DEVELOPMENT_ENV, app_name_problem

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


@dataclass(frozen=True)
class Project:
    """A loaded, validated ``tako.toml`` and where it lives."""

    path: Path
    name: str
    envs: dict[str, EnvConfig]
    storages: dict[str, StorageResource]
    start: tuple[str, ...] | None = None

    @property
    def app_dir(self) -> Path:
        return self.path.parent

    @property
    def secrets_path(self) -> Path:
        return self.app_dir / SECRETS_RELATIVE

    def env(self, name: str) -> EnvConfig:
        """The env called ``name``. Raises ConfigError when tako.toml does not declare it."""
        found = self.envs.get(name)
        if found is None:
            declared = ", ".join(sorted(self.envs)) or "none"
            raise ConfigError(f"Environment '{name}' not found in tako.toml (declared: {declared}). "
                              f"Add an [envs.{name}] table.")
        return found


def resolve_config_path(option: str | Path | None, cwd: Path | None = None) -> Path:
    """The tako.toml a ``-c/--config`` value names: ``.toml`` is appended when the name has no
    suffix, a folder means ``<folder>/tako.toml``, and no value means ``./tako.toml``."""
    base = cwd or Path.cwd()
    if option is None or str(option) == "":
        return (base / CONFIG_NAME).absolute()
    path = Path(option).expanduser()
    if not path.is_absolute():
        path = base / path
    if path.is_dir():
        path = path / CONFIG_NAME
    elif path.suffix != ".toml":
        path = path.with_name(path.name + ".toml")
    return path.absolute()


def read_text(path: Path, what: str) -> str:
    """The UTF-8 text of a config file. Raises ConfigError when it is missing or unreadable."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if what == CONFIG_NAME:
            raise ConfigError(f"No tako.toml found at {path}. Run this in your app folder "
                              "or pass -c PATH.") from None
        raise ConfigError(f"No {what} found at {path}.") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc.__class__.__name__
        raise ConfigError(f"Cannot read {path}: {reason}.") from None


def read_toml(path: Path, what: str) -> Any:
    """Parse a TOML file into a tomlkit document.

    Raises ConfigError when the file is missing or unreadable, or when it is not valid TOML (with
    the line and column of the problem).
    """
    return parse_toml(read_text(path, what), path)


def parse_toml(text: str, path: Path) -> Any:
    """Parse TOML text. Raises ConfigError naming the file, line and column when it is malformed."""
    import tomlkit
    from tomlkit.exceptions import ParseError

    try:
        return tomlkit.parse(text)
    except ParseError as exc:
        reason = str(exc).split(" at line ")[0]
        raise ConfigError(f"{path} is not valid TOML: {reason} at line {exc.line}, "
                          f"column {exc.col + 1}.") from None


def load_project(path: Path) -> Project:
    """Load and validate the tako.toml at ``path``.

    Raises ConfigError when it is missing ("Run this in your app folder or pass -c PATH"),
    malformed, or breaks one of Tako's rules (the message names the key and the fix).
    """
    return project_from_document(read_toml(path, CONFIG_NAME), path)


def project_from_document(document: Any, path: Path) -> Project:
    """Validate a parsed tako.toml (tomlkit document or plain dict). Raises ConfigError."""
    from .toml_rules import check_envs, check_storages

    data = _plain(document)
    name = _app_name(data.get("name"), path)
    storages = check_storages(data.get("storages"))
    envs = check_envs(data.get("envs"), storages)
    return Project(path=path, name=name, envs=envs, storages=storages, start=start_command(data.get("start")))


_START_EXAMPLE = 'e.g. start = ["python", "app.py"] or start = "python app.py"'


def start_command(value: Any) -> tuple[str, ...] | None:
    """tako.toml's top-level ``start`` as argv: a command line (split like a POSIX shell) or an
    array of strings; None when absent. Raises ConfigError for any other value or an empty command.
    """
    if value is None:
        return None
    if isinstance(value, str):
        try:
            argv = shlex.split(value)
        except ValueError as exc:
            raise ConfigError(f"tako.toml key 'start' is not a valid command line ({exc}); "
                              f"{_START_EXAMPLE}.") from None
    elif isinstance(value, list) and all(isinstance(item, str) for item in value):
        argv = list(value)
    else:
        raise ConfigError("tako.toml key 'start' must be a command string or an array of strings, "
                          f"{_START_EXAMPLE}.")
    if not argv or not all(argv):
        raise ConfigError(f"tako.toml key 'start' must name a command (no empty parts), {_START_EXAMPLE}.")
    if any("\0" in item for item in argv):
        raise ConfigError("tako.toml key 'start' contains a NUL character.")
    return tuple(argv)


def _plain(document: Any) -> dict[str, Any]:
    unwrap = getattr(document, "unwrap", None)
    return unwrap() if callable(unwrap) else dict(document)


def _app_name(value: Any, path: Path) -> str:
    if value is None:
        name = path.parent.name
        problem = app_name_problem(name)
        if problem:
            raise ConfigError(f"App name '{name}' (taken from the folder name) is not valid: {problem}. "
                              'Set name = "<app>" in tako.toml.')
        return name
    if not isinstance(value, str):
        raise ConfigError('tako.toml key \'name\' must be a string, e.g. name = "demo".')
    problem = app_name_problem(value)
    if problem:
        raise ConfigError(f"App name '{value}' in tako.toml (name) is not valid: {problem}.")
    return value


def is_deployable_env(name: str) -> bool:
    """``development`` is reserved for local development and never deployed or backed up."""
    return name != DEVELOPMENT_ENV
