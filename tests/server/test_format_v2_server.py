"""Format 2 through the server's commands, in-process on SeaweedFS: ``format = 2`` in the settings
(and, with a test-only lower ceiling, the automatic choice) makes format-2 backups that list,
download and verify, drill, preview, restore and re-encrypt; a tampered one is refused by restore
without touching the live tree."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tako_backups.cli.download import save_backup
from tako_backups.core import format_v2
from tako_backups.core.layout import backup_prefix, index_key
from tako_backups.core.verify import verify_backup
from tako_backups.models import ALGORITHM, ALGORITHM_V2, BackupBinding, BackupInfo
from tako_backups.progress import NO_PROGRESS
from tako_backups.remote.signing import FileSigner
from tako_backups.server.paths import ServerPaths
from tako_backups.server.service import BackupService
from tako_backups.storage.s3 import S3Store
from tests.server.helpers import APP, binding
from tests.server.test_rpc_inprocess import call, seed_live_data
from tests.support.asgi import AsgiClient
from tests.support.keys import new_backup_key

PREFIX = backup_prefix("demo", "production", "la")


@pytest.fixture
def service(paths: ServerPaths, seaweed_store: S3Store) -> BackupService:
    return BackupService(paths, "la", store_factory=lambda settings: seaweed_store)


def ok(reply) -> dict:  # type: ignore[no-untyped-def]
    assert reply.status_code == 200, reply.text
    return reply.json()["data"]


def test_format_2_from_the_settings_goes_through_every_command(
        client: AsgiClient, signer: FileSigner, paths: ServerPaths, service: BackupService,
        seaweed_store: S3Store, tmp_path: Path) -> None:
    data = seed_live_data(paths)
    old_key = new_backup_key()
    settings = dataclasses.replace(binding(keys=[old_key]), format=2)
    made = ok(call(client, signer, "backup_now", app=APP, backup=settings.to_dict()))
    info = BackupInfo.from_dict(made)
    assert info.encryption.algorithm == ALGORITHM_V2 and made["extras"]["format"] == 2
    assert info.archive_key == f"{PREFIX}{info.id}.tar.zst.enc"
    assert ok(call(client, signer, "list_backups", app=APP))["backups"] == [made]

    link = ok(call(client, signer, "backup_download_url", app=APP, backup_id=info.id))
    saved = tmp_path / "dl" / f"{info.id}.tar.zst.enc"
    save_backup(link["url"], info, saved, NO_PROGRESS)
    with open(saved, "rb") as body:
        report = verify_backup(body, info, [old_key], tmp_path / "verify")
    assert report.sqlite_files == ["app/notes.db"] and report.files == 2

    drill = ok(call(client, signer, "drill_backup", app=APP))
    assert drill["ok"] is True and drill["backup_id"] == info.id
    (data / "app" / "uploads" / "a.txt").write_text("changed after the backup\n")
    preview = ok(call(client, signer, "restore_preview", app=APP, backup_id=info.id))
    assert [c["path"] for c in preview["changed"]] == ["app/uploads/a.txt"]
    assert preview["added"] == preview["removed"] == []
    assert ok(call(client, signer, "restore_backup", app=APP, backup_id=info.id, safety_backup=False))
    assert (data / "app" / "uploads" / "a.txt").read_text() == "first upload\n"

    new_key = new_backup_key()
    rotated = dataclasses.replace(settings, backup_keys=[old_key, new_key])
    done = ok(call(client, signer, "reencrypt_backups", app=APP, backup=rotated.to_dict()))
    assert [d["from"] for d in done["reencrypted"]] == [info.id]
    [moved] = [BackupInfo.from_dict(b) for b in ok(call(client, signer, "list_backups", app=APP))["backups"]]
    assert moved.encryption.algorithm == ALGORITHM_V2 and moved.encryption.key_id == new_key.id
    assert moved.extras is not None and moved.extras.format == 2
    (data / "app" / "uploads" / "a.txt").write_text("changed again\n")
    assert ok(call(client, signer, "restore_backup", app=APP, backup_id=moved.id, safety_backup=False))
    assert (data / "app" / "uploads" / "a.txt").read_text() == "first upload\n"
    named = {index_key(PREFIX), moved.archive_key, moved.manifest_key}
    assert {o.key for o in seaweed_store.list(PREFIX)} == named


def test_format_2_is_chosen_past_the_ceiling_and_format_1_stays_the_default(
        client: AsgiClient, signer: FileSigner, paths: ServerPaths,
        monkeypatch: pytest.MonkeyPatch) -> None:
    seed_live_data(paths)
    settings = binding()
    first = ok(call(client, signer, "backup_now", app=APP, backup=settings.to_dict()))
    assert first["encryption"]["algorithm"] == ALGORITHM and "format" not in first["extras"]
    monkeypatch.setattr(format_v2, "V1_CEILING", 4096)
    second = ok(call(client, signer, "backup_now", app=APP))
    assert second["encryption"]["algorithm"] == ALGORITHM_V2 and second["extras"]["format"] == 2
    assert ok(call(client, signer, "drill_backup", app=APP))["ok"] is True


def test_a_tampered_format_2_archive_is_refused_and_the_live_tree_stays(
        client: AsgiClient, signer: FileSigner, paths: ServerPaths, seaweed_store: S3Store) -> None:
    data = seed_live_data(paths)
    settings: BackupBinding = dataclasses.replace(binding(), format=2)
    info = BackupInfo.from_dict(ok(call(client, signer, "backup_now", app=APP, backup=settings.to_dict())))
    stored = bytearray(seaweed_store.get_bytes(info.archive_key))
    stored[200] ^= 1  # inside the first chunk
    seaweed_store.put_bytes(info.archive_key, bytes(stored))
    (data / "app" / "uploads" / "a.txt").write_text("live edit\n")
    reply = call(client, signer, "restore_backup", app=APP, backup_id=info.id, safety_backup=False)
    assert reply.status_code == 400
    assert reply.json()["message"] == (
        f"Backup {info.id} chunk 0 failed authentication (AES-GCM tag): wrong key "
        f"'{settings.active_key.id}', or chunks were tampered with, reordered, dropped or cut.")
    assert (data / "app" / "uploads" / "a.txt").read_text() == "live edit\n"
    assert list(paths.restore_work.iterdir()) == []
