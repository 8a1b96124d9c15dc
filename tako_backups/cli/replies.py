"""The replies of the management commands, checked.

Each ``parse_*`` takes a reply's ``data`` (the whole reply for :func:`parse_restored`) and raises
FormatError when it does not have the expected shape. What the CLI prints for them is in
:mod:`.render`. Parsing is lenient about fields it does not use, so a newer server still works.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core.drill import DrillResult
from ..errors import FormatError
from ..models import BackupInfo
from ..primitives.json_shapes import check_object, is_kind


@dataclass(frozen=True)
class CopyStatus:
    """Our server's ``copy`` field (status and list): the second copy's bucket, ``ok``/``lagging``/
    ``unknown``, the backup ids it lacks, its last error and when it was last seen."""

    bucket: str
    state: str
    missing: tuple[str, ...] = ()
    error: str | None = None
    at_unix_secs: int | None = None
    last_ok_at_unix_secs: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"bucket": self.bucket, "state": self.state, "missing": list(self.missing),
                "error": self.error, "at_unix_secs": self.at_unix_secs,
                "last_ok_at_unix_secs": self.last_ok_at_unix_secs}


def parse_copy(data: Any) -> CopyStatus | None:
    """The ``copy`` field, or None when absent (no copy, or Tako's server)."""
    if data is None:
        return None
    obj = check_object(data, "The backup copy state")
    bucket, state, missing = obj.get("bucket"), obj.get("state"), obj.get("missing")
    if not isinstance(bucket, str) or state not in ("ok", "lagging", "unknown") \
            or not isinstance(missing, list) or not all(isinstance(i, str) for i in missing):
        raise FormatError("The backup copy state needs 'bucket', 'state' and 'missing'.")
    error = obj.get("error")
    if error is not None and not isinstance(error, str):
        raise FormatError("The backup copy state field 'error' must be a string.")
    return CopyStatus(bucket, state, tuple(missing), error,
                      _optional_int(obj.get("at_unix_secs"), "The backup copy field 'at_unix_secs'"),
                      _optional_int(obj.get("last_ok_at_unix_secs"),
                                    "The backup copy field 'last_ok_at_unix_secs'"))


@dataclass(frozen=True)
class BackupStatus:
    """``backup_status``'s reply; ``overdue`` is None from a server that does not drill (Tako's),
    whose reply has none of our fields (``last_drill``, ``last_ok_drill``, ``overdue``,
    ``overdue_after_seconds``, ``index_rebuilt``, and with our settings ``policy_text``, ``copy``
    and ``notify``)."""

    enabled: bool
    retention_days: int | None
    last_backup: BackupInfo | None
    next_backup_at_unix_secs: int | None
    last_drill: DrillResult | None = None
    last_ok_drill: DrillResult | None = None
    overdue: bool | None = None
    index_rebuilt: bool = False
    overdue_after_seconds: int | None = None
    policy_text: str | None = None
    copy: CopyStatus | None = None
    notify: dict[str, Any] | None = None
    kept_tree: dict[str, Any] | None = None  # the data the last restore replaced, while kept

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "enabled": self.enabled, "retention_days": self.retention_days,
            "last_backup": None if self.last_backup is None else self.last_backup.to_dict(),
            "next_backup_at_unix_secs": self.next_backup_at_unix_secs}
        if self.overdue is not None:
            out.update(last_drill=None if self.last_drill is None else self.last_drill.to_dict(),
                       last_ok_drill=None if self.last_ok_drill is None else self.last_ok_drill.to_dict(),
                       overdue=self.overdue)
            if self.overdue_after_seconds is not None:
                out["overdue_after_seconds"] = self.overdue_after_seconds
            out["index_rebuilt"] = self.index_rebuilt
        if self.policy_text is not None:
            out["policy_text"] = self.policy_text
        if self.copy is not None:
            out["copy"] = self.copy.to_dict()
        if self.notify is not None:
            out["notify"] = self.notify
        if self.kept_tree is not None:
            out["kept_tree"] = self.kept_tree
        return out


@dataclass(frozen=True)
class Source:
    """Which copy a read used (our server, for an app with a second copy): ``primary`` or
    ``copy``, its bucket, and why the primary was not used."""

    name: str
    bucket: str
    fallback_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"source": self.name, "source_bucket": self.bucket}
        if self.fallback_reason is not None:
            out["fallback_reason"] = self.fallback_reason
        return out


