"""Name rules, each in one place, with Tako's exact message texts.

Each ``*_problem`` function returns Tako's text for the first rule a name breaks (no final
period, no prefix), or ``None`` when the name is fine, so the caller can say where the name came
from. Which rule applies where:

- :func:`app_name_problem`: tako.toml's raw ``name`` (tako/src/config/tako_toml/validation.rs);
  :func:`sanitize_app_name`: the app name the CLI then uses (tako/src/app/name.rs).
- :func:`server_name_problem`: server names in config.toml and ``[envs.*].servers``, and workflow
  worker groups (tako/src/config/tako_toml/validation.rs, servers_toml.rs).
- :func:`env_name_problem`: environment names the CLI takes or writes (tako/src/config/secrets.rs).
- :func:`storage_name_problem`: storage binding and resource names (tako/src/config/storages.rs).
- :func:`segment_problem`, :func:`check_app_id`: the ``app`` of every RPC, the server's app keys
  and its file names (tako-server/src/release.rs): each part of ``{name}/{env}`` is a segment.
- :func:`sanitize_segment`: one part of the bucket prefix ``_tako/backups/{app}/{env}/{server}/``.

Lengths are counted in UTF-8 bytes, as Tako's ``str::len`` counts them.
"""

from __future__ import annotations

import re

from ..errors import ConfigError, FormatError

__all__ = [
    "DEFAULT_ENV", "DEVELOPMENT_ENV", "LOCAL_STORAGE", "MAX_NAME_BYTES", "app_name_problem",
    "check_app_id", "env_name_problem", "is_backup_key_id", "is_key_id", "join_app_id",
    "sanitize_app_name", "sanitize_segment", "segment_problem", "server_name_problem", "split_app_id",
    "storage_name_problem", "validation_error",
]

DEFAULT_ENV = "production"
DEVELOPMENT_ENV = "development"
LOCAL_STORAGE = "local"
MAX_NAME_BYTES = 63
APP_ID_SEPARATOR = "/"

_HEX16 = re.compile(r"[0-9a-fA-F]{16}")
_BACKUP_KEY_ID = re.compile(r"backup-key-[0-9a-f]{16}")


def _is_lower(ch: str) -> bool:
    return "a" <= ch <= "z"


def _is_label_char(ch: str) -> bool:
    return _is_lower(ch) or "0" <= ch <= "9" or ch == "-"


