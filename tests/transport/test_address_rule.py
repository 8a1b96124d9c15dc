"""The one private-network rule (tako_backups/remote/addresses.py) that both sides use."""

from __future__ import annotations

import pytest

from tako_backups.errors import ConfigError
from tako_backups.remote.addresses import is_private, parse_ip, public_addresses, resolve

PRIVATE = [
    "127.0.0.1", "127.255.255.254", "::1",
    "10.0.0.0", "10.255.255.255", "172.16.0.1", "172.31.255.255", "192.168.0.1", "192.168.255.255",
    "100.64.0.0", "100.64.0.10", "100.127.255.255",
    "fc00::1", "fd7a:115c:a1e0::53", "fdff:ffff::1",
    "169.254.0.1", "169.254.255.254", "fe80::1", "[fe80::1]", "fe80::1%lo", "febf::1",
    "::ffff:10.0.0.1", "::ffff:127.0.0.1", "::ffff:100.100.100.100",
]
PUBLIC = [
    "0.0.0.0", "::", "8.8.8.8", "203.0.113.10", "1.1.1.1",
    "9.255.255.255", "11.0.0.0", "172.15.255.255", "172.32.0.0", "192.167.255.255", "192.169.0.0",
    "100.63.255.255", "100.128.0.0", "169.253.255.255", "169.255.0.0",
    "2001:db8::1", "2606:4700::1111", "fbff::1", "fe00::1", "fec0::1",
    "::ffff:8.8.8.8", "64:ff9b::808:808",
]


@pytest.mark.parametrize("address", PRIVATE)
def test_private_addresses(address: str) -> None:
    parsed = parse_ip(address)
    assert parsed is not None and is_private(parsed)


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses(address: str) -> None:
    parsed = parse_ip(address)
    assert parsed is not None and not is_private(parsed)


def test_names_are_resolved_and_every_address_checked() -> None:
    assert resolve("localhost") and not public_addresses(resolve("localhost"))
    assert public_addresses(resolve("203.0.113.10")) == [parse_ip("203.0.113.10")]
    with pytest.raises(ConfigError) as caught:
        resolve("no-such-host.invalid")
    assert str(caught.value) == ("Host 'no-such-host.invalid' does not resolve to an IP address, so it "
                                 "cannot be checked to be on a private network.")