def parse_source(obj: Any) -> Source | None:
    """``source``/``source_bucket``/``fallback_reason`` of a reply object, or None without them."""
    if not isinstance(obj, dict) or "source" not in obj:
        return None
    name, bucket, reason = obj.get("source"), obj.get("source_bucket"), obj.get("fallback_reason")
    if name not in ("primary", "copy") or not isinstance(bucket, str) \
            or not (reason is None or isinstance(reason, str)):
        raise FormatError("The reply's 'source' must be primary or copy, with 'source_bucket'.")
    return Source(name, bucket, reason)


@dataclass(frozen=True)
class DownloadLink:
    """``backup_download_url``'s reply. The URL is secret-bearing: never print it."""

    backup: BackupInfo
    url: str
    expires_in_seconds: int
    source: Source | None = None

    def __repr__(self) -> str:
        return f"DownloadLink(backup={self.backup.id!r}, expires_in_seconds={self.expires_in_seconds})"


@dataclass(frozen=True)
class Finalized:
    """``deploy``'s finalize reply: the post-deploy backup was created, failed or is disabled."""

    status: str
    backup_id: str | None = None
    size_bytes: int | None = None
    message: str | None = None
    copy: CopyReport | None = None

    def to_dict(self) -> dict[str, Any]:
        backup: dict[str, Any] = {"status": self.status}
        if self.status == "created":
            backup.update(id=self.backup_id, size_bytes=self.size_bytes)
            if self.copy is not None:
                backup["copy"] = self.copy.to_dict()
        elif self.status == "failed":
            backup["message"] = self.message
        return {"status": "finalized", "backup": backup}


def _optional_int(value: Any, what: str) -> int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise FormatError(f"{what} must be a whole number or null.")


class BackupList(list[BackupInfo]):
    """:func:`parse_list`'s result: the backups, whether the server had to rebuild its
    ``index.json`` from the manifests to list them (our server's ``index_rebuilt``), the state
    of the second copy (``copy``) and, when asked, why retention keeps each one (``why``)."""

    index_rebuilt: bool = False
    copy_state: CopyStatus | None = None
    why: dict[str, list[str]] | None = None


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
    why = obj.get("why")
    if why is not None and (not isinstance(why, dict) or not all(
            isinstance(v, list) and all(isinstance(r, str) for r in v) for v in why.values())):
        raise FormatError("The backup list field 'why' must map backup ids to lists of reasons.")
    found = BackupList(BackupInfo.from_dict(item) for item in backups)
    found.index_rebuilt = rebuilt
    found.copy_state = parse_copy(obj.get("copy"))
    found.why = why
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
    policy_text, notify = obj.get("policy_text"), obj.get("notify")
    if not (policy_text is None or isinstance(policy_text, str)) \
            or not (notify is None or isinstance(notify, dict)):
        raise FormatError("The backup status fields 'policy_text' and 'notify' have the wrong type.")
    return BackupStatus(
        enabled=enabled,
        retention_days=_optional_int(obj.get("retention_days"), "The backup status field 'retention_days'"),
        last_backup=None if last is None else BackupInfo.from_dict(last),
        next_backup_at_unix_secs=_optional_int(obj.get("next_backup_at_unix_secs"),
                                               "The backup status field 'next_backup_at_unix_secs'"),
        last_drill=drills[0], last_ok_drill=drills[1], overdue=overdue, index_rebuilt=rebuilt,
        overdue_after_seconds=_optional_int(obj.get("overdue_after_seconds"),
                                            "The backup status field 'overdue_after_seconds'"),
        policy_text=policy_text, copy=parse_copy(obj.get("copy")), notify=notify,
        kept_tree=_kept_tree(obj.get("kept_tree")),
    )


def _kept_tree(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    fields = check_object(value, "The backup status field 'kept_tree'")
    if not isinstance(fields.get("upload"), str) or not is_kind(fields.get("drop_at_unix_secs"), int):
        raise FormatError("The backup status field 'kept_tree' must have 'upload' and 'drop_at_unix_secs'.")
    return fields


@dataclass(frozen=True)
class CopyReport:
    """How the copy of a new backup went (our server's ``copy`` next to a backup): ``ok`` or
    ``failed`` with the error, and the copy's state afterwards."""

    bucket: str
    status: str
    state: str
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"bucket": self.bucket, "status": self.status, "state": self.state}
        if self.error is not None:
            out["error"] = self.error
        return out


def parse_copy_report(data: Any) -> CopyReport | None:
    """A ``copy`` report ``{"bucket", "status", "state", "error"?}``, or None when absent."""
    if data is None:
        return None
    obj = check_object(data, "The backup copy report")
    bucket, status, state, error = obj.get("bucket"), obj.get("status"), obj.get("state"), obj.get("error")
    if not isinstance(bucket, str) or status not in ("ok", "failed") or not isinstance(state, str) \
            or not (error is None or isinstance(error, str)):
        raise FormatError("The backup copy report needs 'bucket', 'status' (ok or failed) and 'state'.")
    return CopyReport(bucket, status, state, error)


