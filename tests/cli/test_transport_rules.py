"""What the CLI sends where: secrets never over plain HTTP to a public address, and every signed
request bound to the server it is meant for (in-process servers; real ones in tests/transport)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.cli.remote_harness import SECRET_KEY, Demo, Tako


def point_la_at(tako_home: Path, host: str, extra: str = "") -> None:
    config = tako_home / "config.toml"
    text = config.read_text().replace('host = "127.0.0.1"', f'host = "{host}"', 1)
    config.write_text(text + extra)


def watch(fleet, seen: list[dict]) -> None:
    """Record every body any client sends, server_info included."""

    class Watch(httpx.AsyncBaseTransport):
        def __init__(self, name: str, inner: httpx.AsyncBaseTransport) -> None:
            self.inner = inner

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            seen.append(json.loads(request.content))
            return await self.inner.handle_async_request(request)

    fleet.wrap = Watch


REFUSED = ("error: Refusing to send secrets to server 'la' over plain HTTP: {reason}. Pin its TLS "
           "certificate: start it with `tako-server serve --tls`, then set tls_fingerprint = \"<what "
           "`tako-server identity` prints>\" under [servers.la] in config.toml (or reach it over a private "
           "network or an SSH tunnel).\n")


@pytest.mark.parametrize(("host", "reason"), [
    ("203.0.113.10", "203.0.113.10 is not on a private network"),
    ("2001:db8::10", "2001:db8::10 is not on a private network"),
    ("no-such-host.invalid", "no-such-host.invalid does not resolve"),
])
def test_secrets_never_go_over_plain_http_to_a_public_address(demo: Demo, tako: Tako, tako_home: Path,
                                                              host: str, reason: str) -> None:
    fleet = demo("la")
    seen: list[dict] = []
    watch(fleet, seen)
    point_la_at(tako_home, host)
    for command in (("backups", "now"), ("deploy",)):
        result = tako(*command, "--env", "production")
        assert result.exit_code == 1
        assert result.stderr.endswith(REFUSED.format(reason=reason))
        assert SECRET_KEY not in result.output
    assert seen == []


def test_requests_without_secrets_still_go_over_plain_http(demo: Demo, tako: Tako, tako_home: Path) -> None:
    fleet = demo("la")
    point_la_at(tako_home, "203.0.113.10")
    result = tako("backups", "status", "--env", "production")
    assert result.exit_code == 0, result.output
    assert fleet.commands() == [("la", "backup_status")]


def test_a_private_name_may_carry_secrets_in_clear(demo: Demo, tako: Tako, tako_home: Path) -> None:
    fleet = demo("la")
    point_la_at(tako_home, "localhost")
    result = tako("backups", "now", "--env", "production")
    assert result.exit_code == 0, result.output
    assert fleet.commands() == [("la", "backup_now")]


def test_every_signed_body_names_its_server(demo: Demo, tako: Tako) -> None:
    fleet = demo("la", "ny")
    seen: list[dict] = []
    watch(fleet, seen)
    result = tako("backups", "now", "--env", "production")
    assert result.exit_code == 0, result.output
    signed = sorted((body["command"], body["target"]) for body in seen if body["command"] != "server_info")
    assert signed == [("backup_now", "la"), ("backup_now", "ny")]
    assert [body for body in seen if body["command"] == "server_info"] == [{"command": "server_info"}] * 2
