"""Which network addresses are private: the one rule for where secrets may travel in clear.

Both sides ask it: ``tako-server serve`` refuses plain HTTP on a listen address that is not
private, and the ``tako`` CLI refuses to send a request that carries secrets over plain HTTP to a
server that is not on a private network.

Private: loopback (127.0.0.0/8, ::1), RFC 1918 (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16),
CGNAT 100.64.0.0/10 (tailnets such as Tailscale), IPv6 unique local fc00::/7 and link-local
(169.254.0.0/16, fe80::/10). An IPv4-mapped IPv6 address counts as its IPv4 address. Everything
else is public, including 0.0.0.0 and ``::`` (every interface). A host name counts as private only
when it resolves and every address it resolves to is private (``localhost`` and a tailnet's
``*.ts.net`` names do); a name that does not resolve is refused.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from typing import Any

from ..errors import ConfigError

__all__ = ["IPAddress", "PRIVATE_NETWORKS", "PRIVATE_RANGES", "is_private", "parse_ip", "public_addresses",
           "resolve", "resolve_async"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

PRIVATE_NETWORKS = tuple(ipaddress.ip_network(net) for net in (
    "127.0.0.0/8", "::1/128",
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
    "100.64.0.0/10",
    "fc00::/7",
    "169.254.0.0/16", "fe80::/10",
))
PRIVATE_RANGES = ("loopback, 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10 (tailnets), "
                  "fc00::/7 or link-local")


def parse_ip(host: str) -> IPAddress | None:
    """``host`` as an IP address (IPv6 may be in brackets and carry a ``%zone``), else None."""
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def is_private(address: IPAddress) -> bool:
    """Whether ``address`` lies in one of :data:`PRIVATE_NETWORKS`."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        elif address.scope_id is not None:
            address = ipaddress.IPv6Address(int(address))
    return any(address in network for network in PRIVATE_NETWORKS)


def public_addresses(addresses: Iterable[IPAddress]) -> list[IPAddress]:
    """The addresses among ``addresses`` that are not private, in order."""
    return [address for address in addresses if not is_private(address)]


def resolve(host: str) -> list[IPAddress]:
    """Every address ``host`` stands for (itself when it is an IP address), without duplicates.

    Raises ConfigError when the name does not resolve.
    """
    literal = parse_ip(host)
    if literal is not None:
        return [literal]
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise _unresolved(host) from None
    return _addresses(host, infos)


async def resolve_async(host: str) -> list[IPAddress]:
    """As :func:`resolve`, without blocking the event loop. Raises ConfigError."""
    literal = parse_ip(host)
    if literal is not None:
        return [literal]
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise _unresolved(host) from None
    return _addresses(host, infos)


def _addresses(host: str, infos: list[tuple[Any, ...]]) -> list[IPAddress]:
    found: dict[IPAddress, None] = {}
    for info in infos:
        address = parse_ip(str(info[4][0]))
        if address is not None:
            found[address] = None
    if not found:
        raise _unresolved(host)
    return list(found)


def _unresolved(host: str) -> ConfigError:
    return ConfigError(f"Host '{host}' does not resolve to an IP address, so it cannot be checked to be "
                       "on a private network.")
