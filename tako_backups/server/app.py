"""The ASGI app: ``POST /rpc`` answering exactly as Tako's management HTTP server does.

Order of checks, as in Tako (tako-server/src/management_http.rs): the route (anything but
``POST /rpc`` → 404 ``not found``), the body (over 1 MiB → 413 ``request body too large``, a read
error → 400 ``invalid request body``), the command (not strict JSON, not a known command, a known
field missing, repeated or mistyped → 400 ``invalid command``), the signature unless the command
is ``hello`` or ``server_info`` (401 ``management auth required`` or ``management auth failed``,
nothing done; the reason goes to the log only), then ours: the body's ``target`` against this
server (400, see ``request_target.py``); then the command runs in a worker thread: 200
``{"status":"ok","data":...}`` or 400 ``{"status":"error","message":...}``.

The first four bodies are Tako's JSON literals (keys sorted); the others put ``status`` first, and
``data`` has its keys sorted at every level. Every reply is ``application/json`` with
``cache-control: no-store``. A failure nobody expected is logged and answered with a 500 that
names no detail, never a traceback.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request as HttpRequest
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ..core.copies import COPY, PRIMARY
from ..errors import AuthError, ConfigError, FormatError, TakoError
from ..models import BackupBinding
from ..policy import NotifySettings
from ..primitives.names import check_app_id, join_app_id
from ..primitives.text import printable
from ..remote import protocol
from ..remote.protocol import MAX_BODY_BYTES, PUBLIC_COMMANDS, RPC_PATH, Request, RuntimeSettings
from . import notes
from .auth import RequestAuth, reply_text
from .request_target import TargetError, check_target
from .service import BackupService

__all__ = ["create_app", "dispatch"]

log = logging.getLogger(__name__)

# Tako's json! literals (serde_json sorts their keys).
NOT_FOUND = b'{"message":"not found","status":"error"}'
TOO_LARGE = b'{"message":"request body too large","status":"error"}'
INVALID_BODY = b'{"message":"invalid request body","status":"error"}'
INVALID_COMMAND = b'{"message":"invalid command","status":"error"}'
# Tako's answer when a reply cannot be serialized.
INTERNAL_ERROR = b'{"status":"error","message":"internal server error"}'
NONCE_NOT_RECORDED = ("The server could not record the request's nonce, so it did not run the request; "
                      "see the tako-server log.")


class _TooLarge(Exception):
    pass


def create_app(service: BackupService, auth: RequestAuth, *, max_body: int = MAX_BODY_BYTES,
               require_target: bool = False) -> ManagementApp:
    """The ASGI app serving ``POST /rpc`` for ``service``, checking signatures with ``auth``;
    with ``require_target`` a signed body must name this server as its ``target``."""
    return ManagementApp(service, auth, max_body=max_body, require_target=require_target)


class ManagementApp:
    """An ASGI application (HTTP and lifespan scopes); see the module docstring for what it answers."""

    def __init__(self, service: BackupService, auth: RequestAuth, *, max_body: int,
                 require_target: bool) -> None:
        self.service = service
        self.auth = auth
        self.max_body = max_body
        self.require_target = require_target

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":  # a websocket upgrade: refused before it is accepted
            await send({"type": "websocket.close"})
            return
        response = await self.handle(HttpRequest(scope, receive))
        await response(scope, receive, send)

    async def handle(self, request: HttpRequest) -> Response:
        """The reply to one HTTP request (never raises)."""
        raw_path = request.scope.get("raw_path") or request.scope["path"].encode("utf-8", "surrogateescape")
        if request.method != "POST" or raw_path.split(b"?", 1)[0] != RPC_PATH.encode():
            return _reply(404, NOT_FOUND)
        peer = request.client.host if request.client is not None else "unknown"
        try:
            body = await _read_body(request, self.max_body)
        except _TooLarge:
            log.info("refused a request from %s: body over %d bytes", peer, self.max_body)
            return _reply(413, TOO_LARGE)
        except Exception as exc:  # the client went away or broke the framing
            log.info("could not read a request body from %s: %s", peer, type(exc).__name__)
            return _reply(400, INVALID_BODY)
        try:
            checked = await run_in_threadpool(protocol.read_command, body)
        except FormatError as exc:
            log.info("invalid command from %s: %s", peer, printable(str(exc), 300))
            return _reply(400, INVALID_COMMAND)
        command = checked.command
        who = "unsigned"
        if command not in PUBLIC_COMMANDS:
            try:
                key = await run_in_threadpool(self.auth.check, request.headers, body)
            except AuthError as exc:
                log.warning("refused %s from %s (%s): %s", command, peer, reply_text(exc),
                            printable(str(exc), 300))
                return _reply(401, protocol.encode_error(reply_text(exc)))
            except ConfigError as exc:
                log.error("refused %s from %s: %s", command, peer, printable(str(exc), 300))
                return _reply(500, protocol.encode_error(NONCE_NOT_RECORDED))
            who = printable(f"{key.fingerprint} {key.comment}".strip(), 200)
        return await self._run(checked, who)

    async def _run(self, checked: Request, who: str) -> Response:
        command = checked.command
        try:
            if command not in PUBLIC_COMMANDS:
                check_target(checked.target, self.service.server_name, required=self.require_target)
            log.info("%s %s by %s", command, printable(str(checked.fields.get("app", "")), 200), who)
            data = await run_in_threadpool(dispatch, self.service, checked)
        except TargetError as exc:
            log.warning("refused %s by %s: %s", command, who, exc)
            return _error(400, str(exc))
        except TakoError as exc:
            log.info("%s failed: %s", command, printable(str(exc), 1000))
            return _error(400, str(exc))
        except Exception:
            log.exception("%s failed unexpectedly", command)
            return _error(500, f"The server failed while running {command}; see the tako-server log.")
        reply = data if isinstance(data, protocol.Reply) else protocol.Reply(data)
        try:
            return _reply(200, protocol.encode_ok(reply.data, reply.extra))
        except ValueError:  # e.g. a lone surrogate read from a hostile bucket index
            log.exception("the reply to %s cannot be serialized", command)
            return _reply(500, INTERNAL_ERROR)


def dispatch(service: BackupService, request: Request) -> Any:
    """Run one checked request on ``service`` and return its reply data (or a
    :class:`~tako_backups.remote.protocol.Reply` when the reply carries fields next to ``data``:
    e.g. the ``notes`` collected while it ran, see :mod:`.notes`).

    Raises FormatError for settings Tako's server refuses (with its texts) and malformed
    ``runtime`` values, and whatever the command raises.
    """
    with notes.collecting() as found:
        data = _dispatch(service, request)
    return notes.with_notes(data, found)


def _dispatch(service: BackupService, request: Request) -> Any:
    fields = request.fields
    command = request.command
    if command == protocol.HELLO:
        return service.hello(fields["protocol_version"])
    if command == protocol.SERVER_INFO:
        return service.server_info()
    app = join_app_id(*check_app_id(fields["app"]))  # Tako's "demo" is "demo/production": one lock
    if command == protocol.BACKUP_NOW:
        return service.backup_now_reply(app, _binding(fields.get("backup")))
    if command == protocol.LIST_BACKUPS:
        return service.list_backups(app, fields.get("why", False))
    if command == protocol.BACKUP_STATUS:
        return service.backup_status(app)
    if command == protocol.BACKUP_DOWNLOAD_URL:
        source = fields.get("source")
        if source not in (None, PRIMARY, COPY):
            raise FormatError("Command 'backup_download_url' field 'source' must be 'primary' or 'copy'.")
        return service.backup_download_url(app, fields["backup_id"], source)
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
    re-encryption, progress, the copy's sync and a test notification."""
    if command == protocol.DRILL_BACKUP:
        return service.drill_backup(app, fields.get("backup_id"))
    if command == protocol.RESTORE_PREVIEW:
        return service.restore_preview(app, fields["backup_id"])
    if command == protocol.UNDO_RESTORE:
        return service.undo_restore(app, fields.get("safety_backup", True), _keep_hours(command, fields))
    if command == protocol.RESTORE_PATHS:
        if not all(isinstance(p, str) for p in fields["paths"]):
            raise FormatError("Command 'restore_paths' field 'paths' must be a list of strings.")
        return service.restore_paths(app, fields["backup_id"], fields["paths"],
                                     fields.get("safety_backup", True), _keep_hours(command, fields))
    if command == protocol.REINDEX:
        return service.reindex(app)
    if command == protocol.REENCRYPT_BACKUPS:
        return service.reencrypt_backups(app, _binding(fields.get("backup")))
    if command == protocol.OPERATION_PROGRESS:
        return service.operation_progress(app)
    if command == protocol.SYNC_COPIES:
        return service.sync_copies(app)
    if command == protocol.NOTIFY_TEST:
        notify = fields.get("notify")
        return service.notify_test(app, None if notify is None else NotifySettings.from_dict(notify))
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
    if length.isascii() and length.isdigit() and int(length) > limit:
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _reply(status_code: int, body: bytes) -> Response:
    return Response(body, status_code=status_code, media_type="application/json",
                    headers={"cache-control": "no-store"})


def _error(status_code: int, message: str) -> Response:
    # A message may echo a signed client's value (lone surrogates, newlines): one printable line.
    return _reply(status_code, protocol.encode_error(printable(message, 1000)))
