"""The management RPC client: signs each call, tries the next key when refused, maps failures to errors.

``RpcClient`` is synchronous (httpx.Client); ``AsyncRpcClient`` is the same over httpx.AsyncClient,
for calling several servers at once. Both take an injected transport, so tests can run them
against the server app in-process (``httpx.ASGITransport`` for the async client).

Timeouts are Tako's: 5 s to connect, 5 s per call, 10 minutes for backup_now, restore_backup and
deploy. Every failure is a RemoteError naming the server and its address. As Tako's CLI does, the
next key is tried only when the reply's message is exactly ``management auth required`` or
``management auth failed``; a server that refuses every key gives an AuthError. Request bodies
(which may carry credentials) never appear in errors.

Transport security (``destination.py``): with ``tls_fingerprint`` every request goes over HTTPS to
that certificate only, checked before anything is sent; without it a request that carries secrets
goes over plain HTTP only to private addresses. Binding: before its first signed request a client
asks the server's ``server_info`` for its ``server_name`` and puts it (as the bucket prefix spells
it, :func:`~tako_backups.primitives.names.sanitize_segment`) in every signed body as ``target``,
so the request runs on no other server (Tako's server ignores the field; a server whose
``server_info`` fails or names no server gets bodies without it).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import httpx

from ..errors import AuthError, ConfigError
from ..primitives.names import sanitize_segment
from . import protocol
from .destination import Destination
from .reply_reader import ReplyReader, ServerReplyError
from .signing import Signer, sign_request

__all__ = ["AsyncRpcClient", "RpcClient", "ServerReplyError"]

SERVER_INFO_BODY = protocol.encode_request(protocol.SERVER_INFO)


class _Signers:
    """Signers from an iterable, pulled lazily (ssh-agent is asked only when needed) and kept."""

    def __init__(self, source: Iterable[Signer]) -> None:
        self._source: Iterator[Signer] | None = iter(source)
        self._seen: list[Signer] = []

    def __iter__(self) -> Iterator[Signer]:
        index = 0
        while True:
            if index < len(self._seen):
                yield self._seen[index]
                index += 1
                continue
            if self._source is None:
                return
            try:
                signer = next(self._source)
            except StopIteration:
                self._source = None
                return
            self._seen.append(signer)


class _RpcBase:
    def __init__(self, server_name: str, host: str, port: int = protocol.DEFAULT_PORT,
                 signers: Iterable[Signer] = (), *, tls_fingerprint: str | None = None,
                 bind_target: bool = True) -> None:
        self.server_name = server_name
        self.host = host
        self.port = port
        self._signers = _Signers(signers)
        self.destination = Destination(server_name, host, port, tls_fingerprint)
        self.url = self.destination.url
        self._replies = ReplyReader(server_name, self.destination.address, self.destination.pin is not None)
        self.bind_target = bind_target
        self.target: str | None = None
        self._asked_target = False

    @property
    def address(self) -> str:
        """``host:port`` as shown in messages (IPv6 hosts in brackets)."""
        return self.destination.address

    def _bound(self, payload: dict[str, Any] | None) -> dict[str, Any]:
        fields = dict(payload or {})
        if self.target is not None:
            fields[protocol.TARGET] = self.target
        return fields

    def _learn_target(self, reply: dict[str, Any] | None) -> None:
        """Keep the ``server_name`` a ``server_info`` reply gives, sanitized (none: send unbound)."""
        self._asked_target = True
        data = reply.get("data") if reply is not None else None
        name = data.get("server_name") if isinstance(data, dict) else None
        self.target = sanitize_segment(name) if isinstance(name, str) and name.strip() else None

    def _payload(self, command: str, payload: dict[str, Any] | None) -> dict[str, Any] | None:
        """``hello`` always carries the protocol version, as Tako's CLI sends it."""
        return protocol.hello_fields() if command == protocol.HELLO and payload is None else payload

    def _headers(self, url: str) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if url != self.url:
            headers["host"] = self.address
        return headers

    def _timeout(self, command: str, timeout: float | None) -> httpx.Timeout:
        seconds = protocol.timeout_for(command) if timeout is None else timeout
        return httpx.Timeout(seconds, connect=min(protocol.CONNECT_TIMEOUT, seconds))

    def _sign(self, signer: Signer, body: bytes, rejections: list[str]) -> dict[str, str] | None:
        try:
            return sign_request(signer, body)
        except (AuthError, ConfigError) as exc:
            rejections.append(f"{signer.description}: {exc}")
            return None


