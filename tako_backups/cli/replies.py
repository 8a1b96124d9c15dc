"""The replies of the management commands, checked, and the lines the CLI prints for them.

Each ``parse_*`` takes a reply's ``data`` and raises FormatError when it does not have Tako's
shape; the ``*_line`` functions render Tako's output lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core.drill import DrillResult
from ..errors import FormatError
from ..models import BackupInfo
from ..primitives.json_shapes import check_object
from .output import format_local_time, format_size


@dataclass(frozen=True)
class BackupStatus:
    """``backup_status``'s reply; ``overdue`` is None from a server that does not drill (Tako's),
    whose reply has none of our fields (``last_drill``, ``last_ok_drill``, ``overdue``,
    ``index_rebuilt``)."""

    enabled: bool
    retention_days: int | None
    last_backup: BackupInfo | None
    next_backup_at_unix_secs: int | None
    last_drill: DrillResult | None = None
    last_ok_drill: DrillResult | None = None
    overdue: bool | None = None
    index_rebuilt: bool = False

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "enabled": self.enabled, "retention_days": self.retention_days,
            "last_backup": None if self.last_backup is None else self.last_backup.to_dict(),
            "next_backup_at_unix_secs": self.next_backup_at_unix_secs}
        if self.overdue is not None:
            out.update(last_drill=None if self.last_drill is None else self.last_drill.to_dict(),
                       last_ok_drill=None if self.last_ok_drill is None else self.last_ok_drill.to_dict(),
                       overdue=self.overdue, index_rebuilt=self.index_rebuilt)
        return out


@dataclass(frozen=True)
class DownloadLink:
    """``backup_download_url``'s reply. The URL is secret-bearing: never print it."""

    backup: BackupInfo
    url: str
    expires_in_seconds: int

    def __repr__(self) -> str:
        return f"DownloadLink(backup={self.backup.id!r}, expires_in_seconds={self.expires_in_seconds})"


@dataclass(frozen=True)
class Finalized:
    """``deploy``'s finalize reply: the post-deploy backup was created, failed or is disabled."""

    status: str
    backup_id: str | None = None
    size_bytes: int | None = None
    message: str | None = None

    def to_dict(self) -> dict[str, Any]:
        backup: dict[str, Any] = {"status": self.status}
        if self.status == "created":
            backup.update(id=self.backup_id, size_bytes=self.size_bytes)
        elif self.status == "failed":
            backup["message"] = self.message
        return {"status": "finalized", "backup": backup}


def _optional_int(value: Any, what: str) -> int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise FormatError(f"{what} must be a whole number or null.")


class BackupList(list[BackupInfo]):
    """:func:`parse_list`'s result: the backups, and whether the server had to rebuild its
    ``index.json`` from the manifests to list them (our server's ``index_rebuilt``)."""

    index_rebuilt: bool = False


def parse_list(data: Any) -> BackupList:
    """``{"app", "backups": [BackupInfo...], "index_rebuilt"?}`` -> the backups, newest first as
    sent."""
    obj = check_object(data, "The backup list")
    backups = obj.get("backups")
    if not isinstance(backups, list):
        raise FormatError("The backup list has no 'backups' list.")
    rebuilt = obj.get("index_rebuilt", False)
    if not isinstance(rebuilt, bool):
        raise FormatError("The backup list field 'index_rebuilt' must be true or false.")
    found = BackupList(BackupInfo.from_dict(item) for item in backups)
    found.index_rebuilt = rebuilt
    return found


