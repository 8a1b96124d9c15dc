"""Tako's management protocol: command names, request and reply shapes, shared by client and server.

A request is ``POST /rpc`` with one JSON object tagged by ``"command"``; a reply is
``{"status": "ok", "data": ...}`` or ``{"status": "error", "message": ...}``. Only ``hello`` and
``server_info`` may be unsigned. Parsing is strict and raises :class:`FormatError` naming the
command and the field; messages never echo field values (they may be secrets).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import FormatError

__all__ = [
    "CALL_TIMEOUT", "COMMANDS", "CONNECT_TIMEOUT", "DEFAULT_PORT", "LONG_COMMANDS", "LONG_TIMEOUT",
    "MAX_BODY_BYTES", "PROTOCOL", "PUBLIC_COMMANDS", "RPC_PATH", "Reply", "Request", "RuntimeSettings",
    "TARGET", "app_id", "carries_secrets", "check_request", "dumps", "encode_request", "error_reply",
    "ok_reply", "parse_app", "read_command", "timeout_for",
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
# Beyond Tako (our server only): drills, previews, undo, reindex, key rotation.
DRILL_BACKUP = "drill_backup"
RESTORE_PREVIEW = "restore_preview"
UNDO_RESTORE = "undo_restore"
REINDEX = "reindex"
REENCRYPT_BACKUPS = "reencrypt_backups"

# Optional in every request body: the label of the server it is meant for (our CLI adds it; Tako's
# server ignores unknown fields). tako-server refuses a body whose target is another server.
TARGET = "target"
# Fields whose values are secrets (storage credentials, backup keys, app environment).
SECRET_FIELDS = ("backup", "runtime")

_OBJ_OR_NULL = (dict, type(None))
# command -> (required fields, optional fields); "command" itself is implied.
COMMANDS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    HELLO: ({}, {}),
    SERVER_INFO: ({}, {}),
    BACKUP_NOW: ({"app": str}, {"backup": _OBJ_OR_NULL}),
    LIST_BACKUPS: ({"app": str}, {}),
    BACKUP_STATUS: ({"app": str}, {}),
    BACKUP_DOWNLOAD_URL: ({"app": str, "backup_id": str}, {}),
    RESTORE_BACKUP: ({"app": str, "backup_id": str}, {"safety_backup": bool}),
    DEPLOY: ({"app": str}, {"backup": _OBJ_OR_NULL, "runtime": _OBJ_OR_NULL}),
    DRILL_BACKUP: ({"app": str}, {"backup_id": (str, type(None))}),
    RESTORE_PREVIEW: ({"app": str, "backup_id": str}, {}),
    UNDO_RESTORE: ({"app": str}, {"safety_backup": bool}),
    REINDEX: ({"app": str}, {}),
    REENCRYPT_BACKUPS: ({"app": str}, {"backup": _OBJ_OR_NULL}),
}
PUBLIC_COMMANDS = frozenset({HELLO, SERVER_INFO})
LONG_COMMANDS = frozenset({BACKUP_NOW, RESTORE_BACKUP, DEPLOY, DRILL_BACKUP, RESTORE_PREVIEW, UNDO_RESTORE,
                           REINDEX, REENCRYPT_BACKUPS})

_APP_NAME = re.compile(r"[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?")
_ENV_NAME = re.compile(r"[a-z0-9-]{1,63}")
_ENV_VAR = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


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
        raise FormatError(f"Unknown command '{_shown(command)}' (known: {known}).")
    required, optional = COMMANDS[command]
    target = obj.get(TARGET)
    if target is not None and not isinstance(target, str):
        raise FormatError(f"Command '{command}' field '{TARGET}' has the wrong type.")
    fields = {k: v for k, v in obj.items() if k not in ("command", TARGET)}
    unknown = sorted(set(fields) - set(required) - set(optional))
    if unknown:
        raise FormatError(f"Command '{command}' has unknown field '{_shown(unknown[0])}'.")
    for name in required:
        if name not in fields:
            raise FormatError(f"Command '{command}' is missing field '{name}'.")
    for name, kind in {**required, **optional}.items():
        if name in fields and not _is(fields[name], kind):
            raise FormatError(f"Command '{command}' field '{name}' has the wrong type.")
    return Request(command, fields, target)


def parse_app(app: str) -> tuple[str, str]:
    """Split ``{name}/{env}`` and check both parts.

    The name is a DNS label (lowercase letters, digits, ``-``; starts with a letter, ends with a
    letter or digit, at most 63 chars); the env is 1-63 chars of ``[a-z0-9-]``. Raises FormatError.
    """
    name, sep, env = app.partition("/")
    if not sep or not _APP_NAME.fullmatch(name) or not _ENV_NAME.fullmatch(env):
        raise FormatError(
            f"Invalid app '{_shown(app)}': expected {{name}}/{{env}}, e.g. demo/production, with a "
            "name of lowercase letters, digits and '-' (starting with a letter) and an env of [a-z0-9-]."
        )
    return name, env


def app_id(name: str, env: str) -> str:
    """``{name}/{env}``, checked. Raises FormatError."""
    value = f"{name}/{env}"
    parse_app(value)
    return value


@dataclass(frozen=True)
class RuntimeSettings:
    """How the server runs an app (``deploy``'s ``runtime``): argv, instance count, extra env."""

    start: tuple[str, ...]
    instances: int
    env: dict[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_dict(cls, obj: Any) -> RuntimeSettings:
        """Raises FormatError for a malformed value (never echoing env values)."""
        if not isinstance(obj, dict):
            raise FormatError("Runtime settings must be a JSON object.")
        unknown = sorted(set(obj) - {"start", "instances", "env"})
        if unknown:
            raise FormatError(f"Runtime settings have unknown field '{_shown(unknown[0])}'.")
        start, instances, env = obj.get("start"), obj.get("instances"), obj.get("env") or {}
        if not isinstance(start, list) or not start or not all(isinstance(a, str) and a for a in start):
            raise FormatError("Runtime settings field 'start' must be a non-empty list of non-empty strings.")
        if any("\0" in a for a in start):
            raise FormatError("Runtime settings field 'start' contains a NUL byte.")
        if not isinstance(instances, int) or isinstance(instances, bool) \
                or not 0 <= instances <= MAX_INSTANCES:
            raise FormatError(
                f"Runtime settings field 'instances' must be an integer from 0 to {MAX_INSTANCES}.")
        if not isinstance(env, dict):
            raise FormatError("Runtime settings field 'env' must be an object of strings.")
        for key, value in env.items():
            if not _ENV_VAR.fullmatch(key) or not isinstance(value, str) or "\0" in value:
                raise FormatError(
                    f"Runtime settings env variable '{_shown(key)}' has an invalid name or value.")
        return cls(start=tuple(start), instances=instances, env=dict(env))

    def to_dict(self) -> dict[str, Any]:
        return {"start": list(self.start), "instances": self.instances, "env": dict(self.env)}


def _is(value: Any, kind: type | tuple[type, ...]) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        return False
    return isinstance(value, kinds)


def _shown(text: str, limit: int = 64) -> str:
    """A user-supplied name, printable and bounded, for messages."""
    clean = "".join(ch if ch.isprintable() else "?" for ch in text)
    return clean if len(clean) <= limit else clean[:limit] + "..."
