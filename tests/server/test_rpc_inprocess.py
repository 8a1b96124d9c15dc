"""The RPC app in-process (httpx.ASGITransport) over a MemoryStore: auth, validation, commands."""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import time
from pathlib import Path

import pytest

import tako_backups.core.extract as extract_module
from tako_backups.core.layout import backup_prefix
from tako_backups.remote.signing import FileSigner
from tako_backups.server.paths import ServerPaths
from tako_backups.server.recovery import recover_interrupted_restores
from tako_backups.server.service import BackupService
from tako_backups.server.state import StateStore
from tako_backups.storage.memory import MemoryStore
from tests.server.helpers import APP, BUSY, NO_SETTINGS, binding, body, signed
from tests.support.asgi import AsgiClient

PREFIX = backup_prefix("demo", "production", "la")


def post(client: AsgiClient, data: bytes, headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return client.post("/rpc", content=data, headers=headers or {"content-type": "application/json"})


def call(client: AsgiClient, signer: FileSigner, command: str, **fields: object):  # type: ignore[no-untyped-def]
    data = body(command, **fields)
    return post(client, data, signed(signer, data))


def seed_live_data(paths: ServerPaths) -> Path:
    data = paths.ensure_data_dir("demo", "production")
    (data / "app" / "uploads").mkdir()
    (data / "app" / "uploads" / "a.txt").write_text("first upload\n")
    conn = sqlite3.connect(data / "app" / "notes.db")
    conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    conn.executemany("INSERT INTO notes (body) VALUES (?)", [(f"note {i}",) for i in range(50)])
    conn.commit()
    conn.close()
    return data


# ----- app names: Tako's server rules and texts -----

@pytest.mark.parametrize(("fields", "message"), [
    ({"app": "Demo/production"}, "Invalid app name: must start with a lowercase letter"),
    ({"app": "demo/prod/x"}, "Invalid app name: only lowercase letters, digits, and '-' are allowed"),
    ({"app": "../x/production"}, "Invalid app name: must start with a lowercase letter"),
    ({"app": "demo/prod-"}, "Invalid app name: must not end with '-'"),
    ({"app": "demo-/production"}, "Invalid app name: must not end with '-'"),
    ({"app": "d" * 64 + "/production"}, "Invalid app name: must be 63 characters or fewer"),
    ({"app": "/production"}, "Invalid app name: must start with a lowercase letter"),
    ({"app": "demo/"}, "Invalid app name: only lowercase letters, digits, and '-' are allowed"),
    ({"app": ""}, "Invalid app name: must not be empty"),
    # Tako's server reads an app without '/{env}' as {app}/production.
    ({"app": "demo"}, "Backups are not configured for demo/production."),
    ({"app": "d" * 63 + "/" + "e" * 63}, f"Backups are not configured for {'d' * 63}/{'e' * 63}."),
])
def test_app_names_are_checked_as_takos_server_checks_them(client: AsgiClient, signer: FileSigner,
                                                            fields: dict,
                                                            message: str) -> None:
    reply = call(client, signer, "list_backups", **fields)
    assert (reply.status_code, reply.json()) == (400, {"status": "error", "message": message})


# ----- authentication: 401 and no side effect -----

def assert_untouched(memory_store: MemoryStore, paths: ServerPaths) -> None:
    assert memory_store.objects == {}
    assert StateStore(paths.state_dir).apps() == []
    assert not paths.data_dir("demo", "production").exists()


AUTH_REQUIRED = b'{"status":"error","message":"management auth required"}'
AUTH_FAILED = b'{"status":"error","message":"management auth failed"}'


def test_unsigned_call_is_401_and_changes_nothing(client: AsgiClient, memory_store: MemoryStore,
                                                   paths: ServerPaths) -> None:
    data = body("backup_now", app=APP, backup=binding().to_dict())
    reply = post(client, data)
    assert (reply.status_code, reply.content) == (401, AUTH_REQUIRED)
    assert_untouched(memory_store, paths)


def test_replayed_nonce_is_401(client: AsgiClient, signer: FileSigner, memory_store: MemoryStore,
                               paths: ServerPaths) -> None:
    data = body("backup_now", app=APP, backup=binding().to_dict())
    headers = signed(signer, data)
    first = post(client, data, headers)
    assert first.status_code == 200, first.text
    objects = dict(memory_store.objects)
    replay = post(client, data, headers)
    assert (replay.status_code, replay.content) == (401, AUTH_FAILED)
    assert memory_store.objects == objects


@pytest.mark.parametrize("offset", [-301, 301])
def test_stale_or_future_timestamp_is_401(client: AsgiClient, signer: FileSigner, memory_store: MemoryStore,
                                          paths: ServerPaths, offset: int) -> None:
    data = body("backup_now", app=APP, backup=binding().to_dict())
    reply = post(client, data, signed(signer, data, timestamp=int(time.time()) + offset))
    assert (reply.status_code, reply.content) == (401, AUTH_FAILED)
    assert_untouched(memory_store, paths)


def test_body_changed_after_signing_is_401(client: AsgiClient, signer: FileSigner, memory_store: MemoryStore,
                                           paths: ServerPaths) -> None:
    original = body("list_backups", app=APP)
    changed = body("backup_now", app=APP, backup=binding().to_dict())
    reply = post(client, changed, signed(signer, original))
    assert (reply.status_code, reply.content) == (401, AUTH_FAILED)
    assert_untouched(memory_store, paths)


def test_unknown_key_is_401(client: AsgiClient, stranger: FileSigner, memory_store: MemoryStore,
                            paths: ServerPaths) -> None:
    data = body("backup_now", app=APP, backup=binding().to_dict())
    reply = post(client, data, signed(stranger, data))
    assert (reply.status_code, reply.content) == (401, AUTH_FAILED)
    assert_untouched(memory_store, paths)


def test_key_authorized_while_running_is_accepted(client: AsgiClient, stranger: FileSigner,
                                                  paths: ServerPaths) -> None:
    from tako_backups.server.cli import authorize_key

    assert call(client, stranger, "backup_status", app=APP).status_code == 401
    authorize_key(Path(f"{stranger.path}.pub"), paths.root)
    assert call(client, stranger, "backup_status", app=APP).status_code == 200


# ----- commands -----

def test_unknown_app_has_a_clear_error(client: AsgiClient, signer: FileSigner) -> None:
    for command, extra in (("list_backups", {}), ("backup_now", {}),
                           ("restore_backup", {"backup_id": "b1710000000-AbCdEf12"}),
                           ("backup_download_url", {"backup_id": "b1710000000-AbCdEf12"})):
        reply = call(client, signer, command, app=APP, **extra)
        expected = (400, {"status": "error", "message": NO_SETTINGS})
        assert (reply.status_code, reply.json()) == expected, command
    status = call(client, signer, "backup_status", app=APP)
    assert (status.status_code, status.content) == (200, (
        b'{"status":"ok","data":{"app":"demo/production","enabled":false,"last_backup":null,'
        b'"next_backup_at_unix_secs":null,"retention_days":null}}'))


def test_backup_list_status_download(client: AsgiClient, signer: FileSigner, memory_store: MemoryStore,
                                     paths: ServerPaths) -> None:
    seed_live_data(paths)
    settings = binding(retention_days=7)
    created = call(client, signer, "backup_now", app=APP, backup=settings.to_dict())
    assert created.status_code == 200, created.text
    info = created.json()["data"]
    assert info["app"] == "demo" and info["environment"] == "production" and info["server"] == "la"
    assert info["archive_key"] == f"{PREFIX}{info['id']}.tar.zst.enc"
    assert info["encryption"]["key_id"] == settings.active_key.id
    assert len(memory_store.objects[info["archive_key"]]) == info["size_bytes"]
    again = call(client, signer, "backup_now", app=APP).json()["data"]  # stored settings reused
    listed = call(client, signer, "list_backups", app=APP).json()["data"]
    assert listed["app"] == APP
    newest_first = sorted([info, again], key=lambda b: (b["created_at_unix_secs"], b["id"]), reverse=True)
    assert listed["backups"] == newest_first
    status = call(client, signer, "backup_status", app=APP).json()["data"]
    newest = listed["backups"][0]
    assert status == {"app": APP, "enabled": True, "retention_days": 7, "last_backup": newest,
                      "next_backup_at_unix_secs": newest["created_at_unix_secs"] + 86_400,
                      "last_drill": None, "last_ok_drill": None, "overdue": False,
                      "overdue_after_seconds": 133_200, "index_rebuilt": False}
    url = call(client, signer, "backup_download_url", app=APP, backup_id=info["id"]).json()["data"]
    assert url == {"backup": info, "expires_in_seconds": 900,
                   "url": f"memory://{info['archive_key']}?expires_in=900"}
    missing = call(client, signer, "backup_download_url", app=APP, backup_id="b1710000000-AbCdEf12")
    assert (missing.status_code, missing.content) == (
        400, b'{"status":"error","message":"Backup not found: b1710000000-AbCdEf12"}')


def test_settings_are_encrypted_at_rest(client: AsgiClient, signer: FileSigner, paths: ServerPaths) -> None:
    settings = binding()
    assert call(client, signer, "backup_now", app=APP, backup=settings.to_dict()).status_code == 200
    raw = (paths.state_dir / "apps" / "demo.production.enc").read_bytes()
    secret = settings.storage.secret_access_key.encode()
    key_b64 = settings.backup_keys[0].to_dict()["key_base64"].encode()
    assert secret not in raw and key_b64 not in raw and b"backup-key-" not in raw
    assert (paths.state_dir / "server.key").stat().st_mode & 0o777 == 0o600
    assert (paths.state_dir / "apps" / "demo.production.enc").stat().st_mode & 0o777 == 0o600
    assert StateStore(paths.state_dir).load(APP).backup == settings  # type: ignore[union-attr]


def test_storage_failure_is_a_400_with_the_core_message(client: AsgiClient, signer: FileSigner,
                                                        memory_store: MemoryStore) -> None:
    memory_store.fail_puts.add(".json")
    settings = binding()
    reply = call(client, signer, "backup_now", app=APP, backup=settings.to_dict())
    assert reply.status_code == 400
    message = reply.json()["message"]
    assert message.startswith(f"Upload of '{PREFIX}b") and message.endswith(".json' failed (injected).")
    assert settings.storage.secret_access_key not in reply.text


def test_unexpected_failure_is_a_generic_500(paths: ServerPaths, signer: FileSigner) -> None:
    from tako_backups.server.app import create_app
    from tako_backups.server.auth import RequestAuth

    def broken_factory(binding: object) -> MemoryStore:
        raise RuntimeError("boom with secret s3cr3t-never-shown")

    app = create_app(BackupService(paths, "la", store_factory=broken_factory),
                     RequestAuth.from_file(paths.authorized_keys))
    reply = call(AsgiClient(app), signer, "backup_now", app=APP, backup=binding().to_dict())
    assert reply.status_code == 500
    assert reply.json() == {"status": "error",
                            "message": "The server failed while running backup_now; see the tako-server log."}


def test_deploy_finalize_shapes(client: AsgiClient, signer: FileSigner, memory_store: MemoryStore,
                                paths: ServerPaths) -> None:
    disabled = call(client, signer, "deploy", app=APP, backup=None)
    assert disabled.json() == {"status": "ok",
                               "data": {"status": "finalized", "backup": {"status": "disabled"}}}
    data = paths.data_dir("demo", "production")
    assert sorted(p.name for p in data.iterdir()) == ["app", "tako"]
    assert data.stat().st_mode & 0o777 == 0o710
    created = call(client, signer, "deploy", app=APP, backup=binding().to_dict()).json()["data"]
    assert created["status"] == "finalized" and created["backup"]["status"] == "created"
    index = json.loads(memory_store.objects[f"{PREFIX}index.json"])
    assert index["backups"][0]["id"] == created["backup"]["id"]
    assert created["backup"]["size_bytes"] == index["backups"][0]["size_bytes"]
    memory_store.fail_puts.add(".json")
    failed = call(client, signer, "deploy", app=APP, backup=binding().to_dict())
    assert failed.status_code == 200
    assert failed.json()["data"]["backup"]["status"] == "failed"
    assert failed.json()["data"]["backup"]["message"].endswith(".json' failed (injected).")
    bad = call(client, signer, "deploy", app=APP, backup=None, runtime={"start": [], "instances": 1})
    assert (bad.status_code, bad.json()["message"]) == (
        400, "Runtime settings field 'start' must be a non-empty list of non-empty strings.")


# ----- restore -----

def backed_up(client: AsgiClient, signer: FileSigner, paths: ServerPaths) -> tuple[Path, dict]:
    data = seed_live_data(paths)
    info = call(client, signer, "backup_now", app=APP, backup=binding().to_dict()).json()["data"]
    return data, info


def test_restore_replaces_the_live_tree(client: AsgiClient, signer: FileSigner, paths: ServerPaths,
                                        service: BackupService) -> None:
    data, info = backed_up(client, signer, paths)
    (data / "app" / "uploads" / "a.txt").write_text("garbage")
    (data / "app" / "new-after-backup.txt").write_text("garbage")
    (data / "tako" / "channels.sqlite").write_bytes(b"SQLite format 3\x00 not really")
    reply = call(client, signer, "restore_backup", app=APP, backup_id=info["id"]).json()
    kept = service.safety.kept.get(APP)  # the replaced tree, kept on disk: the safety copy
    assert kept is not None and kept.record.replaced_by == info["id"]
    assert reply == {"status": "ok", "data": info, "downtime_seconds": reply["downtime_seconds"],
                     "safety_backup": {"status": "kept", "keep_hours": 24.0,
                                       "drop_at_unix_secs": kept.record.kept_at_unix_secs + 86_400}}
    assert isinstance(reply["downtime_seconds"], float) and reply["downtime_seconds"] >= 0
    assert (kept.tree / "app" / "new-after-backup.txt").read_text() == "garbage"
    assert service.safety.wait(APP, 20)
    assert (data / "app" / "uploads" / "a.txt").read_text() == "first upload\n"
    assert not (data / "app" / "new-after-backup.txt").exists()
    assert not (data / "tako" / "channels.sqlite").exists()
    conn = sqlite3.connect(data / "app" / "notes.db")
    assert conn.execute("SELECT count(*) FROM notes").fetchone() == (50,)
    conn.close()
    assert data.stat().st_mode & 0o777 == 0o710
    assert list(paths.restore_work.iterdir()) == []


def test_restore_with_a_bad_checksum_leaves_live_data(client: AsgiClient, signer: FileSigner,
                                                      paths: ServerPaths, memory_store: MemoryStore) -> None:
    data, info = backed_up(client, signer, paths)
    archive = bytearray(memory_store.objects[info["archive_key"]])
    archive[len(archive) // 2] ^= 0x01
    memory_store.objects[info["archive_key"]] = bytes(archive)
    (data / "app" / "uploads" / "a.txt").write_text("live edit")
    reply = call(client, signer, "restore_backup", app=APP, backup_id=info["id"])
    assert (reply.status_code, reply.json()["message"]) == (
        400, "Downloaded backup checksum did not match manifest.")
    assert (data / "app" / "uploads" / "a.txt").read_text() == "live edit"
    assert list(paths.restore_work.iterdir()) == []


def test_restore_on_a_full_disk_leaves_live_data(client: AsgiClient, signer: FileSigner, paths: ServerPaths,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    data, info = backed_up(client, signer, paths)
    (data / "app" / "uploads" / "a.txt").write_text("live edit")
    real_write = extract_module._write_file
    written: list[str] = []

    def fill_disk(tar, member, fd, progress, owner):  # type: ignore[no-untyped-def]
        if written:
            os.close(fd)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), member.name)
        written.append(member.name)
        real_write(tar, member, fd, progress, owner)

    monkeypatch.setattr(extract_module, "_write_file", fill_disk)
    reply = call(client, signer, "restore_backup", app=APP, backup_id=info["id"])
    assert reply.status_code == 400
    assert reply.json()["message"] == (
        f"Not enough disk space under {paths.restore_work} to restore backup {info['id']} "
        f"({info['size_bytes']} bytes encrypted); free up space and try again. "
        "The live data was not touched.")
    assert written, "the restore never got to write a file"
    assert (data / "app" / "uploads" / "a.txt").read_text() == "live edit"
    assert list(paths.restore_work.iterdir()) == []


def test_second_restore_while_busy_is_refused(client: AsgiClient, signer: FileSigner, paths: ServerPaths,
                                              service: BackupService) -> None:
    data, info = backed_up(client, signer, paths)
    with service.locks.hold(APP):
        for command, extra in (("restore_backup", {"backup_id": info["id"]}), ("backup_now", {})):
            reply = call(client, signer, command, app=APP, **extra)
            assert (reply.status_code, reply.json()) == (400, {"status": "error", "message": BUSY})
    assert call(client, signer, "restore_backup", app=APP, backup_id=info["id"]).status_code == 200


def test_failed_swap_puts_the_live_tree_back(client: AsgiClient, signer: FileSigner, paths: ServerPaths,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    data, info = backed_up(client, signer, paths)
    (data / "app" / "uploads" / "a.txt").write_text("live edit")
    real_rename = os.rename

    def rename(src: object, dst: object) -> None:
        if Path(str(src)).name == "tree":
            raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))
        real_rename(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "rename", rename)
    reply = call(client, signer, "restore_backup", app=APP, backup_id=info["id"])
    assert (reply.status_code, reply.json()["message"]) == (
        400, f"Could not move the restored data into {data}: Invalid cross-device link.")
    assert (data / "app" / "uploads" / "a.txt").read_text() == "live edit"
    assert list(paths.restore_work.iterdir()) == []