class RpcClient(_RpcBase):
    """A synchronous client for one server. Use as a context manager or call :meth:`close`."""

    def __init__(self, server_name: str, host: str, port: int = protocol.DEFAULT_PORT,
                 signers: Iterable[Signer] = (), *, transport: httpx.BaseTransport | None = None,
                 tls_fingerprint: str | None = None, bind_target: bool = True) -> None:
        """Raises ConfigError for a malformed ``tls_fingerprint``."""
        super().__init__(server_name, host, port, signers, tls_fingerprint=tls_fingerprint,
                         bind_target=bind_target)
        self._transport = transport
        self._http: httpx.Client | None = None

    def call(self, command: str, payload: dict[str, Any] | None = None, *,
             timeout: float | None = None) -> Any:
        """Send ``command`` with ``payload`` and return the reply's ``data``.

        Signs with each signer in turn until one is accepted (``hello``/``server_info`` go
        unsigned). Raises RemoteError (unreachable, timeout, invalid reply), PinMismatchError (a
        RemoteError: not the pinned certificate), ServerReplyError (the server's error message),
        AuthError (every key rejected), ConfigError (no key at all, or secrets that would go over
        plain HTTP to a public address).
        """
        return self.call_reply(command, payload, timeout=timeout)["data"]

    def call_reply(self, command: str, payload: dict[str, Any] | None = None, *,
                   timeout: float | None = None) -> dict[str, Any]:
        """As :meth:`call`, but returns the whole reply object (``status``, ``data`` and any
        field our server adds, such as a restore's ``safety_backup_id``)."""
        limits = self._timeout(command, timeout)
        payload = self._payload(command, payload)
        urls = self.destination.urls_for(payload)
        if command in protocol.PUBLIC_COMMANDS:
            body = protocol.encode_request(command, payload)
            return self._replies.interpret(self._post(command, body, {}, limits, urls))
        if self.bind_target and not self._asked_target:  # errors name the command asked for
            try:
                info = self._post(command, SERVER_INFO_BODY, {}, limits, urls)
                self._learn_target(self._replies.interpret(info))
            except ServerReplyError:
                self._learn_target(None)
        body = protocol.encode_request(command, self._bound(payload))
        unsigned: list[str] = []
        refusals: list[tuple[str, str]] = []
        for signer in self._signers:
            headers = self._sign(signer, body, unsigned)
            if headers is None:
                continue
            response = self._post(command, body, headers, limits, urls)
            refusal = self._replies.auth_refusal(response)
            if refusal is not None:
                refusals.append((signer.description, refusal))
                continue
            return self._replies.interpret(response)
        raise self._replies.rejected(unsigned, refusals)

    def _client(self) -> httpx.Client:
        if self._http is None:
            verify = True if self._transport is not None else self.destination.verify()
            self._http = httpx.Client(transport=self._transport, trust_env=False, verify=verify)
        return self._http

    def _post(self, command: str, body: bytes, headers: dict[str, str], limits: httpx.Timeout,
              urls: list[str]) -> httpx.Response:
        client = self._client()
        for index, url in enumerate(urls):
            try:
                return client.post(url, content=body, timeout=limits,
                                   headers={**self._headers(url), **headers})
            except httpx.ConnectError as exc:
                if index + 1 == len(urls):
                    raise self._replies.transport_error(command, exc, limits) from None
            except httpx.HTTPError as exc:
                raise self._replies.transport_error(command, exc, limits) from None
        raise AssertionError("no URL to post to")

    def close(self) -> None:
        if self._http is not None:
            self._http.close()

    def __enter__(self) -> RpcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncRpcClient(_RpcBase):
    """The asynchronous twin of :class:`RpcClient` (same errors). Use ``async with``."""

    def __init__(self, server_name: str, host: str, port: int = protocol.DEFAULT_PORT,
                 signers: Iterable[Signer] = (), *, transport: httpx.AsyncBaseTransport | None = None,
                 tls_fingerprint: str | None = None, bind_target: bool = True) -> None:
        """Raises ConfigError for a malformed ``tls_fingerprint``."""
        super().__init__(server_name, host, port, signers, tls_fingerprint=tls_fingerprint,
                         bind_target=bind_target)
        self._transport = transport
        self._http: httpx.AsyncClient | None = None

    async def call(self, command: str, payload: dict[str, Any] | None = None, *,
                   timeout: float | None = None) -> Any:
        """As :meth:`RpcClient.call`."""
        return (await self.call_reply(command, payload, timeout=timeout))["data"]

    async def call_reply(self, command: str, payload: dict[str, Any] | None = None, *,
                         timeout: float | None = None) -> dict[str, Any]:
        """As :meth:`RpcClient.call_reply`."""
        limits = self._timeout(command, timeout)
        payload = self._payload(command, payload)
        urls = await self.destination.urls_for_async(payload)
        if command in protocol.PUBLIC_COMMANDS:
            body = protocol.encode_request(command, payload)
            return self._replies.interpret(await self._post(command, body, {}, limits, urls))
        if self.bind_target and not self._asked_target:  # errors name the command asked for
            try:
                info = await self._post(command, SERVER_INFO_BODY, {}, limits, urls)
                self._learn_target(self._replies.interpret(info))
            except ServerReplyError:
                self._learn_target(None)
        body = protocol.encode_request(command, self._bound(payload))
        unsigned: list[str] = []
        refusals: list[tuple[str, str]] = []
        for signer in self._signers:
            headers = self._sign(signer, body, unsigned)
            if headers is None:
                continue
            response = await self._post(command, body, headers, limits, urls)
            refusal = self._replies.auth_refusal(response)
            if refusal is not None:
                refusals.append((signer.description, refusal))
                continue
            return self._replies.interpret(response)
        raise self._replies.rejected(unsigned, refusals)

    async def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            verify = True if self._transport is not None else await self.destination.verify_async()
            self._http = httpx.AsyncClient(transport=self._transport, trust_env=False, verify=verify)
        return self._http

    async def _post(self, command: str, body: bytes, headers: dict[str, str], limits: httpx.Timeout,
                    urls: list[str]) -> httpx.Response:
        client = await self._client()
        for index, url in enumerate(urls):
            try:
                return await client.post(url, content=body, timeout=limits,
                                         headers={**self._headers(url), **headers})
            except httpx.ConnectError as exc:
                if index + 1 == len(urls):
                    raise self._replies.transport_error(command, exc, limits) from None
            except httpx.HTTPError as exc:
                raise self._replies.transport_error(command, exc, limits) from None
        raise AssertionError("no URL to post to")

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncRpcClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
