"""The servers a command talks to, and calling them.

:func:`resolve_target` turns ``--env``/``--server`` into the app, env and servers (config.toml
entries); :func:`call_servers` sends one signed RPC to each of them at once and keeps every
server's answer or error apart (:class:`Outcome`); :func:`raise_failures` turns failed servers into
the one error the command exits with.

Each client gets its own key iterator (``key_path`` of the server, else Tako's key discovery).
Tests replace :func:`rpc_transport` and :func:`download_transport` to run against the server app
in-process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from ..errors import ConfigError, FormatError, RemoteError, TakoError
from ..remote.client import AsyncRpcClient
from ..remote.keys import iter_signers

if TYPE_CHECKING:
    from ..project.model import Project
    from ..project.servers import ServerEntry
    from .context import Globals
    from .output import Output
    from .progress_view import ServerProgress

T = TypeVar("T")


@dataclass(frozen=True)
class Target:
    """An app's env and the servers a command runs on."""

    project: Project
    env: str
    servers: list[ServerEntry]

    @property
    def app(self) -> str:
        return self.project.name

    @property
    def app_id(self) -> str:
        """``{name}/{env}``, the ``app`` of every RPC."""
        from ..primitives.names import join_app_id

        return join_app_id(self.project.name, self.env)

    @property
    def title(self) -> str:
        return f"{self.project.name} ({self.env})"


@dataclass
class Outcome:
    """One server's answer (``data``, and the ``notes`` its reply carried) or error."""

    server: ServerEntry
    data: Any = None
    error: TakoError | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.server.name


class ServersFailed(RemoteError):
    """Several servers failed; ``details`` holds each one's error (printed before the message)."""

    def __init__(self, message: str, details: list[str]) -> None:
        super().__init__(message)
        self.details = details


def resolve_target(opts: Globals, env: str | None, server: str | None) -> Target:
    """Load tako.toml and config.toml and pick the env's servers (or only ``server``).

    Prints the "Using production environment" warning when ``env`` is None. Raises ConfigError for
    a missing or invalid file, an env tako.toml does not declare (or ``development``), an env
    without servers, or a server that config.toml or the env does not list.
    """
    from ..primitives.names import DEVELOPMENT_ENV
    from ..project.servers import load_servers, servers_for_env
    from ..project.tako_toml import load_project
    from .context import resolve_env

    name = resolve_env(opts, env)
    project = load_project(opts.config_path)
    if name == DEVELOPMENT_ENV:
        raise ConfigError(f"Environment '{name}' is reserved for local development and has no servers; "
                          "pass --env with a deployed environment.")
    return Target(project, name, servers_for_env(project, load_servers(), name, only=server))


def require_single(target: Target, message: str) -> ServerEntry:
    """The one server of ``target``. Raises ConfigError(``message``) when there are several."""
    if len(target.servers) != 1:
        raise ConfigError(message)
    return target.servers[0]


def rpc_transport(server: ServerEntry) -> httpx.AsyncBaseTransport | None:
    """The transport for RPCs to ``server``: None means a real connection (tests replace this)."""
    return None


def download_transport() -> httpx.BaseTransport | None:
    """The transport for presigned downloads: None means a real connection (tests replace this)."""
    return None


def client_for(server: ServerEntry) -> AsyncRpcClient:
    """A client for ``server`` signing with its ``key_path``, else with the discovered keys, over
    HTTPS pinned to its ``tls_fingerprint`` when it has one; every signed body names the server
    as its target."""
    key_path = str(server.key_path) if server.key_path is not None else None
    return AsyncRpcClient(server.name, server.host, server.management_port, iter_signers(key_path),
                          transport=rpc_transport(server), tls_fingerprint=server.tls_fingerprint)


