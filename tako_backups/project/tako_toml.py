"""``tako.toml``: find it, load it with tomlkit, and turn it into a checked :class:`Project`.

The whole file is checked as Tako checks it (its key allow-list at every level, types, rules and
texts: :mod:`.toml_parse`, :mod:`.toml_checks`, :mod:`.toml_rules`), so a file we accept loads in
Tako too. Only the parts this tool uses are modelled (name, ``start``, ``[envs.*]``,
``[storages.*]``); every other key is preserved untouched by edits (see :mod:`.toml_edit`).
Our own settings never go here: they live in ``tako-backups.toml`` (:mod:`.backup_settings`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..primitives.names import DEVELOPMENT_ENV
from ..primitives.start_command import parse_start
from .model import CONFIG_NAME, Project
from .toml_checks import check_top_level_rules
from .toml_parse import check_top_level
from .toml_rules import check_envs, check_storages


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
            raise ConfigError(f"Config file not found: {path}\nRun this in your app folder or pass "
                              "-c PATH.") from None
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


def load_project(path: Path, *, extensions: bool = True) -> Project:
    """Load and validate the tako.toml at ``path`` with Tako's rules and texts; with
    ``extensions`` False, exactly as Tako reads it (no plain-http loopback endpoints).

    Raises ConfigError when it is missing ("Config file not found: ..."), malformed, or breaks
    one of Tako's rules (Tako's text; our hint, if any, on its own line).
    """
    return project_from_document(read_toml(path, CONFIG_NAME), path, extensions=extensions)


def project_from_document(document: Any, path: Path, *, extensions: bool = True) -> Project:
    """Validate a parsed tako.toml (tomlkit document or plain dict) as Tako does: the key and type
    checks of its parser first, then its validation, in its order. Raises ConfigError."""
    data = _plain(document)
    check_top_level(data)
    check_top_level_rules(data)
    raw_storages = data.get("storages") or {}
    envs = check_envs(data.get("envs"), raw_storages)
    storages = check_storages(raw_storages, extensions=extensions)
    return Project(path=path, declared_name=data.get("name"), envs=envs, storages=storages,
                   start=parse_start(data.get("start")))


def _plain(document: Any) -> dict[str, Any]:
    unwrap = getattr(document, "unwrap", None)
    return unwrap() if callable(unwrap) else dict(document)


def is_deployable_env(name: str) -> bool:
    """``development`` is reserved for local development and never deployed or backed up."""
    return name != DEVELOPMENT_ENV
