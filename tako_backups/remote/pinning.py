"""TLS certificate pinning: the fingerprint format both sides use, and connections that trust
exactly one certificate.

A fingerprint is ``sha256:`` and 64 lowercase hex digits, the SHA-256 of the certificate's DER;
``tako-server identity`` prints it and ``tls_fingerprint`` in config.toml holds it.

The client never sends a byte of a request to an unverified peer: it first fetches the server's
certificate in a handshake that sends nothing (:func:`fetch_certificate`), compares its
fingerprint with the pin (:func:`check_pin`), then makes the real request with
:func:`pinned_context`, which trusts that certificate and nothing else, so any other certificate
fails the handshake before the body is sent. The host name is not checked: the pin is the identity.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import socket
import ssl

from ..errors import ConfigError, RemoteError
from .addresses import parse_ip

__all__ = ["PinMismatchError", "certificate_fingerprint", "check_pin", "fetch_certificate",
           "fetch_certificate_async", "parse_fingerprint", "pinned_context"]

_FINGERPRINT = re.compile(r"sha256:([0-9a-f]{64})")


class PinMismatchError(RemoteError):
    """The server's certificate is not the pinned one; nothing was sent to it."""


def certificate_fingerprint(der: bytes) -> str:
    """``sha256:<64 hex>`` of a DER-encoded certificate."""
    return "sha256:" + hashlib.sha256(der).hexdigest()


def parse_fingerprint(text: str) -> str:
    """A pin as written in config.toml, normalized (case and ``:`` between hex pairs ignored).

    Raises ConfigError when it is not ``sha256:`` and 64 hex digits.
    """
    value = text.strip().lower()
    head, sep, digits = value.partition(":")
    candidate = f"{head}{sep}{digits.replace(':', '')}"
    if not _FINGERPRINT.fullmatch(candidate):
        raise ConfigError("A TLS fingerprint must be sha256: followed by 64 hex digits, as "
                          "`tako-server identity` prints it.")
    return candidate


def check_pin(der: bytes, pin: str, where: str) -> None:
    """Raise PinMismatchError, naming both fingerprints, when ``der`` is not the pinned certificate.

    ``where`` names the server in the message (``Server 'la' (host:port)``).
    """
    seen = certificate_fingerprint(der)
    if seen != pin:
        raise PinMismatchError(
            f"{where} presented TLS certificate {seen}, but config.toml pins {pin}; nothing was sent. "
            "If the server's certificate changed on purpose, set tls_fingerprint to what "
            "`tako-server identity` prints there.")


def pinned_context(der: bytes) -> ssl.SSLContext:
    """A client context that trusts exactly the certificate ``der`` (host name not checked)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # the pinned certificate is the anchor
    context.load_verify_locations(cadata=der)
    return context


def _probe_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # only to read the certificate; nothing is sent on this link
    return context


def fetch_certificate(host: str, port: int, timeout: float) -> bytes:
    """The DER certificate ``host:port`` presents, from a handshake after which nothing is sent.

    Raises OSError (unreachable, timeout) or ssl.SSLError (no TLS there).
    """
    with socket.create_connection((host.strip("[]"), port), timeout=timeout) as raw, \
            _probe_context().wrap_socket(raw, server_hostname=_sni(host)) as tls:
        return _peer_certificate(tls.getpeercert(binary_form=True))


async def fetch_certificate_async(host: str, port: int, timeout: float) -> bytes:
    """As :func:`fetch_certificate`, without blocking the event loop."""
    async with asyncio.timeout(timeout):
        _, writer = await asyncio.open_connection(host.strip("[]"), port, ssl=_probe_context(),
                                                  server_hostname=_sni(host) or "")
    try:
        tls = writer.get_extra_info("ssl_object")
        return _peer_certificate(tls.getpeercert(binary_form=True) if tls is not None else None)
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (OSError, ssl.SSLError):
            pass


def _peer_certificate(der: bytes | None) -> bytes:
    if not der:
        raise ssl.SSLError("the server presented no certificate")
    return der


def _sni(host: str) -> str | None:
    """The name to send as SNI: None for IP addresses (SNI carries names only)."""
    return None if parse_ip(host) is not None else host