def test_swap_that_cannot_roll_back_keeps_the_old_tree_for_recovery(
        client: AsgiClient, signer: FileSigner, paths: ServerPaths, monkeypatch: pytest.MonkeyPatch) -> None:
    data, info = backed_up(client, signer, paths)
    (data / "app" / "uploads" / "a.txt").write_text("live edit")
    real_rename = os.rename

    def rename(src: object, dst: object) -> None:
        if Path(str(src)).name in ("tree", "aside"):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_rename(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "rename", rename)
    reply = call(client, signer, "restore_backup", app=APP, backup_id=info["id"])
    assert not data.exists()
    [staging] = list(paths.restore_work.iterdir())
    assert (reply.status_code, reply.json()["message"]) == (
        400, "Could not swap in the restored data of app 'demo/production' (Input/output error) nor move the "
        f"previous data back: it is kept at {staging / 'aside'}; restart tako-server to move it back.")
    assert (staging / "aside" / "app" / "uploads" / "a.txt").read_text() == "live edit"
    monkeypatch.setattr(os, "rename", real_rename)
    paths.ensure_data_dir("demo", "production")  # e.g. a scheduled backup ran in the meantime
    recover_interrupted_restores(paths)
    assert (data / "app" / "uploads" / "a.txt").read_text() == "live edit"
    assert list(paths.restore_work.iterdir()) == []


