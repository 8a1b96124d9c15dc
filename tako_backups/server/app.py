"""The ASGI app: ``POST /rpc`` speaking Tako's management protocol.

Order of checks: body size (1 MiB), JSON object with a ``command`` (400), signature unless the
command is ``hello`` or ``server_info`` (401, nothing done), command and fields (400), the body's
``target`` against this server (400, see ``request_target.py``), then the command runs in a
worker thread. TakoErrors become ``{"status": "error", "message"}`` with HTTP
400; anything else is logged and answered with a generic 500, never a traceback.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..errors import AuthError, FormatError, TakoError
from ..models import BackupBinding
from ..primitives.names import check_app_id, join_app_id
from ..primitives.text import printable
from ..remote import protocol
from ..remote.protocol import MAX_BODY_BYTES, PUBLIC_COMMANDS, RPC_PATH, Request, RuntimeSettings
from .auth import RequestAuth
from .request_target import TargetError, check_target
from .service import BackupService

__all__ = ["create_app", "dispatch"]

log = logging.getLogger(__name__)


class _TooLarge(Exception):
    pass


def create_app(service: BackupService, auth: RequestAuth, *, max_body: int = MAX_BODY_BYTES,
               require_target: bool = False) -> Starlette:
    """The Starlette app serving ``POST /rpc`` for ``service``, checking signatures with ``auth``;
    with ``require_target`` a signed body must name this server as its ``target``."""

    async def rpc(request: HttpRequest) -> JSONResponse:
        try:
            body = await _read_body(request, max_body)
        except _TooLarge:
            return _error(400, f"Request body is larger than {max_body} bytes.")
        try:
            command, obj = protocol.read_command(body)
        except FormatError as exc:
            return _error(400, str(exc))
        who = "unsigned"
        if command not in PUBLIC_COMMANDS:
            try:
                key = await run_in_threadpool(auth.check, request.headers, body)
            except AuthError as exc:
                shown = command if command in protocol.COMMANDS else "an unknown command"
                log.warning("refused %s: %s", shown, exc)
                return _error(401, str(exc))
            who = f"{key.fingerprint} {key.comment}".strip()
        try:
            checked = protocol.check_request(command, obj)
            if command not in PUBLIC_COMMANDS:
                check_target(checked.target, service.server_name, required=require_target)
            log.info("%s %s by %s", command, checked.fields.get("app", ""), who)
            data = await run_in_threadpool(dispatch, service, checked)
        except TargetError as exc:
            log.warning("refused %s by %s: %s", command, who, exc)
            return _error(400, str(exc))
        except TakoError as exc:
            log.info("%s failed: %s", command, exc)
            return _error(400, str(exc))
        except Exception:
            log.exception("%s failed unexpectedly", command)
            return _error(500, f"The server failed while running {command}; see the tako-server log.")
        if isinstance(data, protocol.Reply):
            return JSONResponse(protocol.ok_reply(data.data, data.extra))
        return JSONResponse(protocol.ok_reply(data))

    return Starlette(routes=[Route(RPC_PATH, rpc, methods=["POST"])])


def dispatch(service: BackupService, request: Request) -> Any:
    """Run one checked request on ``service`` and return its reply data (or a
    :class:`~tako_backups.remote.protocol.Reply` when the reply carries fields next to ``data``).

    Raises FormatError for malformed ``backup``/``runtime`` values and whatever the command raises.
    """
    fields = request.fields
    command = request.command
    if command == protocol.HELLO:
        return service.hello()
    if command == protocol.SERVER_INFO:
        return service.server_info()
    app = join_app_id(*check_app_id(fields["app"]))  # Tako's "demo" is "demo/production": one lock
    if command == protocol.BACKUP_NOW:
        return service.backup_now(app, _binding(fields.get("backup")))
    if command == protocol.LIST_BACKUPS:
        return service.list_backups(app)
    if command == protocol.BACKUP_STATUS:
        return service.backup_status(app)
    if command == protocol.BACKUP_DOWNLOAD_URL:
        return service.backup_download_url(app, fields["backup_id"])
    if command == protocol.RESTORE_BACKUP:
        return service.restore_backup(app, fields["backup_id"], fields.get("safety_backup", True),
                                      _keep_hours(command, fields))
    if command == protocol.DEPLOY:
        runtime = fields.get("runtime")
        return service.deploy(app, _binding(fields.get("backup")),
                              None if runtime is None else RuntimeSettings.from_dict(runtime))
    return _dispatch_extension(service, command, app, fields)


def _dispatch_extension(service: BackupService, command: str, app: str, fields: dict[str, Any]) -> Any:
    """Our commands that Tako's server does not have: drills, previews, undo, reindex,
    re-encryption, progress."""
    if command == protocol.DRILL_BACKUP:
        return service.drill_backup(app, fields.get("backup_id"))
    if command == protocol.RESTORE_PREVIEW:
        return service.restore_preview(app, fields["backup_id"])
    if command == protocol.UNDO_RESTORE:
        return service.undo_restore(app, fields.get("safety_backup", True), _keep_hours(command, fields))
    if command == protocol.REINDEX:
        return service.reindex(app)
    if command == protocol.REENCRYPT_BACKUPS:
        return service.reencrypt_backups(app, _binding(fields.get("backup")))
    if command == protocol.OPERATION_PROGRESS:
        return service.operation_progress(app)
    raise FormatError(f"Unknown command '{command}'.")


def _keep_hours(command: str, fields: dict[str, Any]) -> float | None:
    """``keep_previous_hours`` when given. Raises FormatError outside 0..720."""
    hours = fields.get(protocol.KEEP_PREVIOUS)
    if hours is None:
        return None
    if not math.isfinite(hours) or not 0 <= hours <= protocol.MAX_KEEP_HOURS:
        raise FormatError(f"Command '{command}' field '{protocol.KEEP_PREVIOUS}' must be a number of hours "
                          f"from 0 to {protocol.MAX_KEEP_HOURS}.")
    return float(hours)


def _binding(value: Any) -> BackupBinding | None:
    return None if value is None else BackupBinding.from_dict(value)


async def _read_body(request: HttpRequest, limit: int) -> bytes:
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _error(status_code: int, message: str) -> JSONResponse:
    # A message may echo a signed client's value (lone surrogates, newlines): one printable line.
    return JSONResponse(protocol.error_reply(printable(message, 1000)), status_code=status_code)

