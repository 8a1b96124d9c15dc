"""A signed body that names another server as its target is refused; bodies without one (Tako's
CLI) are accepted unless the server requires a target."""

from __future__ import annotations

import pytest

from tako_backups.remote.signing import FileSigner
from tako_backups.server.app import create_app
from tako_backups.server.auth import RequestAuth
from tako_backups.server.paths import ServerPaths
from tako_backups.server.service import BackupService
from tests.server.helpers import APP, body, signed
from tests.support.asgi import AsgiClient


def app_client(service: BackupService, paths: ServerPaths, *, require_target: bool = False) -> AsgiClient:
    return AsgiClient(create_app(service, RequestAuth.from_file(paths.authorized_keys),
                                 require_target=require_target))


def call(client: AsgiClient, signer: FileSigner, **fields: object) -> tuple[int, dict]:
    data = body("backup_status", app=APP, **fields)
    reply = client.post("/rpc", content=data, headers=signed(signer, data))
    return reply.status_code, reply.json()


def test_a_body_for_another_server_is_refused(service: BackupService, paths: ServerPaths,
                                              signer: FileSigner) -> None:
    status, reply = call(app_client(service, paths), signer, target="ny")
    assert (status, reply) == (400, {"status": "error", "message": (
        "This request is for server 'ny', not this server ('la'); it was replayed from another server, or "
        "config.toml points at the wrong host.")})


@pytest.mark.parametrize("target", ["la", "LA", " la "])
def test_a_body_for_this_server_runs(service: BackupService, paths: ServerPaths, signer: FileSigner,
                                     target: str) -> None:
    status, reply = call(app_client(service, paths, require_target=True), signer, target=target)
    assert (status, reply["data"]["enabled"]) == (200, False)


def test_a_body_without_target_runs_unless_the_server_requires_one(service: BackupService, paths: ServerPaths,
                                                                    signer: FileSigner) -> None:
    status, reply = call(app_client(service, paths), signer)
    assert (status, reply["data"]["enabled"]) == (200, False)
    status, reply = call(app_client(service, paths, require_target=True), signer)
    assert (status, reply) == (400, {"status": "error", "message": (
        "This server accepts only requests that name it as their target (it runs with --require-target); "
        "send them with tako-backups' tako CLI.")})


def test_a_target_that_is_not_a_string_is_an_invalid_command(service: BackupService, paths: ServerPaths,
                                                               signer: FileSigner) -> None:
    """Our own field is checked strictly when present, like Tako's known fields."""
    status, reply = call(app_client(service, paths), signer, target=["la"])
    assert (status, reply) == (400, {"message": "invalid command", "status": "error"})


def test_the_target_is_checked_only_once_the_signature_is(service: BackupService, paths: ServerPaths) -> None:
    data = body("backup_status", app=APP, target="ny")
    client = app_client(service, paths)
    reply = client.post("/rpc", content=data, headers={"content-type": "application/json"})
    assert (reply.status_code, reply.content) == (
        401, b'{"status":"error","message":"management auth required"}')
