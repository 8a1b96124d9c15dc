"""Where backups live on the bucket: the sanitized prefix, object keys and backup ids."""

from __future__ import annotations

import re
import secrets
import time

from ..primitives.names import sanitize_segment

_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
_ID_RE = re.compile(r"b[0-9]+-[A-Za-z0-9_-]{8}")
ARCHIVE_SUFFIX = ".tar.zst.enc"
MANIFEST_SUFFIX = ".json"
INDEX_NAME = "index.json"


def backup_prefix(app: str, env: str, server: str) -> str:
    """``_tako/backups/{app}/{env}/{server}/`` with each segment sanitized."""
    return "_tako/backups/" + "/".join(sanitize_segment(s) for s in (app, env, server)) + "/"


def new_backup_id(now: int | None = None) -> str:
    """``b{unix seconds}-{8 random chars of [A-Za-z0-9_-]}``."""
    stamp = int(time.time()) if now is None else int(now)
    return f"b{stamp}-" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))


def is_backup_id(value: str) -> bool:
    return bool(_ID_RE.fullmatch(value))


def archive_key(prefix: str, backup_id: str) -> str:
    return f"{prefix}{backup_id}{ARCHIVE_SUFFIX}"


def manifest_key(prefix: str, backup_id: str) -> str:
    return f"{prefix}{backup_id}{MANIFEST_SUFFIX}"


def index_key(prefix: str) -> str:
    return prefix + INDEX_NAME
