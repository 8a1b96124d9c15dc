"""Finding a backup by id on the bucket when it is not known which server's prefix holds it.

Backup ids are unique, but a server files its backups under its own label
(``_tako/backups/{app}/{env}/{label}/``), which may differ from the name config.toml gives it.
:func:`locate_backup` tries the prefixes of the names it is given, then -- when the bucket can be
listed -- every other server prefix of the app's env.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import ListDenied, NotFoundError
from ..models import BackupInfo
from ..primitives.names import sanitize_segment
from ..primitives.text import printable
from ..storage.base import ObjectStore
from .catalog import check_backup_id, find_backup
from .layout import backup_prefix

__all__ = ["Located", "env_prefix", "locate_backup"]


@dataclass(frozen=True)
class Located:
    """A backup found on the bucket: its manifest, the prefix that holds it and the server label
    of that prefix."""

    info: BackupInfo
    prefix: str
    server: str


def env_prefix(app: str, env: str) -> str:
    """``_tako/backups/{app}/{env}/``, each segment sanitized: where every server's prefix is."""
    return "_tako/backups/" + "/".join(sanitize_segment(s) for s in (app, env)) + "/"


def locate_backup(store: ObjectStore, app: str, env: str, servers: Sequence[str], backup_id: str) -> Located:
    """Find ``backup_id`` under the prefix of each name in ``servers`` in turn (the one asked for
    first), then under every other server prefix of ``app``/``env`` that a listing shows.

    Raises NotFoundError naming the prefixes tried (and, when the bucket may not be listed,
    saying that the other prefixes could not be searched), FormatError or StorageError.
    """
    check_backup_id(backup_id)
    tried: list[str] = []
    for name in servers:
        found = _try(store, backup_prefix(app, env, name), backup_id, tried)
        if found is not None:
            return found
    parent = env_prefix(app, env)
    try:
        others = [p for p in store.list_folders(parent) if p not in tried]
    except ListDenied:
        raise NotFoundError(
            f"Backup '{printable(backup_id)}' was not found under {_names(tried)}; the other server "
            f"prefixes under {parent} were not searched: listing the bucket is denied to these "
            "credentials.") from None
    for prefix in others:
        found = _try(store, prefix, backup_id, tried)
        if found is not None:
            return found
    raise NotFoundError(f"Backup '{printable(backup_id)}' was not found under any server prefix of "
                        f"{parent} (tried {_names(tried)}).")


def _try(store: ObjectStore, prefix: str, backup_id: str, tried: list[str]) -> Located | None:
    if prefix in tried:
        return None
    tried.append(prefix)
    try:
        info = find_backup(store, prefix, backup_id)
    except NotFoundError:
        return None
    return Located(info, prefix, prefix.rstrip("/").rsplit("/", 1)[-1])


def _names(prefixes: list[str]) -> str:
    return ", ".join(prefixes)
