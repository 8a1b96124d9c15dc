"""Name rules shared by tako.toml, secrets.json and the CLI. Each check returns the reason a name is
invalid (``None`` when it is fine), so callers can say where the name came from."""

from __future__ import annotations

import re

_ENV = re.compile(r"[a-z0-9-]+")
_STORAGE = re.compile(r"[a-z0-9_-]+")
_HEX16 = re.compile(r"[0-9a-f]{16}")
_BACKUP_KEY_ID = re.compile(r"backup-key-[0-9a-f]{16}")

DEVELOPMENT_ENV = "development"
LOCAL_STORAGE = "local"


def app_name_problem(name: str) -> str | None:
    """Why ``name`` is not a DNS label usable as an app name, or None."""
    if not name:
        return "it cannot be empty"
    if len(name) > 63:
        return "it cannot be longer than 63 characters"
    bad = next((c for c in name if not (c.isascii() and (c.islower() or c.isdigit() or c == "-"))), None)
    if bad is not None:
        return f"it can only contain lowercase letters, digits and '-' (found '{bad}')"
    if not name[0].islower():
        return "it must start with a lowercase letter"
    if name.endswith("-"):
        return "it must end with a letter or digit"
    return None


def env_name_problem(name: str) -> str | None:
    """Why ``name`` is not a valid environment name (``[a-z0-9-]``), or None."""
    if not name:
        return "it cannot be empty"
    if not _ENV.fullmatch(name):
        return "it can only contain lowercase letters, digits and '-'"
    return None


def storage_name_problem(name: str) -> str | None:
    """Why ``name`` is not a valid storage binding or resource name (``[a-z0-9_-]``), or None."""
    if not name:
        return "it cannot be empty"
    if not _STORAGE.fullmatch(name):
        return "it can only contain lowercase letters, digits, '_' and '-'"
    return None


def is_key_id(value: str) -> bool:
    """An environment key id: 16 lowercase hex characters."""
    return bool(_HEX16.fullmatch(value))


def is_backup_key_id(value: str) -> bool:
    """``backup-key-`` followed by 16 lowercase hex characters."""
    return bool(_BACKUP_KEY_ID.fullmatch(value))