def parse_created(reply: Any) -> tuple[BackupInfo, CopyReport | None]:
    """A whole ``backup_now`` reply -> (the new BackupInfo, how its copy went or None)."""
    obj = check_object(reply, "The backup reply")
    return BackupInfo.from_dict(obj.get("data")), parse_copy_report(obj.get("copy"))


def parse_download(data: Any) -> DownloadLink:
    """``{"backup": BackupInfo, "url", "expires_in_seconds"}``."""
    obj = check_object(data, "The download link")
    url, expires = obj.get("url"), obj.get("expires_in_seconds")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise FormatError("The download link has no http(s) 'url'.")
    if not isinstance(expires, int) or isinstance(expires, bool):
        raise FormatError("The download link field 'expires_in_seconds' must be a whole number.")
    return DownloadLink(BackupInfo.from_dict(obj.get("backup")), url, expires, parse_source(obj))


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
        return Finalized("created", backup_id=backup_id, size_bytes=size,
                         copy=parse_copy_report(backup.get("copy")))
    if status == "failed":
        message = backup.get("message")
        if not isinstance(message, str):
            raise FormatError("The deploy reply's failed backup needs a 'message'.")
        return Finalized("failed", message=message)
    if status == "disabled":
        return Finalized("disabled")
    raise FormatError("The deploy reply's backup status must be created, failed or disabled.")


def parse_drill(data: Any) -> DrillResult:
    """``drill_backup``'s reply: one drill result."""
    return DrillResult.from_dict(data)


PREVIEW_FIELDS = ("added", "removed", "changed", "counts", "tables", "backup")


def parse_preview(data: Any) -> dict[str, Any]:
    """``restore_preview``'s reply: ``{"app", "backup", "added", "removed", "changed", "counts",
    "truncated", "tables"}`` (the backup's manifest is checked)."""
    if not isinstance(data, dict) or not all(k in data for k in PREVIEW_FIELDS):
        raise FormatError("The restore preview must be an object with added, removed, changed, counts, "
                          "tables and backup.")
    BackupInfo.from_dict(data["backup"])
    return data


@dataclass(frozen=True)
class SafetyCopy:
    """What a restore or undo did with the data it replaced: ``kept`` on the server for
    ``keep_hours`` (uploading in the background), ``uploaded`` before the swap as ``backup_id``
    (``reason``: why it could not be kept), or ``none``."""

    status: str
    backup_id: str | None = None
    keep_hours: float | None = None
    drop_at_unix_secs: int | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.status == "kept":
            return {"status": "kept", "keep_hours": self.keep_hours,
                    "drop_at_unix_secs": self.drop_at_unix_secs}
        if self.status == "uploaded":
            return {"status": "uploaded", "id": self.backup_id, "reason": self.reason}
        return {"status": self.status}


@dataclass(frozen=True)
class Restored:
    """A ``restore_backup`` or ``undo_restore`` reply. ``backup`` is the restored BackupInfo (None
    when an undo swapped the kept tree back: ``kept_at_unix_secs`` says when it was kept);
    ``safety`` and ``downtime_seconds`` are None from a server that does not report them."""

    backup: BackupInfo | None
    safety: SafetyCopy | None
    downtime_seconds: float | None
    kept_at_unix_secs: int | None = None

    @property
    def safety_backup_id(self) -> str | None:
        return None if self.safety is None else self.safety.backup_id

    def to_dict(self) -> dict[str, Any]:
        """Our JSON result fields (``backup`` is added by the command)."""
        out: dict[str, Any] = {"safety_backup_id": self.safety_backup_id}
        if self.safety is not None:
            out["safety_backup"] = self.safety.to_dict()
        if self.downtime_seconds is not None:
            out["downtime_seconds"] = self.downtime_seconds
        if self.kept_at_unix_secs is not None:
            out["kept_at_unix_secs"] = self.kept_at_unix_secs
        return out


def parse_restored(reply: Any) -> Restored:
    """A whole ``restore_backup`` reply: ``data`` is the restored BackupInfo; our fields next to
    it are ``safety_backup``, ``downtime_seconds`` and ``safety_backup_id``."""
    obj = check_object(reply, "The restore reply")
    return Restored(BackupInfo.from_dict(obj.get("data")), _safety(obj), _downtime(obj))


