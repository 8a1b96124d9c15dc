"""An app's start command: tako.toml's ``start`` as argv, and the rules argv and the app's
environment variables follow wherever they are checked (tako.toml, the ``deploy`` RPC's
``runtime``, the server's app runtime)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ..errors import ConfigError

__all__ = ["argv_problem", "env_var_problem", "parse_start"]

_ENV_VAR = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_START_EXAMPLE = 'e.g. start = ["python", "app.py"]'


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
    """tako.toml's top-level ``start`` as argv: Tako's non-empty array of non-blank strings; None
    when absent.

    Raises ConfigError with Tako's text (``Validation error: 'start' must be a non-empty array of
    strings`` / ``... 'start' entries cannot be empty``; a command string gets our hint on its own
    line), or ours for a NUL character.
    """
    if value is None:
        return None
    hint = f"\nWrite the command as an array, {_START_EXAMPLE}." if isinstance(value, str) else ""
    not_array = ConfigError(f"Validation error: 'start' must be a non-empty array of strings{hint}")
    if not isinstance(value, list) or not value:
        raise not_array
    for item in value:
        if not isinstance(item, str):
            raise not_array
        if not item.strip():
            raise ConfigError("Validation error: 'start' entries cannot be empty")
    if argv_problem(value) is not None:
        raise ConfigError("tako.toml key 'start' contains a NUL character.")
    return tuple(value)
