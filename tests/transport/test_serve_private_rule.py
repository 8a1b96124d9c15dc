"""`tako-server serve` refuses plain HTTP on a public address before it binds anything."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tako_backups.server.cli import refuse_public_plain_http
from tests.support.tako_server import server_env

# Runs `tako-server` with an audit hook that reports every socket bind and listen on stderr.
AUDITED = ("import sys\n"
           "def hook(event, args):\n"
           "    if event in ('socket.bind', 'socket.listen'):\n"
           "        print('AUDIT', event, args[1:], file=sys.stderr, flush=True)\n"
           "sys.addaudithook(hook)\n"
           "from tako_backups.server.cli import main\n"
           "sys.exit(main(sys.argv[1:]))\n")


def audited_serve(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", AUDITED, "serve", "--data-dir", str(data_dir), *args],
                          env=server_env(), capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("host", "shown"), [("0.0.0.0", "0.0.0.0"), ("::", "::"),
                                             ("203.0.113.10", "203.0.113.10")])
def test_plain_http_on_a_public_address_exits_before_binding(tmp_path: Path, host: str, shown: str) -> None:
    data_dir = tmp_path / "tako"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as held:  # bound, never listening: a server that did bind would fail
        held.bind(("127.0.0.1" if host == "203.0.113.10" else host, 0))
        done = audited_serve(data_dir, "--host", host, "--port", str(held.getsockname()[1]))
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == (
        f"tako-server: Refusing to serve plain HTTP on {host}: {shown} is not a private address "
        "(loopback, 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10 (tailnets), fc00::/7 or "
        "link-local), and requests carry secrets. Start with --tls, or listen on a private address "
        "(127.0.0.1 behind an SSH tunnel, or a tailnet address).\n")
    assert not data_dir.exists()


def test_the_audit_hook_sees_a_server_that_does_listen(tmp_path: Path) -> None:
    """The check above would pass vacuously if the hook saw nothing: a plain server on 127.0.0.1
    that fails later (the port is taken) shows its bind."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = audited_serve(tmp_path / "tako", "--host", "127.0.0.1", "--port", str(port))
    assert done.returncode != 0
    assert f"AUDIT socket.bind (('127.0.0.1', {port}),)" in done.stderr


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "10.1.2.3", "172.20.0.5", "192.168.1.10",
                                  "100.101.102.103", "fd7a:115c:a1e0::1", "fe80::1"])
def test_private_addresses_may_serve_plain_http(host: str) -> None:
    refuse_public_plain_http(host)


def test_an_unresolvable_host_is_refused_for_plain_http() -> None:
    with pytest.raises(Exception, match="does not resolve, so it cannot be checked to be private"):
        refuse_public_plain_http("no-such-host.invalid")