def parse_status(data: Any) -> BackupStatus:
    """``{"app", "enabled", "retention_days", "last_backup", "next_backup_at_unix_secs"}``."""
    obj = check_object(data, "The backup status")
    enabled = obj.get("enabled")
    if not isinstance(enabled, bool):
        raise FormatError("The backup status field 'enabled' must be true or false.")
    last = obj.get("last_backup")
    overdue, rebuilt = obj.get("overdue"), obj.get("index_rebuilt", False)
    if not (overdue is None or isinstance(overdue, bool)) or not isinstance(rebuilt, bool):
        raise FormatError("The backup status fields 'overdue' and 'index_rebuilt' must be true or false.")
    drills = [None if obj.get(k) is None else DrillResult.from_dict(obj[k])
              for k in ("last_drill", "last_ok_drill")]
    return BackupStatus(
        enabled=enabled,
        retention_days=_optional_int(obj.get("retention_days"), "The backup status field 'retention_days'"),
        last_backup=None if last is None else BackupInfo.from_dict(last),
        next_backup_at_unix_secs=_optional_int(obj.get("next_backup_at_unix_secs"),
                                               "The backup status field 'next_backup_at_unix_secs'"),
        last_drill=drills[0], last_ok_drill=drills[1], overdue=overdue, index_rebuilt=rebuilt,
    )


def parse_download(data: Any) -> DownloadLink:
    """``{"backup": BackupInfo, "url", "expires_in_seconds"}``."""
    obj = check_object(data, "The download link")
    url, expires = obj.get("url"), obj.get("expires_in_seconds")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise FormatError("The download link has no http(s) 'url'.")
    if not isinstance(expires, int) or isinstance(expires, bool):
        raise FormatError("The download link field 'expires_in_seconds' must be a whole number.")
    return DownloadLink(BackupInfo.from_dict(obj.get("backup")), url, expires)


def parse_finalize(data: Any) -> Finalized:
    """``{"status": "finalized", "backup": {"status": "created", "id", "size_bytes"} |
    {"status": "failed", "message"} | {"status": "disabled"}}``."""
    obj = check_object(data, "The deploy reply")
    if obj.get("status") != "finalized":
        raise FormatError("The deploy reply status must be 'finalized'.")
    backup = check_object(obj.get("backup"), "The deploy reply field 'backup'")
    status = backup.get("status")
    if status == "created":
        backup_id, size = backup.get("id"), backup.get("size_bytes")
        if not isinstance(backup_id, str) or not isinstance(size, int) or isinstance(size, bool):
            raise FormatError("The deploy reply's created backup needs an 'id' and 'size_bytes'.")
        return Finalized("created", backup_id=backup_id, size_bytes=size)
    if status == "failed":
        message = backup.get("message")
        if not isinstance(message, str):
            raise FormatError("The deploy reply's failed backup needs a 'message'.")
        return Finalized("failed", message=message)
    if status == "disabled":
        return Finalized("disabled")
    raise FormatError("The deploy reply's backup status must be created, failed or disabled.")


def backup_line(info: BackupInfo) -> str:
    """``{id} {YYYY-MM-DD HH:MM:SS local} {size}``."""
    return f"{info.id} {format_local_time(info.created_at_unix_secs)} {format_size(info.size_bytes)}"


def created_line(server: str, info: BackupInfo) -> str:
    """``{server}: {id} ({size})``."""
    return f"{server}: {info.id} ({format_size(info.size_bytes)})"


def status_line(server: str, status: BackupStatus) -> str:
    """``{server}: disabled`` or ``{server}: enabled, last {id} at {time}`` (or ``no backups
    yet``) ``, next {time}, {N}d retention``."""
    if not status.enabled:
        return f"{server}: disabled"
    last = status.last_backup
    last_text = ("no backups yet" if last is None
                 else f"last {last.id} at {format_local_time(last.created_at_unix_secs)}")
    nxt = status.next_backup_at_unix_secs
    next_text = "-" if nxt is None else format_local_time(nxt)
    days = status.retention_days
    retention = "retention unknown" if days is None else f"{days}d retention"
    return f"{server}: enabled, {last_text}, next {next_text}, {retention}"


def finalize_line(server: str, result: Finalized) -> str:
    """``{server}: deployed, backup {id} ({size})`` / ``..., backup failed: {message}`` /
    ``..., backups disabled``."""
    if result.status == "created":
        assert result.size_bytes is not None
        return f"{server}: deployed, backup {result.backup_id} ({format_size(result.size_bytes)})"
    if result.status == "failed":
        return f"{server}: deployed, backup failed: {result.message}"
    return f"{server}: deployed, backups disabled"
