"""The management HTTP layer answers exactly as Tako's server does (tako-server/src/management_http.rs):
status, body bytes and headers for routes, body limits, parsing (before auth), auth, hello,
server_info and a disabled app's status; and the one log line behind each refusal."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tako_backups import __version__
from tako_backups.errors import ConfigError
from tako_backups.remote.signing import FileSigner, RequestVerifier
from tako_backups.server.app import create_app
from tako_backups.server.auth import RequestAuth
from tako_backups.server.identity_key import ensure_server_identity
from tako_backups.server.paths import ServerPaths
from tako_backups.server.service import BackupService
from tako_backups.storage.memory import MemoryStore
from tests.server.helpers import APP, binding, signed
from tests.support.asgi import AsgiClient

NOT_FOUND = b'{"message":"not found","status":"error"}'
TOO_LARGE = b'{"message":"request body too large","status":"error"}'
INVALID_BODY = b'{"message":"invalid request body","status":"error"}'
INVALID_COMMAND = b'{"message":"invalid command","status":"error"}'
REQUIRED = b'{"status":"error","message":"management auth required"}'
FAILED = b'{"status":"error","message":"management auth failed"}'
HELLO = b'{"command":"hello","protocol_version":0}'
LOGGER = "tako_backups.server.app"


@pytest.fixture
def identity(paths: ServerPaths) -> str:
    return ensure_server_identity(paths.root)


@pytest.fixture
def app(service: BackupService, paths: ServerPaths, identity: str) -> Any:
    service.identity = identity
    return create_app(service, RequestAuth.from_file(paths.authorized_keys))


def request(app: Any, method: str, path: str, content: bytes = b"", headers: dict[str, Any] | None = None,
            ) -> httpx.Response:
    with AsgiClient(app) as client:
        return client.request(method, path, content, headers)


def post(app: Any, content: bytes, headers: dict[str, Any] | None = None) -> httpx.Response:
    return request(app, "POST", "/rpc", content, headers)


def assert_reply(reply: httpx.Response, status: int, body: bytes) -> None:
    assert (reply.status_code, reply.content) == (status, body)
    assert reply.headers["content-type"] == "application/json"
    assert reply.headers["cache-control"] == "no-store"
    assert reply.headers["content-length"] == str(len(body))


def log_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == LOGGER]


# ----- routes and body limits -----

@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/rpc"), ("PUT", "/rpc"), ("DELETE", "/rpc"), ("PATCH", "/rpc"), ("OPTIONS", "/rpc"),
    ("POST", "/"), ("POST", "/other"), ("POST", "//rpc"), ("POST", "/rpc/"), ("POST", "/RPC"),
    ("POST", "/rp%63"), ("POST", "/release-artifact"), ("POST", "/logs"), ("GET", "/"),
])
def test_every_other_route_is_404(app: Any, method: str, path: str) -> None:
    assert_reply(request(app, method, path, HELLO), 404, NOT_FOUND)


def test_the_query_string_is_ignored(app: Any) -> None:
    assert request(app, "POST", "/rpc?x=1", HELLO).status_code == 200


def test_over_one_mib_is_413_before_anything_else(app: Any, signer: FileSigner,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    big = HELLO[:-1] + b',"pad":"' + b"x" * (1 << 20) + b'"}'
    assert_reply(post(app, big), 413, TOO_LARGE)
    assert_reply(post(app, b"[" * ((1 << 20) + 1), signed(signer, b"x")), 413, TOO_LARGE)
    at_limit = HELLO + b" " * ((1 << 20) - len(HELLO))
    assert post(app, at_limit).status_code == 200
    assert log_lines(caplog)[:2] == ["refused a request from 127.0.0.1: body over 1048576 bytes"] * 2


def test_a_body_that_cannot_be_read_is_400(app: Any) -> None:
    """The client goes away mid-body: Tako's 'invalid request body' (sent into the void)."""
    sent: list[dict[str, Any]] = []
    messages = [{"type": "http.request", "body": b'{"command":', "more_body": True},
                {"type": "http.disconnect"}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/rpc", "raw_path": b"/rpc", "query_string": b"",
             "headers": [], "client": ("127.0.0.1", 5000), "server": ("testserver", 80), "scheme": "http",
             "http_version": "1.1", "root_path": ""}
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 400 and sent[1]["body"] == INVALID_BODY