def parse_undone(reply: Any) -> Restored:
    """A whole ``undo_restore`` reply: ``data`` is ``{"source": "kept", "kept_at_unix_secs", ...}``
    or ``{"source": "bucket", "backup": BackupInfo}`` (a BackupInfo itself from older servers)."""
    obj = check_object(reply, "The undo reply")
    data = check_object(obj.get("data"), "The undo reply's data")
    if data.get("source") == "kept":
        kept_at = data.get("kept_at_unix_secs")
        if not is_kind(kept_at, int):
            raise FormatError("The undo reply field 'kept_at_unix_secs' must be a whole number.")
        return Restored(None, _safety(obj), _downtime(obj), kept_at)
    backup = data.get("backup") if data.get("source") == "bucket" else data
    return Restored(BackupInfo.from_dict(backup), _safety(obj), _downtime(obj))


def _safety(obj: dict[str, Any]) -> SafetyCopy | None:
    legacy = obj.get("safety_backup_id")
    if legacy is not None and not isinstance(legacy, str):
        raise FormatError("The restore reply field 'safety_backup_id' must be a string.")
    safety = obj.get("safety_backup")
    if safety is None:
        return None if legacy is None else SafetyCopy("uploaded", legacy)
    fields = check_object(safety, "The restore reply field 'safety_backup'")
    status = fields.get("status")
    if status not in ("kept", "uploaded", "none"):
        raise FormatError("The restore reply field 'safety_backup' has an unknown status.")
    hours, drop_at = fields.get("keep_hours"), fields.get("drop_at_unix_secs")
    backup_id, reason = fields.get("id"), fields.get("reason")
    if not (hours is None or is_kind(hours, (int, float))) or not (drop_at is None or is_kind(drop_at, int)) \
            or not all(v is None or isinstance(v, str) for v in (backup_id, reason)):
        raise FormatError("The restore reply field 'safety_backup' has a field of the wrong type.")
    return SafetyCopy(status, backup_id, None if hours is None else float(hours), drop_at, reason)


def _downtime(obj: dict[str, Any]) -> float | None:
    value = obj.get("downtime_seconds")
    if value is not None and not is_kind(value, (int, float)):
        raise FormatError("The restore reply field 'downtime_seconds' must be a number.")
    return None if value is None else float(value)


def parse_notes(reply: Any) -> list[str]:
    """A whole reply's ``notes`` (our server's remarks next to ``data``, e.g. that self-healing is
    off for a bucket that cannot be listed), without repeats; none from Tako's server."""
    notes = reply.get("notes", []) if isinstance(reply, dict) else []
    if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
        raise FormatError("The reply field 'notes' must be a list of strings.")
    return list(dict.fromkeys(notes))


REINDEX_PREVIOUS = ("ok", "missing", "unreadable")


def parse_reindex(data: Any) -> dict[str, Any]:
    """``reindex``'s reply: ``{"app", "backups", "index_rebuilt", "previous"}``."""
    if not isinstance(data, dict) or not isinstance(data.get("backups"), list) \
            or data.get("previous") not in REINDEX_PREVIOUS:
        raise FormatError("The reindex reply must have a 'backups' list and 'previous'.")
    return data


def parse_reencrypted(data: Any) -> dict[str, Any]:
    """``reencrypt_backups``' reply: ``{"app", "key_id", "reencrypted", "unchanged"}``."""
    if not isinstance(data, dict) or not isinstance(data.get("reencrypted"), list) \
            or not is_kind(data.get("unchanged"), int) or not isinstance(data.get("key_id"), str):
        raise FormatError("The re-encryption reply must have 'reencrypted', 'unchanged' and 'key_id'.")
    return data


def parse_sync(data: Any) -> dict[str, Any]:
    """``sync_copies``' reply: ``{"app", "bucket", "copied": [ids], "failed": [{"backup_id",
    "error"}], "already", "copy"}``."""
    if not isinstance(data, dict) or not isinstance(data.get("bucket"), str) \
            or not isinstance(data.get("copied"), list) or not isinstance(data.get("failed"), list) \
            or not is_kind(data.get("already"), int) \
            or not all(isinstance(f, dict) and isinstance(f.get("backup_id"), str)
                       and isinstance(f.get("error"), str) for f in data["failed"]):
        raise FormatError("The sync reply must have 'bucket', 'copied', 'failed' and 'already'.")
    parse_copy(data.get("copy"))
    return data


def parse_notify_test(data: Any) -> dict[str, Any]:
    """``notify_test``'s reply: ``{"app", "results": {target: "delivered" | "failed (...)"}}``."""
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(results, dict) or not all(isinstance(v, str) for v in results.values()):
        raise FormatError("The test notification reply must have 'results'.")
    return data
