"""Tako's management protocol: command names, request and reply shapes, shared by client and server.

A request is ``POST /rpc`` with one JSON object tagged by ``"command"``; a reply is
``{"status": "ok", "data": ...}`` or ``{"status": "error", "message": ...}``. Only ``hello`` and
``server_info`` may be unsigned.

Requests are read as Tako's server reads them (serde): the body is decoded strictly
(:func:`~tako_backups.primitives.strict_json.loads_strict`), fields nobody here knows are ignored at
every level, a known field must have its type (``protocol_version`` a u32) and may appear once.
Our own fields (``target``, ``safety_backup``, ``runtime``, ...) are checked the same way when
present. Failures raise :class:`FormatError` naming the command and the field, never a value (it
may be a secret); the server answers them all with Tako's ``invalid command``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..errors import FormatError
from ..models import BackupBinding
from ..primitives.json_shapes import check_fields, check_object
from ..primitives.start_command import argv_problem, env_var_problem
from ..primitives.strict_json import duplicate_keys, loads_strict
from ..primitives.text import printable

__all__ = [
    "AUTH_FAILED", "AUTH_MESSAGES", "AUTH_REQUIRED", "CALL_TIMEOUT", "CAPABILITIES", "COMMANDS",
    "CONNECT_TIMEOUT", "DEFAULT_PORT", "LONG_COMMANDS", "LONG_TIMEOUT", "MAX_BODY_BYTES",
    "PROTOCOL_VERSION", "PUBLIC_COMMANDS", "RPC_PATH", "Reply", "Request", "RuntimeSettings", "TARGET",
    "carries_secrets", "check_request", "dumps", "encode_error", "encode_ok", "encode_request",
    "hello_fields", "read_command", "timeout_for",
]

PROTOCOL_VERSION = 0
DEFAULT_PORT = 9844
RPC_PATH = "/rpc"
MAX_BODY_BYTES = 1 << 20
CONNECT_TIMEOUT = 5.0
CALL_TIMEOUT = 5.0
LONG_TIMEOUT = 600.0
MAX_INSTANCES = 64
U32_MAX = 2**32 - 1

# The only two 401 texts; Tako's CLI tries its next key on exactly these and on nothing else.
AUTH_REQUIRED = "management auth required"
AUTH_FAILED = "management auth failed"
AUTH_MESSAGES = frozenset({AUTH_REQUIRED, AUTH_FAILED})

HELLO = "hello"
SERVER_INFO = "server_info"
BACKUP_NOW = "backup_now"
LIST_BACKUPS = "list_backups"
BACKUP_STATUS = "backup_status"
BACKUP_DOWNLOAD_URL = "backup_download_url"
RESTORE_BACKUP = "restore_backup"
DEPLOY = "deploy"
# Our extensions (our server only): drills, previews, undo, reindex, key rotation, progress, the
# backup copy's sync and a test notification. Our optional fields in Tako's commands: ``why``
# (list), ``source`` (download link: ``primary`` or ``copy``) and ``keep_previous_hours``.
DRILL_BACKUP = "drill_backup"
RESTORE_PREVIEW = "restore_preview"
RESTORE_PATHS = "restore_paths"  # restore --path: a command of its own, so Tako's server refuses it
UNDO_RESTORE = "undo_restore"
REINDEX = "reindex"
REENCRYPT_BACKUPS = "reencrypt_backups"
OPERATION_PROGRESS = "operation_progress"
SYNC_COPIES = "sync_copies"
NOTIFY_TEST = "notify_test"

# What ``hello`` says this server does, in the order of Tako's list: only what we implement
# (``server_info`` and the backup commands). Tako's others (cold start, scale-to-zero, ``scale``,
# upgrade mode, releases, rollback, artifact uploads) are not ours to claim.
CAPABILITIES = ("server_runtime_info", "backups")

# Optional in every request body: the label of the server it is meant for (our CLI adds it; Tako's
# server ignores unknown fields). tako-server refuses a body whose target is another server.
TARGET = "target"
# Fields whose values are secrets (storage credentials, backup keys, app environment).
SECRET_FIELDS = ("backup", "runtime", "notify")

_OBJ_OR_NULL = (dict, type(None))
_HOURS = (int, float)
# Optional in restore_backup and undo_restore: hours to keep the replaced tree on disk (0..720).
KEEP_PREVIOUS = "keep_previous_hours"
MAX_KEEP_HOURS = 720
# command -> (required fields, optional fields); "command" itself is implied, and any other field
# is ignored (Tako's serde structs ignore unknown fields).
COMMANDS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    HELLO: ({"protocol_version": int}, {}),
    SERVER_INFO: ({}, {}),
    BACKUP_NOW: ({"app": str}, {"backup": _OBJ_OR_NULL}),
    LIST_BACKUPS: ({"app": str}, {"why": bool}),
    BACKUP_STATUS: ({"app": str}, {}),
    BACKUP_DOWNLOAD_URL: ({"app": str, "backup_id": str}, {"source": str}),
    RESTORE_BACKUP: ({"app": str, "backup_id": str}, {"safety_backup": bool, KEEP_PREVIOUS: _HOURS}),
    DEPLOY: ({"app": str}, {"backup": _OBJ_OR_NULL, "runtime": _OBJ_OR_NULL}),
    DRILL_BACKUP: ({"app": str}, {"backup_id": (str, type(None))}),
    RESTORE_PREVIEW: ({"app": str, "backup_id": str}, {}),
    RESTORE_PATHS: ({"app": str, "backup_id": str, "paths": list},
                    {"safety_backup": bool, KEEP_PREVIOUS: _HOURS}),
    UNDO_RESTORE: ({"app": str}, {"safety_backup": bool, KEEP_PREVIOUS: _HOURS}),
    REINDEX: ({"app": str}, {}),
    REENCRYPT_BACKUPS: ({"app": str}, {"backup": _OBJ_OR_NULL}),
    OPERATION_PROGRESS: ({"app": str}, {}),
    SYNC_COPIES: ({"app": str}, {}),
    NOTIFY_TEST: ({"app": str}, {"notify": _OBJ_OR_NULL}),
}
PUBLIC_COMMANDS = frozenset({HELLO, SERVER_INFO})
LONG_COMMANDS = frozenset({BACKUP_NOW, RESTORE_BACKUP, DEPLOY, DRILL_BACKUP, RESTORE_PREVIEW, UNDO_RESTORE,
                           REINDEX, REENCRYPT_BACKUPS, SYNC_COPIES, NOTIFY_TEST, RESTORE_PATHS})


@dataclass(frozen=True)
class Request:
    """A checked request: the command, its known fields (without ``command`` and ``target``) and
    the server label it names as its target, if any."""

    command: str
    fields: dict[str, Any] = field(repr=False)
    target: str | None = None


def dumps(obj: Any, *, sort_keys: bool = False) -> bytes:
    """Compact UTF-8 JSON, as sent on the wire (serde_json's spacing)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False,
                      sort_keys=sort_keys).encode("utf-8")