# ----- parsing, before auth -----

NESTED_OK = b'{"command":"server_info","x":' + b"[" * 126 + b"]" * 126 + b"}"  # 127 levels
INVALID = [
    b"", b" ", b"{not json", b"[" * 100_000, b"{" * 100_000, b'{"a":' * 50_000,
    b'{"command":"server_info","x":' + b"[" * 127 + b"]" * 127 + b"}",  # 128 levels: serde's limit
    b"[1,2]", b'"hello"', b"null", b"{}", b'{"app":"demo/production"}', b'{"command":5}',
    b'{"command":"explode"}', b'{"command":"HELLO","protocol_version":0}', b'{"command":"deploy_app"}',
    b'{"command":"hello"}', b'{"command":"hello","protocol_version":"0"}',
    b'{"command":"hello","protocol_version":-1}',
    b'{"command":"hello","protocol_version":4294967296}', b'{"command":"hello","protocol_version":0.0}',
    b'{"command":"hello","protocol_version":true}', b'{"command":"hello","protocol_version":null}',
    HELLO + b"x", HELLO + b"{}", b"\xef\xbb\xbf" + HELLO, HELLO.decode().encode("utf-16"), b"\xff\xfe\xfd",
    b'{"command":"server_info","x":"\xff"}', b'{"command":"server_info","x":"\\ud800"}',
    b'{"command":"server_info","x":"\\udc00\\ud800"}', b'{"command":"server_info","\\ud800":1}',
    b'{"command":"server_info","x":NaN}', b'{"command":"server_info","x":Infinity}',
    b'{"command":"server_info","x":1e400}', b'{"command":"server_info","x":' + b"9" * 5000 + b"}",
    b'{"command":"server_info","x":01}', b'{"command":"server_info",}', b"{'command':'server_info'}",
    b'{"command":"server_info","command":"server_info"}',
    b'{"command":"hello","protocol_version":0,"protocol_version":0}',
    b'{"command":"list_backups"}', b'{"command":"list_backups","app":7}',
    b'{"command":"list_backups","app":null}',
    b'{"command":"list_backups","app":"demo/production","app":"demo/production"}',
    b'{"command":"backup_download_url","app":"demo/production"}',
    b'{"command":"restore_backup","app":"demo/production","backup_id":7}',
    b'{"command":"backup_now","app":"demo/production","backup":{}}',
    b'{"command":"backup_now","app":"demo/production","backup":[]}',
    b'{"command":"backup_now","app":"demo/production","backup":{"storage":{"provider":"gcs"}}}',
    b'{"command":"backup_now","app":"demo/production","backup":{"storage":{}}}',
    b'{"command":"backup_now","app":"demo/production","backup":{"storage":{"provider":"s3","bucket":1}}}',
    b'{"command":"backup_now","app":"demo/production","backup":{"storage":{"provider":"s3"},"retention_days":-1}}',
    b'{"command":"backup_now","app":"demo/production","backup":{"storage":{"provider":"s3"},'
    b'"retention_days":65536}}',
    b'{"command":"backup_now","app":"demo/production","backup":{"storage":{"provider":"s3"},"backup_keys":null}}',
    b'{"command":"backup_now","app":"demo/production","backup":{"storage":{"provider":"s3"},'
    b'"backup_keys":[{"id":"backup-key-0123456789abcdef"}]}}',
    b'{"command":"backup_now","app":"demo/production","backup":{"storage":{"provider":"s3","provider":"s3"}}}',
    # our own fields are checked as strictly when they are there
    b'{"command":"restore_backup","app":"demo/production","backup_id":"b1-x","safety_backup":"no"}',
    b'{"command":"list_backups","app":"demo/production","target":7}',
    b'{"command":"list_backups","app":"demo/production","target":"la","target":"la"}',
    b'{"command":"deploy","app":"demo/production","runtime":[]}',
]


