"""Tako's management protocol: command names, request and reply shapes, shared by client and server.

A request is ``POST /rpc`` with one JSON object tagged by ``"command"``; a reply is
``{"status": "ok", "data": ...}`` or ``{"status": "error", "message": ...}``. Only ``hello`` and
``server_info`` may be unsigned. Parsing is strict and raises :class:`FormatError` naming the
command and the field; messages never echo field values (they may be secrets).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..errors import FormatError
from ..primitives.json_shapes import check_fields
from ..primitives.start_command import argv_problem, env_var_problem
from ..primitives.text import printable

__all__ = [
    "CALL_TIMEOUT", "COMMANDS", "CONNECT_TIMEOUT", "DEFAULT_PORT", "LONG_COMMANDS", "LONG_TIMEOUT",
    "MAX_BODY_BYTES", "PROTOCOL", "PUBLIC_COMMANDS", "RPC_PATH", "Reply", "Request", "RuntimeSettings",
    "TARGET", "carries_secrets", "check_request", "dumps", "encode_request", "error_reply", "ok_reply",
    "read_command", "timeout_for",
]

PROTOCOL = "tako-management-rpc-v0"
DEFAULT_PORT = 9844
RPC_PATH = "/rpc"
MAX_BODY_BYTES = 1 << 20
CONNECT_TIMEOUT = 5.0
CALL_TIMEOUT = 5.0
LONG_TIMEOUT = 600.0
MAX_INSTANCES = 64

HELLO = "hello"
SERVER_INFO = "server_info"
BACKUP_NOW = "backup_now"
LIST_BACKUPS = "list_backups"
BACKUP_STATUS = "backup_status"
BACKUP_DOWNLOAD_URL = "backup_download_url"
RESTORE_BACKUP = "restore_backup"
DEPLOY = "deploy"
# Our extensions (our server only): drills, previews, undo, reindex, key rotation, progress.
DRILL_BACKUP = "drill_backup"
RESTORE_PREVIEW = "restore_preview"
UNDO_RESTORE = "undo_restore"
REINDEX = "reindex"
REENCRYPT_BACKUPS = "reencrypt_backups"
OPERATION_PROGRESS = "operation_progress"

# Optional in every request body: the label of the server it is meant for (our CLI adds it; Tako's
# server ignores unknown fields). tako-server refuses a body whose target is another server.
TARGET = "target"
# Fields whose values are secrets (storage credentials, backup keys, app environment).
SECRET_FIELDS = ("backup", "runtime")

_OBJ_OR_NULL = (dict, type(None))
_HOURS = (int, float)
# Optional in restore_backup and undo_restore: hours to keep the replaced tree on disk (0..720).
KEEP_PREVIOUS = "keep_previous_hours"
MAX_KEEP_HOURS = 720
# command -> (required fields, optional fields); "command" itself is implied.
COMMANDS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    HELLO: ({}, {}),
    SERVER_INFO: ({}, {}),
    BACKUP_NOW: ({"app": str}, {"backup": _OBJ_OR_NULL}),
    LIST_BACKUPS: ({"app": str}, {}),
    BACKUP_STATUS: ({"app": str}, {}),
    BACKUP_DOWNLOAD_URL: ({"app": str, "backup_id": str}, {}),
    RESTORE_BACKUP: ({"app": str, "backup_id": str}, {"safety_backup": bool, KEEP_PREVIOUS: _HOURS}),
    DEPLOY: ({"app": str}, {"backup": _OBJ_OR_NULL, "runtime": _OBJ_OR_NULL}),
    DRILL_BACKUP: ({"app": str}, {"backup_id": (str, type(None))}),
    RESTORE_PREVIEW: ({"app": str, "backup_id": str}, {}),
    UNDO_RESTORE: ({"app": str}, {"safety_backup": bool, KEEP_PREVIOUS: _HOURS}),
    REINDEX: ({"app": str}, {}),
    REENCRYPT_BACKUPS: ({"app": str}, {"backup": _OBJ_OR_NULL}),
    OPERATION_PROGRESS: ({"app": str}, {}),
}
PUBLIC_COMMANDS = frozenset({HELLO, SERVER_INFO})
LONG_COMMANDS = frozenset({BACKUP_NOW, RESTORE_BACKUP, DEPLOY, DRILL_BACKUP, RESTORE_PREVIEW, UNDO_RESTORE,
                           REINDEX, REENCRYPT_BACKUPS})

@dataclass(frozen=True)
class Request:
    """A checked request: the command, its fields (without ``command`` and ``target``) and the
    server label it names as its target, if any."""

    command: str
    fields: dict[str, Any] = field(repr=False)
    target: str | None = None


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON, as sent on the wire."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def encode_request(command: str, fields: dict[str, Any] | None = None) -> bytes:
    """The request body for ``command`` (``command`` first, then ``fields``)."""
    return dumps({"command": command, **(fields or {})})


@dataclass(frozen=True)
class Reply:
    """Reply ``data`` plus fields of our own next to Tako's ``status`` and ``data`` (e.g. the
    ``safety_backup_id`` of a restore, whose ``data`` stays Tako's BackupInfo)."""

    data: Any
    extra: dict[str, Any] = field(default_factory=dict)


