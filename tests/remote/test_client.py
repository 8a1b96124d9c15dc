"""The RPC client: against the real server app in-process (ASGITransport), and against canned
transports and sockets for the failure paths (unreachable, timeout, invalid replies)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tako_backups import __version__
from tako_backups.errors import AuthError, ConfigError, RemoteError
from tako_backups.remote.client import AsyncRpcClient, RpcClient, ServerReplyError
from tako_backups.remote.signing import FileSigner, RequestVerifier
from tako_backups.server.app import create_app
from tako_backups.server.auth import RequestAuth
from tako_backups.server.cli import authorize_key
from tako_backups.server.identity_key import ensure_server_identity
from tako_backups.server.paths import ServerPaths
from tako_backups.server.service import BackupService
from tako_backups.storage.memory import MemoryStore
from tests.server.helpers import APP, NO_SETTINGS, binding
from tests.support.keys import make_key


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[FileSigner, FileSigner]:
    folder = tmp_path_factory.mktemp("client-keys")
    return make_key(folder / "id_ed25519", "me@laptop"), make_key(folder / "old_key", "old@laptop")


@pytest.fixture
def app(tmp_path: Path, keys: tuple[FileSigner, FileSigner]) -> Any:
    paths = ServerPaths(tmp_path / "tako")
    paths.prepare()
    authorize_key(Path(f"{keys[0].path}.pub"), paths.root)
    store = MemoryStore()
    data = paths.ensure_data_dir("demo", "production")
    (data / "app" / "hello.txt").write_text("hi\n")
    ensure_server_identity(paths.root)
    return create_app(BackupService(paths, "la", store_factory=lambda b: store),
                      RequestAuth.from_file(paths.authorized_keys))


def run_async(app: Any, signers: Any, command: str, payload: dict[str, Any] | None = None) -> Any:
    async def go() -> Any:
        transport = httpx.ASGITransport(app=app)
        async with AsyncRpcClient("la", "127.0.0.1", 9844, signers, transport=transport) as client:
            return await client.call(command, payload)

    return asyncio.run(go())


def test_hello_needs_no_key_and_sends_the_protocol_version(app: Any) -> None:
    hello = run_async(app, [], "hello")
    assert hello["protocol_version"] == 0 and hello["server_version"] == __version__
    assert hello["capabilities"] == ["server_runtime_info", "backups"]
    assert hello["server_identity"].startswith("SHA256:")


def test_signed_call_round_trip(app: Any, keys: tuple[FileSigner, FileSigner]) -> None:
    me, _ = keys
    info = run_async(app, [me], "backup_now", {"app": APP, "backup": binding().to_dict()})
    listed = run_async(app, [me], "list_backups", {"app": APP})
    assert listed == {"app": APP, "backups": [info], "index_rebuilt": False}


def test_next_key_is_tried_after_an_auth_refusal_and_later_keys_are_not_loaded(
        app: Any, keys: tuple[FileSigner, FileSigner]) -> None:
    me, old = keys
    pulled: list[str] = []

    def signers() -> Iterator[FileSigner]:
        for signer in (old, me, old):
            pulled.append(signer.description)
            yield signer

    status = run_async(app, signers(), "backup_status", {"app": APP})
    assert status["enabled"] is False
    assert pulled == [str(old.path), str(me.path)]


def test_every_key_rejected_is_an_auth_error(app: Any, keys: tuple[FileSigner, FileSigner]) -> None:
    me, old = keys
    with pytest.raises(AuthError) as rejected:
        run_async(app, [old], "list_backups", {"app": APP})
    assert str(rejected.value) == (
        f"Server 'la' (127.0.0.1:9844) refused every key (management auth failed; tried {old.path}); add "
        "yours with tako-server authorize-key (the server's log says why it refused each; a wrong clock is "
        "one reason).")


def test_a_server_without_authorized_keys_says_so(tmp_path: Path,
                                                   keys: tuple[FileSigner, FileSigner]) -> None:
    paths = ServerPaths(tmp_path / "tako")
    paths.prepare()
    bare = create_app(BackupService(paths, "la", store_factory=lambda b: MemoryStore()),
                      RequestAuth.from_file(paths.authorized_keys))
    with pytest.raises(AuthError) as rejected:
        run_async(bare, list(keys), "list_backups", {"app": APP})
    assert str(rejected.value) == (
        f"Server 'la' (127.0.0.1:9844) refused every key (management auth required; tried {keys[0].path}, "
        f"{keys[1].path}): it has no authorized keys yet; add yours with tako-server authorize-key.")


@pytest.mark.parametrize(("status", "message", "next_key"), [
    (401, "management auth failed", True),
    (401, "management auth required", True),
    (400, "management auth failed", True),  # Tako's CLI reads the body, not the status
    (401, "Key SHA256:x is not authorized.", False),
    (401, "management auth failed.", False),
    (200, "management auth failed", True),
])
def test_only_takos_two_exact_texts_move_on_to_the_next_key(
        keys: tuple[FileSigner, FileSigner], status: int, message: str, next_key: bool) -> None:
    me, old = keys
    used: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        command = json.loads(request.content)["command"]
        if command == "server_info":
            return httpx.Response(200, json={"status": "ok", "data": {"server_name": None}})
        used.append(request.headers["x-tako-key-fingerprint"])
        if len(used) == 1:
            return httpx.Response(status, json={"status": "error", "message": message})
        return httpx.Response(200, json={"status": "ok", "data": {"ok": True}})

    with RpcClient("la", "127.0.0.1", 9844, [old, me], transport=httpx.MockTransport(handler)) as client:
        if next_key:
            assert client.call("list_backups", {"app": APP}) == {"ok": True}
            assert used == [old.fingerprint, me.fingerprint]
        else:
            with pytest.raises(ServerReplyError) as final:
                client.call("list_backups", {"app": APP})
            assert (final.value.reply_message, final.value.status_code, used) == (message, status,
                                                                                 [old.fingerprint])


def test_no_key_at_all_is_a_config_error(app: Any) -> None:
    with pytest.raises(ConfigError, match="^No SSH key to sign requests to server 'la'; create one"):
        run_async(app, [], "list_backups", {"app": APP})


def test_server_error_reply_keeps_the_server_message(app: Any, keys: tuple[FileSigner, FileSigner]) -> None:
    with pytest.raises(ServerReplyError) as failed:
        run_async(app, [keys[0]], "list_backups", {"app": APP})
    assert str(failed.value) == f"Server 'la': {NO_SETTINGS}"
    error = failed.value
    assert (error.server, error.reply_message, error.status_code) == ("la", NO_SETTINGS, 400)


# ----- the synchronous client over canned transports and sockets -----

def test_sync_client_signs_and_uses_tako_timeouts(tmp_path: Path,
                                                  keys: tuple[FileSigner, FileSigner]) -> None:
    me, _ = keys
    authorized = tmp_path / "authorized"
    authorized.write_text(Path(f"{me.path}.pub").read_text())
    verifier = RequestVerifier(authorized)
    seen: list[tuple[str, dict[str, Any]]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        command = json.loads(request.content)["command"]
        if command not in ("hello", "server_info"):
            verifier.verify(request.headers, request.content)
        seen.append((command, request.extensions["timeout"]))
        assert request.url == httpx.URL("http://127.0.0.1:9844/rpc")
        return httpx.Response(200, json={"status": "ok", "data": {"command": command}})

    with RpcClient("la", "127.0.0.1", 9844, [me], transport=httpx.MockTransport(handler)) as client:
        for command in ("hello", "list_backups", "backup_now", "restore_backup", "deploy"):
            assert client.call(command, {"app": APP} if command != "hello" else None) == {"command": command}
    timeouts = {command: (t["connect"], t["read"]) for command, t in seen}
    assert timeouts == {"hello": (5.0, 5.0), "server_info": (5.0, 5.0), "list_backups": (5.0, 5.0),
                        "backup_now": (5.0, 600.0), "restore_backup": (5.0, 600.0), "deploy": (5.0, 600.0)}


@pytest.mark.parametrize(("status", "content"), [
    (200, b"<html>hello</html>"), (502, b"Bad Gateway"), (200, b'{"status": "ok"}'), (200, b'["ok"]'),
    (401, b'{"status": "error", "message": ["management auth failed"]}'),
])
def test_invalid_reply_names_the_server(keys: tuple[FileSigner, FileSigner], status: int,
                                        content: bytes) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(status, content=content))
    secret = binding().storage.secret_access_key
    with RpcClient("la", "127.0.0.1", 9844, [keys[0]], transport=transport) as client, \
            pytest.raises(RemoteError) as failed:
        client.call("backup_now", {"app": APP, "backup": binding().to_dict()})
    assert str(failed.value) == (f"Server 'la' (127.0.0.1:9844) sent an invalid reply (HTTP {status}); "
                                 "is it a tako-server?")
    assert secret not in str(failed.value)


def test_unreachable_server_names_server_and_address() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with RpcClient("la", "127.0.0.1", port) as client, pytest.raises(RemoteError) as failed:
        client.call("hello")
    assert str(failed.value) == f"Server 'la' (127.0.0.1:{port}) is unreachable: connection refused."


def test_silent_server_times_out(keys: tuple[FileSigner, FileSigner]) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    accepted: list[socket.socket] = []
    thread = threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True)
    thread.start()
    try:
        with RpcClient("la", "127.0.0.1", port, [keys[0]]) as client, pytest.raises(RemoteError) as failed:
            client.call("list_backups", {"app": APP}, timeout=0.3)
        assert str(failed.value) == (
            f"Server 'la' (127.0.0.1:{port}) did not answer list_backups within 0.3 s.")
    finally:
        thread.join(timeout=5)
        for conn in accepted:
            conn.close()
        listener.close()


def test_ipv6_host_is_bracketed() -> None:
    client = RpcClient("v6", "::1", 9844)
    assert client.url == "http://[::1]:9844/rpc"
    assert client.address == "[::1]:9844"
    client.close()


@pytest.mark.parametrize(("info", "target"), [
    ({"status": "ok", "data": {"server_name": "LA.one", "pid": 1}}, "la-one"),  # as the bucket prefix has it
    ({"status": "ok", "data": {"server_name": "la"}}, "la"),
    ({"status": "ok", "data": {"server_name": None}}, None),  # Tako's server without a name
    ({"status": "ok", "data": {"server_name": "  "}}, None),
    ({"status": "ok", "data": {}}, None),
    ({"status": "error", "message": "invalid command"}, None),  # a server without server_info
])
def test_the_target_is_the_name_server_info_gives(keys: tuple[FileSigner, FileSigner],
                                                  info: dict[str, Any], target: str | None) -> None:
    bodies: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        bodies.append(body)
        if body["command"] == "server_info":
            return httpx.Response(200 if info["status"] == "ok" else 400, json=info)
        return httpx.Response(200, json={"status": "ok", "data": {}})

    with RpcClient("la", "127.0.0.1", 9844, [keys[0]], transport=httpx.MockTransport(handler)) as client:
        client.call("backup_status", {"app": APP})
        client.call("list_backups", {"app": APP})
    expected = {"app": APP} if target is None else {"app": APP, "target": target}
    assert bodies == [{"command": "server_info"}, {"command": "backup_status", **expected},
                      {"command": "list_backups", **expected}]  # asked once per client
