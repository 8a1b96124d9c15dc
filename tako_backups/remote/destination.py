"""Where an RPC client sends a server's requests, and which ways are safe for secrets.

With a pinned certificate (``tls_fingerprint``) everything goes over HTTPS to that certificate
only (``pinning.py``). Without one the requests go over plain HTTP, as Tako's do; a request that
carries secrets then goes only to a host whose every address is private (``addresses.py``), and
only to the addresses that were checked, so a second DNS answer cannot send it elsewhere.
"""

from __future__ import annotations

import ssl
from typing import Any

from ..errors import ConfigError, RemoteError
from . import protocol
from .addresses import IPAddress, parse_ip, public_addresses, resolve, resolve_async
from .pinning import check_pin, fetch_certificate, fetch_certificate_async, parse_fingerprint, pinned_context

__all__ = ["Destination"]


class Destination:
    """One server's RPC endpoint: ``host:port``, plain HTTP or HTTPS pinned to one certificate."""

    def __init__(self, server_name: str, host: str, port: int, tls_fingerprint: str | None = None) -> None:
        """Raises ConfigError when ``tls_fingerprint`` is not ``sha256:`` and 64 hex digits."""
        self.server_name = server_name
        self.host = host
        self.port = port
        self.pin = None if tls_fingerprint is None else parse_fingerprint(tls_fingerprint)
        self.host_part = _bracketed(host)
        self.url = self._url(self.host_part)

    @property
    def address(self) -> str:
        """``host:port`` as shown in messages (IPv6 hosts in brackets)."""
        return f"{self.host_part}:{self.port}"

    @property
    def where(self) -> str:
        return f"Server '{self.server_name}' ({self.address})"

    @property
    def scheme(self) -> str:
        return "http" if self.pin is None else "https"

    def urls_for(self, fields: dict[str, Any] | None) -> list[str]:
        """Where to post a request with ``fields``, in order (see :meth:`checked_urls`).

        Raises ConfigError when it carries secrets over plain HTTP to a public or unknown host.
        """
        if not self._secrets_in_clear(fields):
            return [self.url]
        try:
            addresses = resolve(self.host)
        except ConfigError:
            raise self.refusal(f"{self.host} does not resolve") from None
        return self.checked_urls(addresses)

    async def urls_for_async(self, fields: dict[str, Any] | None) -> list[str]:
        """As :meth:`urls_for`, without blocking the event loop."""
        if not self._secrets_in_clear(fields):
            return [self.url]
        try:
            addresses = await resolve_async(self.host)
        except ConfigError:
            raise self.refusal(f"{self.host} does not resolve") from None
        return self.checked_urls(addresses)

    def verify(self) -> ssl.SSLContext | bool:
        """httpx's ``verify`` for this server: with a pin, a context trusting only the pinned
        certificate, fetched and checked first (nothing is sent before).

        Raises PinMismatchError (naming both fingerprints) or RemoteError (no TLS handshake).
        """
        if self.pin is None:
            return True
        try:
            der = fetch_certificate(self.host, self.port, protocol.CONNECT_TIMEOUT)
        except OSError as exc:
            raise self._probe_error(exc) from None
        check_pin(der, self.pin, self.where)
        return pinned_context(der)

    async def verify_async(self) -> ssl.SSLContext | bool:
        """As :meth:`verify`, without blocking the event loop."""
        if self.pin is None:
            return True
        try:
            der = await fetch_certificate_async(self.host, self.port, protocol.CONNECT_TIMEOUT)
        except OSError as exc:
            raise self._probe_error(exc) from None
        check_pin(der, self.pin, self.where)
        return pinned_context(der)

    def _secrets_in_clear(self, fields: dict[str, Any] | None) -> bool:
        return self.pin is None and protocol.carries_secrets(fields or {})

    def checked_urls(self, addresses: list[IPAddress]) -> list[str]:
        """URLs of ``addresses`` (what ``host`` resolved to) for a request carrying secrets in clear.

        Raises ConfigError, saying how to pin TLS, when any of them is not private.
        """
        public = public_addresses(addresses)
        if public:
            shown = self.host if parse_ip(self.host) is not None else f"{self.host} ({public[0]})"
            raise self.refusal(f"{shown} is not on a private network")
        if parse_ip(self.host) is not None:
            return [self.url]
        return [self._url(_bracketed(str(address))) for address in addresses if "%" not in str(address)] \
            or [self.url]

    def refusal(self, reason: str) -> ConfigError:
        """The error for a request that carries secrets and may not go over plain HTTP."""
        name = self.server_name
        return ConfigError(
            f"Refusing to send secrets to server '{name}' over plain HTTP: {reason}. Pin its TLS "
            f"certificate: start it with `tako-server serve --tls`, then set tls_fingerprint = \"<what "
            f"`tako-server identity` prints>\" under [servers.{name}] in config.toml (or reach it over a "
            "private network or an SSH tunnel).")

    def _probe_error(self, exc: BaseException) -> RemoteError:
        """The error for a certificate fetch that failed with ``exc`` (nothing was sent)."""
        if isinstance(exc, TimeoutError):
            seconds = protocol.CONNECT_TIMEOUT
            return RemoteError(f"{self.where} is unreachable: no answer within {seconds:g} s.")
        if isinstance(exc, ssl.SSLError):
            return RemoteError(f"{self.where} did not complete a TLS handshake ({exc.reason or exc}); is it "
                               "started with --tls?")
        if isinstance(exc, ConnectionRefusedError):
            return RemoteError(f"{self.where} is unreachable: connection refused.")
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        return RemoteError(f"{self.where} is unreachable: {reason[:1].lower() + reason[1:]}.")

    def _url(self, host_part: str) -> str:
        return f"{self.scheme}://{host_part}:{self.port}{protocol.RPC_PATH}"


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