def ok_reply(data: Any, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """``{"status": "ok", "data": data, **extra}``; ``extra`` never replaces status or data."""
    fields = {k: v for k, v in (extra or {}).items() if k not in ("status", "data")}
    return {"status": "ok", "data": data, **fields}


def error_reply(message: str) -> dict[str, Any]:
    return {"status": "error", "message": message}


def timeout_for(command: str) -> float:
    """Tako's per-call timeout: 10 minutes for backup_now, restore_backup and deploy (and our
    drill, preview, undo, reindex and re-encryption), else 5 s."""
    return LONG_TIMEOUT if command in LONG_COMMANDS else CALL_TIMEOUT


def read_command(body: bytes) -> tuple[str, dict[str, Any]]:
    """Decode a request body and return its command name and the whole object.

    Raises FormatError when the body is not a JSON object with a string ``command``.
    """
    try:
        obj = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise FormatError("Request body is not valid JSON.") from None
    if not isinstance(obj, dict):
        raise FormatError("Request body must be a JSON object.")
    command = obj.get("command")
    if not isinstance(command, str) or not command:
        raise FormatError("Request body has no 'command' string.")
    return command, obj


def carries_secrets(fields: dict[str, Any]) -> bool:
    """Whether a request with ``fields`` carries secrets (a backup binding or runtime settings)."""
    return any(fields.get(name) is not None for name in SECRET_FIELDS)


def check_request(command: str, obj: dict[str, Any]) -> Request:
    """Check ``obj``'s fields against ``command``'s shape; ``target`` (a string) is allowed in every
    command and returned apart.

    Raises FormatError for an unknown command, a missing or unknown field, or a wrong type.
    """
    if command not in COMMANDS:
        known = ", ".join(sorted(COMMANDS))
        raise FormatError(f"Unknown command '{printable(command, 64)}' (known: {known}).")
    required, optional = COMMANDS[command]
    target = obj.get(TARGET)
    if target is not None and not isinstance(target, str):
        raise FormatError(f"Command '{command}' field '{TARGET}' has the wrong type.")
    fields = check_fields({k: v for k, v in obj.items() if k not in ("command", TARGET)},
                          f"Command '{command}'", required, optional)
    return Request(command, fields, target)


@dataclass(frozen=True)
class RuntimeSettings:
    """How the server runs an app (``deploy``'s ``runtime``): argv, instance count, extra env."""

    start: tuple[str, ...]
    instances: int
    env: dict[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_dict(cls, obj: Any) -> RuntimeSettings:
        """Raises FormatError for a malformed value (never echoing env values)."""
        fields = check_fields(obj, "Runtime settings", {"start": list, "instances": int},
                              {"env": (dict, type(None))})
        start, instances, env = fields["start"], fields["instances"], fields.get("env") or {}
        problem = argv_problem(start)
        if problem is not None:
            raise FormatError(f"Runtime settings field 'start' {problem}.")
        if not 0 <= instances <= MAX_INSTANCES:
            raise FormatError(
                f"Runtime settings field 'instances' must be an integer from 0 to {MAX_INSTANCES}.")
        for key, value in env.items():
            problem = env_var_problem(key, value)
            if problem is not None:
                raise FormatError(f"Runtime settings env variable '{printable(key, 64)}' {problem}.")
        return cls(start=tuple(start), instances=instances, env=dict(env))

    def to_dict(self) -> dict[str, Any]:
        return {"start": list(self.start), "instances": self.instances, "env": dict(self.env)}

