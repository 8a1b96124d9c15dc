"""An app's start command: tako.toml's ``start`` as argv, and the rules argv and the app's
environment variables follow wherever they are checked (tako.toml, the ``deploy`` RPC's
``runtime``, the server's app runtime)."""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from typing import Any

from ..errors import ConfigError

__all__ = ["argv_problem", "env_var_problem", "parse_start"]

_ENV_VAR = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_START_EXAMPLE = 'e.g. start = ["python", "app.py"] or start = "python app.py"'


def argv_problem(argv: Sequence[Any]) -> str | None:
    """Why ``argv`` cannot be run, or None: it must be a non-empty list of non-empty strings
    without NUL characters."""
    if not argv or not all(isinstance(arg, str) and arg for arg in argv):
        return "must be a non-empty list of non-empty strings"
    if any("\0" in arg for arg in argv):
        return "contains a NUL character"
    return None


def env_var_problem(name: Any, value: Any) -> str | None:
    """Why ``name=value`` cannot be put in an app's environment, or None: the name is a portable
    variable name (``[A-Za-z_][A-Za-z0-9_]*``) and the value a string without NUL characters."""
    if not isinstance(name, str) or not _ENV_VAR.fullmatch(name):
        return "has an invalid name"
    if not isinstance(value, str) or "\0" in value:
        return "has an invalid value"
    return None


def parse_start(value: Any) -> tuple[str, ...] | None:
    """tako.toml's top-level ``start`` as argv: a command line (split like a POSIX shell) or an
    array of strings; None when absent.

    Raises ConfigError for any other value, an empty command or part, or a NUL character.
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
    if argv_problem(argv) is not None:
        raise ConfigError("tako.toml key 'start' contains a NUL character.")
    return tuple(argv)