def call_servers(servers: Sequence[ServerEntry], command: str, payload: dict[str, Any],
                 parse: Callable[[Any], T], *, out: Output | None = None,
                 spinner: str | None = None, whole_reply: bool = False,
                 watch: str | None = None) -> list[Outcome]:
    """Send ``command`` to every server at once; one :class:`Outcome` per server, in order.

    ``parse`` checks each reply's ``data`` (the whole reply object with ``whole_reply``, for
    fields our server adds next to it); a FormatError becomes that server's RemoteError. The
    reply's ``notes`` are kept in the outcome and, with ``out``, printed once per server. With
    ``out`` and ``spinner`` a spinner runs on a terminal meanwhile; with ``watch`` (the app id)
    too, each server's ``operation_progress`` is polled every second while its call runs and
    drawn as a progress bar per server (plain lines every few seconds when stderr is not a
    terminal; nothing with ``--json``). A server that cannot answer the poll (Tako's) is simply
    not drawn. A TakoError (unreachable, timeout, refused key, the server's own error) is kept in
    its outcome; nothing else is caught.
    """
    from .render import reply_notes
    from .replies import parse_notes

    async def one(server: ServerEntry) -> Outcome:
        try:
            async with client_for(server) as client:
                reply = await client.call_reply(command, payload)
            notes = _parsed(server, command, reply, parse_notes)
            data = _parsed(server, command, reply if whole_reply else reply["data"], parse)
            return Outcome(server, data=data, notes=notes)
        except TakoError as exc:
            return Outcome(server, error=exc)

    async def every(view: ServerProgress | None) -> list[Outcome]:
        calls = [asyncio.ensure_future(one(server)) for server in servers]
        polls = [] if view is None or watch is None else [
            asyncio.ensure_future(_poll(server, watch, call, view))
            for server, call in zip(servers, calls, strict=True)]
        try:
            return list(await asyncio.gather(*calls))
        finally:
            for poll in polls:
                poll.cancel()
            await asyncio.gather(*polls, return_exceptions=True)

    if out is not None and spinner is not None:
        if watch is not None and out.progress_mode() != "off":
            with out.server_progress(spinner, [s.name for s in servers]) as view:
                outcomes = asyncio.run(every(view))
        else:
            with out.spinner(spinner):
                outcomes = asyncio.run(every(None))
    else:
        outcomes = asyncio.run(every(None))
    if out is not None:
        for outcome in outcomes:
            reply_notes(out, outcome.name, outcome.notes)
    return outcomes


POLL_INTERVAL = 1.0


async def _poll(server: ServerEntry, app: str, call: asyncio.Future[Outcome], view: ServerProgress) -> None:
    """Ask ``server`` what ``app``'s operation is doing every second until ``call`` is done; stop
    at the first failed poll (a server without ``operation_progress``, or unreachable)."""
    from ..remote import protocol

    async with client_for(server) as client:
        while not call.done():
            await asyncio.wait({call}, timeout=POLL_INTERVAL)
            if call.done():
                return
            try:
                data = await client.call(protocol.OPERATION_PROGRESS, {"app": app})
            except TakoError:
                return
            view.update(server.name, data if isinstance(data, dict) else None)


def _parsed(server: ServerEntry, command: str, reply: Any, parse: Callable[[Any], T]) -> T:
    try:
        return parse(reply)
    except FormatError as exc:
        raise RemoteError(f"Server '{server.name}' ({server.host}:{server.management_port}) sent an "
                          f"invalid {command} reply: {exc}") from None


def failure_text(outcome: Outcome) -> str:
    """The one-line error of a failed server, naming the server."""
    assert outcome.error is not None
    message = outcome.error.message
    return message if f"'{outcome.name}'" in message else f"Server '{outcome.name}': {message}"


def raise_failures(outcomes: Sequence[Outcome], summary: str) -> None:
    """Raise for the failed outcomes, if any: with one server its own error; with several a
    :class:`ServersFailed` whose details list each failure and whose message is ``summary``
    (``{failed}`` and ``{total}`` are filled in).

    ``summary`` must say what failed (it is the message whenever more than one server is asked);
    raises ValueError for an empty one, so a caller cannot leave it out by accident.
    """
    if not summary.strip():
        raise ValueError("raise_failures needs a summary message.")
    failed = [o for o in outcomes if o.error is not None]
    if not failed:
        return
    if len(outcomes) == 1:
        error = failed[0].error
        assert error is not None
        raise error
    raise ServersFailed(summary.format(failed=len(failed), total=len(outcomes)),
                        [failure_text(o) for o in failed])