def encode_request(command: str, fields: dict[str, Any] | None = None) -> bytes:
    """The request body for ``command`` (``command`` first, then ``fields``)."""
    return dumps({"command": command, **(fields or {})})


def hello_fields() -> dict[str, Any]:
    """``hello``'s fields as Tako's CLI sends them: ``{"protocol_version": 0}``."""
    return {"protocol_version": PROTOCOL_VERSION}


@dataclass(frozen=True)
class Reply:
    """Reply ``data`` plus fields of our own next to Tako's ``status`` and ``data`` (e.g. the
    ``safety_backup_id`` of a restore, whose ``data`` stays Tako's BackupInfo)."""

    data: Any
    extra: dict[str, Any] = field(default_factory=dict)


def encode_ok(data: Any, extra: dict[str, Any] | None = None) -> bytes:
    """``{"status":"ok","data":...}`` as Tako's server writes it: ``status`` first, and inside
    ``data`` keys sorted at every level (it passes through a serde_json Value). ``extra`` fields
    follow; they never replace status or data. Raises ValueError for data JSON cannot hold."""
    fields = {k: v for k, v in (extra or {}).items() if k not in ("status", "data")}
    tail = b"".join(b"," + dumps(k) + b":" + dumps(v, sort_keys=True) for k, v in fields.items())
    return b'{"status":"ok","data":' + dumps(data, sort_keys=True) + tail + b"}"


def encode_error(message: str) -> bytes:
    """``{"status":"error","message":...}`` (Tako's Response::Error: ``status`` first)."""
    return dumps({"status": "error", "message": message})


def timeout_for(command: str) -> float:
    """Tako's per-call timeout: 10 minutes for backup_now, restore_backup and deploy (and our
    drill, preview, undo, reindex, re-encryption, copy sync and test notification), else 5 s."""
    return LONG_TIMEOUT if command in LONG_COMMANDS else CALL_TIMEOUT


def read_command(body: bytes) -> Request:
    """Decode and check a request body as Tako's server parses a ``Command``.

    Raises FormatError (Tako answers every such failure with ``invalid command``) when the body is
    not strict JSON, not an object, has no known ``command``, or a known field is missing, given
    twice, of the wrong type or out of range.
    """
    obj = check_object(loads_strict(body), "The request body")
    if "command" in duplicate_keys(obj):
        raise FormatError("The request body has field 'command' more than once.")
    command = obj.get("command")
    if not isinstance(command, str):
        raise FormatError("The request body has no 'command' string.")
    return check_request(command, obj)


def carries_secrets(fields: dict[str, Any]) -> bool:
    """Whether a request with ``fields`` carries secrets (a backup binding or runtime settings)."""
    return any(fields.get(name) is not None for name in SECRET_FIELDS)


def check_request(command: str, obj: dict[str, Any]) -> Request:
    """Check ``obj``'s fields against ``command``'s shape; ``target`` (a string or null) is allowed
    in every command and returned apart. Fields ``command`` does not know are left out.

    Raises FormatError for an unknown command, a missing, repeated or mistyped known field, a
    ``protocol_version`` outside u32, or a ``backup`` that is not Tako's BackupBinding shape.
    """
    if command not in COMMANDS:
        raise FormatError(f"Unknown command '{printable(command, 64)}'.")
    required, optional = COMMANDS[command]
    what = f"Command '{command}'"
    target = obj.get(TARGET)
    if TARGET in duplicate_keys(obj) or not (target is None or isinstance(target, str)):
        raise FormatError(f"{what} field '{TARGET}' has the wrong type or appears more than once.")
    fields = check_fields(obj, what, required, optional, ignore_unknown=True)
    if not 0 <= fields.get("protocol_version", 0) <= U32_MAX:
        raise FormatError(f"{what} field 'protocol_version' must be an integer from 0 to {U32_MAX}.")
    if fields.get("backup") is not None:
        BackupBinding.check_shape(fields["backup"])
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