@pytest.mark.parametrize("body", INVALID, ids=lambda body: repr(body[:60]))
def test_what_tako_cannot_parse_is_an_invalid_command_signed_or_not(
        app: Any, signer: FileSigner, body: bytes, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    assert_reply(post(app, body), 400, INVALID_COMMAND)
    assert_reply(post(app, body, signed(signer, body)), 400, INVALID_COMMAND)
    lines = log_lines(caplog)
    assert len(lines) == 2 and all(line.startswith("invalid command from 127.0.0.1: ") for line in lines)
    assert all("\n" not in line and len(line) < 400 for line in lines)


def test_fields_nobody_knows_are_ignored_as_tako_ignores_them(app: Any, signer: FileSigner,
                                                              paths: ServerPaths) -> None:
    for body in (HELLO[:-1] + b',"client":"tako 0.0.0","hello":{"x":[1]}}', NESTED_OK,
                 b'{"command":"server_info","x":1,"x":2,"server_name":7}'):
        assert post(app, body).status_code == 200, body
    settings = binding()
    wire = settings.to_dict()
    wire["storage"] |= {"path": None, "signing_key": None, "region_hint": "eu"}
    wire["backup_keys"][0]["created_at"] = "2026-01-01"
    del wire["retention_days"]  # Tako's default: 30
    body = json.dumps({"command": "backup_now", "app": APP, "backup": wire, "priority": "high",
                       "dry_run": False, "dry_run ": True}).encode()
    paths.ensure_data_dir("demo", "production")
    reply = post(app, body, signed(signer, body))
    assert reply.status_code == 200, reply.text
    status = post(app, data := json.dumps({"command": "backup_status", "app": APP, "x": [[[]]]}).encode(),
                  signed(signer, data)).json()["data"]
    assert (status["enabled"], status["retention_days"], status["last_backup"]["id"]) == (
        True, 30, reply.json()["data"]["id"])


# ----- auth: exactly two texts, the reason in the log -----

def test_missing_or_blank_headers_are_auth_required(app: Any, signer: FileSigner,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    body = b'{"command":"backup_status","app":"demo/production"}'
    headers = signed(signer, body)
    assert_reply(post(app, body), 401, REQUIRED)
    for name in ("x-tako-key-fingerprint", "x-tako-timestamp", "x-tako-nonce", "x-tako-signature"):
        assert_reply(post(app, body, {k: v for k, v in headers.items() if k != name}), 401, REQUIRED)
        assert_reply(post(app, body, {**headers, name: "   "}), 401, REQUIRED)
    lines = log_lines(caplog)
    assert lines[0] == ("refused backup_status from 127.0.0.1 (management auth required): Missing "
                        "x-tako-key-fingerprint header; the request must be signed.")
    assert lines[-1] == ("refused backup_status from 127.0.0.1 (management auth required): Blank "
                         "x-tako-signature header; the request must be signed.")


def test_no_authorized_keys_file_is_auth_required(app: Any, signer: FileSigner, paths: ServerPaths,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    body = b'{"command":"list_backups","app":"demo/production"}'
    paths.authorized_keys.unlink()
    assert_reply(post(app, body, signed(signer, body)), 401, REQUIRED)
    assert log_lines(caplog) == [
        f"refused list_backups from 127.0.0.1 (management auth required): There is no authorized keys file "
        f"({paths.authorized_keys}); add a key with tako-server authorize-key."]
    paths.authorized_keys.write_text("")  # a file with no keys: the key is unknown
    assert_reply(post(app, body, signed(signer, body)), 401, FAILED)


def test_every_other_refusal_is_auth_failed(app: Any, signer: FileSigner, stranger: FileSigner,
                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    settings = binding()
    body = json.dumps({"command": "backup_now", "app": APP, "backup": settings.to_dict()}).encode()
    good = signed(signer, body)
    cases = {
        "unknown key": (body, signed(stranger, body)),
        "stale": (body, signed(signer, body, timestamp=int(time.time()) - 301)),
        "future": (body, signed(signer, body, timestamp=int(time.time()) + 301)),
        "bad nonce": (body, signed(signer, body, nonce="short")),
        "body changed": (body.replace(b"demo", b"demx"), good),
        "not base64": (body, {**good, "x-tako-signature": "%%%"}),
        "not ASCII": (body, {**good,
                             "x-tako-nonce": (good["x-tako-nonce"][:-1] + "\u00e9").encode("latin-1")}),
    }
    for what, (data, headers) in cases.items():
        reply = post(app, data, headers)
        assert (reply.status_code, reply.content) == (401, FAILED), what
    reasons = [line.split(": ", 1)[1] for line in log_lines(caplog)]
    assert reasons[0] == (
        f"Key {stranger.fingerprint} is not authorized; add it with tako-server authorize-key.")
    assert reasons[1].startswith("Request timestamp is 301 s old") and "Bad signature" in reasons[4]
    assert reasons[6] == "The x-tako-nonce header holds characters other than visible ASCII."
    assert all(line.startswith("refused backup_now from 127.0.0.1 (management auth failed): ")
               for line in log_lines(caplog))
    assert post(app, body, good).status_code == 200
    assert_reply(post(app, body, good), 401, FAILED)  # the same nonce again
    assert log_lines(caplog)[-1].endswith(": Nonce was already used (replayed request).")
    logged = "\n".join(log_lines(caplog))
    assert settings.storage.secret_access_key not in logged and good["x-tako-signature"] not in logged


def test_a_nonce_that_cannot_be_recorded_runs_nothing(service: BackupService, paths: ServerPaths,
                                                      signer: FileSigner) -> None:
    class FullDisk:
        appended = 0

        def load(self) -> list[tuple[str, int]]:
            return []

        def append(self, nonce: str, last_second: int) -> None:
            raise ConfigError("Cannot record the request nonce in /x: No space left on device.")

        def rewrite(self, entries: list[tuple[str, int]]) -> None:
            pass

    app = create_app(service, RequestAuth(RequestVerifier(paths.authorized_keys, journal=FullDisk())))
    body = b'{"command":"backup_status","app":"demo/production"}'
    assert_reply(post(app, body, signed(signer, body)), 500, (
        b'{"status":"error","message":"The server could not record the request\'s nonce, so it did not run '
        b'the request; see the tako-server log."}'))


# ----- hello, server_info, a disabled app -----

def test_hello_is_takos_hello_response(app: Any, identity: str) -> None:
    expected = (b'{"status":"ok","data":{"capabilities":["server_runtime_info","backups"],'
                b'"protocol_version":0,"server_identity":"' + identity.encode()
                + b'","server_version":"' + __version__.encode() + b'"}}')
    assert_reply(post(app, HELLO), 200, expected)
    assert_reply(post(app, b'{"command":"hello","protocol_version":7}'), 400,
                 b'{"status":"error","message":"Protocol version mismatch: client=7 server=0"}')
    assert_reply(post(app, b'{"command":"hello","protocol_version":4294967295}'), 400,
                 b'{"status":"error","message":"Protocol version mismatch: client=4294967295 server=0"}')


def test_server_info_is_takos_server_runtime_info(app: Any, paths: ServerPaths, identity: str) -> None:
    before = int(time.time())
    reply = post(app, b'{"command":"server_info"}')
    assert reply.status_code == 200
    data = reply.json()["data"]
    assert list(data) == sorted(data)
    started = data.pop("process_started_at_unix_secs")
    assert isinstance(started, int) and started <= before
    assert data == {"acme_email": None, "acme_staging": False, "data_dir": str(paths.root), "http_port": 80,
                    "https_port": 443, "metrics_port": None, "mode": "normal", "no_acme": True,
                    "pid": os.getpid(), "renewal_interval_hours": 12, "server_identity": identity,
                    "server_name": "la", "socket": "/var/run/tako/tako.sock", "standby": False}


def test_a_disabled_app_has_takos_status(app: Any, signer: FileSigner) -> None:
    body = b'{"command":"backup_status","app":"demo/production"}'
    assert_reply(post(app, body, signed(signer, body)), 200, (
        b'{"status":"ok","data":{"app":"demo/production","enabled":false,"last_backup":null,'
        b'"next_backup_at_unix_secs":null,"retention_days":null}}'))


def test_identity_is_made_once_and_kept(tmp_path: Path) -> None:
    root = tmp_path / "tako"
    first = ensure_server_identity(root)
    key = root / "identity.key"
    assert (key.stat().st_mode & 0o777) == 0o600 and first.startswith("SHA256:")
    assert key.read_bytes().startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----\n")
    (root / "identity.pub").unlink()
    assert ensure_server_identity(root) == first
    pub = (root / "identity.pub").read_text()
    assert pub.startswith("ssh-ed25519 AAAA") and pub.endswith(" tako-server identity\n")
    service = BackupService(ServerPaths(root), "la", store_factory=lambda b: MemoryStore())
    assert service.hello(0)["server_identity"] == first
    key.write_text("not a key\n")
    with pytest.raises(ConfigError, match="is not an unencrypted OpenSSH private key"):
        ensure_server_identity(root)