def _byte_length(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _first_bad(name: str, allowed: str = "") -> str | None:
    return next((c for c in name if not (_is_label_char(c) or c in allowed)), None)


def _label_problem(name: str, what: str) -> str | None:
    if not name:
        return f"{what} name cannot be empty"
    if _byte_length(name) > MAX_NAME_BYTES:
        return f"{what} name cannot exceed 63 characters"
    if not _is_lower(name[0]):
        return f"{what} name must start with a lowercase letter"
    bad = _first_bad(name)
    if bad is not None:
        return f"{what} name can only contain lowercase letters, numbers, and hyphens. Found: '{bad}'"
    if name.endswith("-"):
        return f"{what} name cannot end with a hyphen"
    return None


def app_name_problem(name: str) -> str | None:
    """tako.toml's ``name``: not empty, at most 63 bytes, starts with a lowercase letter, only
    ``[a-z0-9-]``, does not end with ``-`` (checked in that order)."""
    return _label_problem(name, "App")


def server_name_problem(name: str) -> str | None:
    """A server name (config.toml, ``[envs.*].servers``): the same rules as the app name, with
    ``Server name ...`` texts."""
    return _label_problem(name, "Server")


def sanitize_app_name(name: str) -> str:
    """The app name Tako's CLI uses for a valid raw ``name``: lowercased, runs of ``_``, ``.``
    and ``-`` become one ``-``, other characters dropped, leading digits and hyphens and trailing
    hyphens trimmed (so ``my--app`` is the app ``my-app``)."""
    out: list[str] = []
    for ch in name:
        if ch.isascii() and ch.isalnum():
            out.append(ch.lower())
        elif ch in "_.-" and (not out or out[-1] != "-"):
            out.append("-")
    return "".join(out).lstrip("-0123456789").rstrip("-")


def env_name_problem(name: str) -> str | None:
    """An environment name the CLI takes (``--env``) or writes (secrets.json): not empty, only
    ``[a-z0-9-]``. A server also needs it to be a segment (:func:`segment_problem`)."""
    if not name:
        return "Environment name cannot be empty"
    bad = _first_bad(name)
    if bad is not None:
        return f"Environment name can only contain lowercase letters, numbers, and hyphens. Found: '{bad}'"
    return None


def storage_name_problem(name: str) -> str | None:
    """A storage binding or resource name: not empty, only ``[a-z0-9_-]``."""
    if not name:
        return "Storage name cannot be empty"
    bad = _first_bad(name, "_")
    if bad is not None:
        return ("Storage name can only contain lowercase letters, numbers, hyphens, and underscores. "
                f"Found: '{bad}'")
    return None


def segment_problem(segment: str) -> str | None:
    """One part of a server's app id: not empty, at most 63 bytes, starts with a lowercase
    letter, does not end with ``-``, only ``[a-z0-9-]`` (checked in that order)."""
    if not segment:
        return "Invalid app name: must not be empty"
    if _byte_length(segment) > MAX_NAME_BYTES:
        return "Invalid app name: must be 63 characters or fewer"
    if not _is_lower(segment[0]):
        return "Invalid app name: must start with a lowercase letter"
    if segment.endswith("-"):
        return "Invalid app name: must not end with '-'"
    if _first_bad(segment) is not None:
        return "Invalid app name: only lowercase letters, digits, and '-' are allowed"
    return None


def validation_error(problem: str, hint: str | None = None) -> ConfigError:
    """Tako's ``Validation error: {problem}`` (exactly, no period added) as a ConfigError; our
    ``hint``, when given, follows on its own line."""
    return ConfigError(f"Validation error: {problem}" + (f"\n{hint}" if hint else ""))


def split_app_id(app: str) -> tuple[str, str] | None:
    """``(name, env)`` when ``app`` is ``{name}/{env}`` with both parts non-empty and no further
    ``/`` in the env; otherwise None (the whole string is then one name)."""
    name, sep, env = app.partition(APP_ID_SEPARATOR)
    if not sep or not name or not env or APP_ID_SEPARATOR in env:
        return None
    return name, env


def check_app_id(app: str) -> tuple[str, str]:
    """Check an RPC's ``app`` as Tako's server does and return ``(name, env)``: a ``{name}/{env}``
    id has both parts checked as segments; any other string is checked whole as one segment and
    its env is ``production``.

    Raises FormatError with Tako's text for the first broken rule (no final period, as Tako's
    server words it).
    """
    parts = split_app_id(app)
    name, env = parts if parts is not None else (app, DEFAULT_ENV)
    for segment in (name,) if parts is None else (name, env):
        problem = segment_problem(segment)
        if problem is not None:
            raise FormatError(problem)
    return name, env


def join_app_id(name: str, env: str) -> str:
    """``{name}/{env}``, the ``app`` of every RPC, checked as the server will check it.

    Raises FormatError with Tako's text (as :func:`check_app_id`).
    """
    for segment in (name, env):
        problem = segment_problem(segment)
        if problem is not None:
            raise FormatError(problem)
    return f"{name}{APP_ID_SEPARATOR}{env}"


def sanitize_segment(segment: str) -> str:
    """One part of the bucket prefix: trimmed, ASCII letters/digits/``-``/``_`` kept (lowercased),
    ``.`` becomes ``-``, anything else dropped; empty becomes ``server``."""
    out = []
    for ch in segment.strip():
        if ch.isascii() and (ch.isalnum() or ch in "-_"):
            out.append(ch.lower())
        elif ch == ".":
            out.append("-")
    return "".join(out) or "server"


def is_key_id(value: str) -> bool:
    """An environment key id: 16 hex characters (Tako makes them lowercase and accepts either case)."""
    return bool(_HEX16.fullmatch(value))


def is_backup_key_id(value: str) -> bool:
    """``backup-key-`` followed by 16 lowercase hex characters."""
    return bool(_BACKUP_KEY_ID.fullmatch(value))