def test_request_signed_by_openssh_is_accepted(client: AsgiClient, signer: FileSigner) -> None:
    import base64
    import secrets
    import subprocess

    data = body("backup_status", app=APP)
    stamp, nonce = str(int(time.time())), secrets.token_hex(24)
    message = f"tako-management-rpc-v0\n{stamp}\n{nonce}\n".encode() + data
    armored = subprocess.run(
        ["/usr/bin/ssh-keygen", "-q", "-Y", "sign", "-n", "tako-management-rpc-v0", "-f", str(signer.path)],
        input=message, capture_output=True, check=True).stdout
    headers = {"content-type": "application/json", "x-tako-key-fingerprint": signer.fingerprint,
               "x-tako-timestamp": stamp, "x-tako-nonce": nonce,
               "x-tako-signature": base64.b64encode(armored).decode()}
    reply = post(client, data, headers)
    assert (reply.status_code, reply.json()["data"]["enabled"]) == (200, False)


# ----- issue 14: the progress command and the grace period of a kept tree -----

def test_operation_progress_is_signed_and_null_when_nothing_runs(client: AsgiClient,
                                                                  signer: FileSigner) -> None:
    reply = call(client, signer, "operation_progress", app=APP)
    assert (reply.status_code, reply.json()) == (200, {"status": "ok", "data": None})
    assert post(client, body("operation_progress", app=APP)).status_code == 401


@pytest.mark.parametrize("hours", [-1, 721, 720.5, 10**9])
def test_keep_previous_hours_out_of_range_is_refused(client: AsgiClient, signer: FileSigner,
                                                     paths: ServerPaths, hours: float) -> None:
    _data, info = backed_up(client, signer, paths)
    for command, fields in (("restore_backup", {"backup_id": info["id"]}), ("undo_restore", {})):
        reply = call(client, signer, command, app=APP, keep_previous_hours=hours, **fields)
        assert (reply.status_code, reply.json()["message"]) == (
            400, f"Command '{command}' field 'keep_previous_hours' must be a number of hours from 0 to 720.")
    assert list(paths.restore_work.iterdir()) == []
