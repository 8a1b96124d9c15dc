"""The recovery commands end to end over the signed RPC: a real `tako-server serve`, a real SeaweedFS bucket.

Drills and status, restore previews, the kept tree and undo (with the notes app running),
the self-healing index, re-encryption under a rotated key, and signatures on the new commands.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tako_backups.core.layout import backup_prefix, index_key
from tako_backups.models import BackupBinding, BackupIndex, BackupInfo
from tako_backups.remote.client import ServerReplyError
from tako_backups.remote.signing import FileSigner
from tako_backups.storage.s3 import S3Store
from tests.recovery.conftest import make_tree, sql
from tests.server.helpers import binding, storage
from tests.support.keys import new_backup_key
from tests.support.s3_servers import SeaweedFS
from tests.support.sqlite_checks import integrity
from tests.support.tako_server import NOTES_RUNTIME, RunningServer, app_pids, notes, running_server
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

NEW_COMMANDS = ["drill_backup", "restore_preview", "undo_restore", "reindex", "reencrypt_backups"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, signer: FileSigner) -> Iterator[RunningServer]:
    yield from running_server(tmp_path_factory.mktemp("recovery") / "tako", signer)


@pytest.fixture(scope="module")
def bucket(seaweedfs: SeaweedFS) -> Iterator[str]:
    yield from seaweedfs.leased_bucket()


def settings_for(seaweedfs: SeaweedFS, bucket: str, keys: list[Any] | None = None) -> BackupBinding:
    return binding(storage(bucket=bucket, endpoint=seaweedfs.endpoint, access_key=seaweedfs.access_key,
                           secret_key=seaweedfs.secret_key), keys=keys)


def rpc(server: RunningServer, signer: FileSigner, command: str, **fields: Any) -> Any:
    with server.client(signer) as client:
        return client.call(command, fields)


def rpc_reply(server: RunningServer, signer: FileSigner, command: str, **fields: Any) -> dict[str, Any]:
    with server.client(signer) as client:
        return client.call_reply(command, fields)


def live_dir(server: RunningServer, name: str) -> Path:
    return server.data_dir / "apps" / name / "production" / "data"


def digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def listed(server: RunningServer, signer: FileSigner, app: str) -> list[BackupInfo]:
    return [BackupInfo.from_dict(b) for b in rpc(server, signer, "list_backups", app=app)["backups"]]


def deployed_tree(server: RunningServer, signer: FileSigner, app: str, settings: BackupBinding) -> Path:
    """Deploy ``app`` without a process, put the test tree in its live data, back it up."""
    rpc(server, signer, "deploy", app=app, backup=settings.to_dict(), runtime=None)
    live = live_dir(server, app.split("/")[0])
    make_tree(live)
    return live


def test_drills_record_the_recovery_time_and_catch_a_damaged_archive(
        server: RunningServer, signer: FileSigner, seaweedfs: SeaweedFS, bucket: str) -> None:
    app, settings = "drill/production", settings_for(seaweedfs, bucket)
    deployed_tree(server, signer, app, settings)
    made = BackupInfo.from_dict(rpc(server, signer, "backup_now", app=app))
    both = listed(server, signer, app)
    [post_deploy] = [b for b in both if b.id != made.id]
    assert made in both and made.extras is not None and post_deploy.extras is not None
    assert (made.extras.reason, post_deploy.extras.reason, made.extras.files) == ("manual", "post-deploy", 4)
    assert made.extras.sqlite_files == ["app/notes.db", "tako/workflows.sqlite"]

    drill = rpc(server, signer, "drill_backup", app=app)  # the newest: the index's first entry
    assert (drill["backup_id"], drill["ok"], set(drill)) == (both[0].id, True,
                                                             {"backup_id", "at_unix_secs", "seconds", "ok"})
    assert 0 < drill["seconds"] < 30
    status = rpc(server, signer, "backup_status", app=app)
    assert (status["last_drill"], status["last_ok_drill"]) == (drill, drill)
    assert (status["overdue"], status["index_rebuilt"]) == (False, False)
    assert status["last_backup"] == both[0].to_dict()
    older = rpc(server, signer, "drill_backup", app=app, backup_id=post_deploy.id)
    assert (older["backup_id"], older["ok"]) == (post_deploy.id, True)

    store = S3Store.from_binding(settings.storage)
    archive = bytearray(store.get_bytes(made.archive_key))
    archive[len(archive) // 2] ^= 0x40
    store.put_bytes(made.archive_key, bytes(archive))
    failed = rpc(server, signer, "drill_backup", app=app, backup_id=made.id)
    assert (failed["ok"], failed["message"]) == (False, "Downloaded backup checksum did not match manifest.")
    status = rpc(server, signer, "backup_status", app=app)
    assert (status["last_drill"], status["last_ok_drill"]) == (failed, older)
    with pytest.raises(ServerReplyError) as missing:
        rpc(server, signer, "drill_backup", app=app, backup_id="b1710000000-AbCdEf12")
    assert missing.value.reply_message == "Backup not found: b1710000000-AbCdEf12"
    assert list((server.data_dir / "tmp" / "drills").iterdir()) == []
    with pytest.raises(ServerReplyError) as none_yet:
        rpc(server, signer, "drill_backup", app="never/production")
    assert none_yet.value.reply_message == "Backups are not configured for never/production."


def test_a_preview_shows_what_a_restore_would_change_and_changes_nothing(
        server: RunningServer, signer: FileSigner, seaweedfs: SeaweedFS, bucket: str) -> None:
    app = "preview/production"
    live = deployed_tree(server, signer, app, settings_for(seaweedfs, bucket))
    made = rpc(server, signer, "backup_now", app=app)
    sql(live / "app" / "notes.db", "DELETE FROM notes WHERE id > 25")
    (live / "app" / "uploads" / "a.txt").write_text("edited upload\n")
    (live / "app" / "uploads" / "b.bin").unlink()
    (live / "app" / "later.txt").write_text("written after the backup\n")
    before = digests(live)

    preview = rpc(server, signer, "restore_preview", app=app, backup_id=made["id"])
    assert preview["app"] == app and preview["backup"] == made
    assert preview["added"] == [{"path": "app/uploads/b.bin", "size_before": None, "size_after": 2048}]
    assert preview["removed"] == [{"path": "app/later.txt", "size_before": 25, "size_after": None}]
    assert [c["path"] for c in preview["changed"]] == ["app/notes.db", "app/uploads/a.txt"]
    assert preview["counts"] == {"added": 1, "removed": 1, "changed": 2, "unchanged": 1}
    assert preview["tables"] == [
        {"file": "app/notes.db", "table": "notes", "before": 25, "after": 40, "delta": 15},
        {"file": "app/notes.db", "table": "tags", "before": 2, "after": 2, "delta": 0}]
    assert digests(live) == before
    assert list((server.data_dir / "tmp" / "restore").iterdir()) == []
    with pytest.raises(ServerReplyError) as unknown:
        rpc(server, signer, "restore_preview", app=app, backup_id="nonsense")
    assert unknown.value.reply_message == (
        "'nonsense' is not a backup id (expected b<unix seconds>-<8 chars>, see `tako backups list`).")


def kept_in_bucket(server: RunningServer, signer: FileSigner, app: str) -> dict[str, Any]:
    """Wait until the app's kept tree is in the bucket (its upload verified); its status entry."""
    def verified() -> bool:
        kept = rpc(server, signer, "backup_status", app=app).get("kept_tree")
        return kept is not None and kept["upload"] == "verified"

    wait_for(verified, "the kept tree to upload and verify")
    kept: dict[str, Any] = rpc(server, signer, "backup_status", app=app)["kept_tree"]
    return kept


def test_restores_keep_the_replaced_tree_that_undo_swaps_back(
        server: RunningServer, signer: FileSigner, seaweedfs: SeaweedFS, bucket: str, tmp_path: Path) -> None:
    app = "notes/production"
    settings = settings_for(seaweedfs, bucket)
    rpc(server, signer, "deploy", app=app, backup=settings.to_dict(), runtime=NOTES_RUNTIME)
    live = live_dir(server, "notes") / "app"
    wait_for(lambda: len(notes(live / "notes.db")) >= 25, "the notes app to write rows")
    first = rpc(server, signer, "backup_now", app=app)
    saved = len(notes(live / "notes.db"))
    wait_for(lambda: len(notes(live / "notes.db")) > saved + 40, "more rows after the backup")
    (live / "after-backup.txt").write_text("kept by the safety copy\n")
    pids = app_pids(live)

    reply = rpc_reply(server, signer, "restore_backup", app=app, backup_id=first["id"])
    assert reply["data"] == first and set(reply) == {"status", "data", "safety_backup", "downtime_seconds"}
    assert reply["safety_backup"]["status"] == "kept" and reply["downtime_seconds"] >= 0
    assert not (live / "after-backup.txt").exists()
    assert app_pids(live) != pids and len(app_pids(live)) == 1
    assert integrity(live / "notes.db") == "ok"
    kept_dir = server.data_dir / "kept" / "notes.production" / "aside" / "app"
    assert (kept_dir / "after-backup.txt").read_text() == "kept by the safety copy\n"

    kept = kept_in_bucket(server, signer, app)  # uploaded in the background, then read back
    safety = next(b for b in listed(server, signer, app) if b.id == kept["backup_id"])
    assert safety.extras is not None and safety.extras.reason == "pre-restore"
    assert kept["replaced_by"] == first["id"]
    assert "app/after-backup.txt" in restored_files(settings, safety, tmp_path / "safety")

    undone = rpc_reply(server, signer, "undo_restore", app=app)  # two renames: the kept tree goes back
    assert undone["data"] == {"source": "kept", "kept_at_unix_secs": kept["kept_at_unix_secs"],
                              "replaced_by": first["id"], "backup_id": safety.id}
    assert undone["safety_backup"]["status"] == "kept"
    assert (live / "after-backup.txt").read_text() == "kept by the safety copy\n"
    assert len(notes(live / "notes.db")) > saved + 40  # the rows written after the first backup are back
    assert integrity(live / "notes.db") == "ok"
    wait_for(lambda: len(app_pids(live)) == 1, "the app to run again after undo")
    assert not (kept_dir / "after-backup.txt").exists()  # the restored tree is the kept one now

    again = rpc_reply(server, signer, "undo_restore", app=app)  # the undo can be undone
    assert again["data"]["source"] == "kept" and again["data"]["replaced_by"] == "undo"
    assert not (live / "after-backup.txt").exists()
    kept_in_bucket(server, signer, app)

    count = len(listed(server, signer, app))
    plain = rpc_reply(server, signer, "restore_backup", app=app, backup_id=first["id"], safety_backup=False)
    assert plain["safety_backup"] == {"status": "none"} and len(listed(server, signer, app)) == count
    assert "kept_tree" not in rpc(server, signer, "backup_status", app=app)  # the older kept tree is dropped
    with pytest.raises(ServerReplyError) as nothing:
        rpc(server, signer, "undo_restore", app="preview/production")
    assert nothing.value.reply_message == (
        "App 'preview/production' has no kept tree and no pre-restore backup to go back to: restores keep "
        "one unless --no-safety-backup is passed.")


def restored_files(settings: BackupBinding, info: BackupInfo, dest: Path) -> list[str]:
    """The files of ``info`` (downloaded and extracted, checked)."""
    from tests.security.server_proc import extract_backup

    tree = extract_backup(settings, info.to_dict(), dest)
    return sorted(str(p.relative_to(tree)) for p in tree.rglob("*") if p.is_file())


def test_a_missing_or_unreadable_index_is_rebuilt_and_said_so(
        server: RunningServer, signer: FileSigner, seaweedfs: SeaweedFS, bucket: str) -> None:
    app, settings = "heal/production", settings_for(seaweedfs, bucket)
    deployed_tree(server, signer, app, settings)
    rpc(server, signer, "backup_now", app=app)
    store, key = S3Store.from_binding(settings.storage), index_key(backup_prefix("heal", "production", "la"))
    good = BackupIndex.from_json(store.get_bytes(key))
    assert len(good.backups) == 2

    store.delete(key)
    healed = rpc(server, signer, "list_backups", app=app)
    assert (healed["index_rebuilt"], healed["backups"]) == (True, [b.to_dict() for b in good.backups])
    assert BackupIndex.from_json(store.get_bytes(key)) == good  # written back
    assert rpc(server, signer, "list_backups", app=app)["index_rebuilt"] is False

    store.put_bytes(key, b"{ not an index")
    status = rpc(server, signer, "backup_status", app=app)
    assert (status["index_rebuilt"], status["last_backup"]) == (True, good.backups[0].to_dict())
    store.put_bytes(key, b"{ not an index")
    rebuilt = rpc(server, signer, "reindex", app=app)
    assert rebuilt == {"app": app, "backups": [b.to_dict() for b in good.backups], "index_rebuilt": True,
                       "previous": "unreadable"}
    assert rpc(server, signer, "reindex", app=app)["previous"] == "ok"


def test_reencryption_moves_every_backup_to_the_active_key(
        server: RunningServer, signer: FileSigner, seaweedfs: SeaweedFS, bucket: str) -> None:
    app, old_key, new_key = "rekey/production", new_backup_key(), new_backup_key()
    old_settings = settings_for(seaweedfs, bucket, [old_key])
    live = deployed_tree(server, signer, app, old_settings)
    made = rpc(server, signer, "backup_now", app=app)
    before = listed(server, signer, app)
    wanted = digests(live / "app" / "uploads")
    store = S3Store.from_binding(old_settings.storage)
    prefix = backup_prefix("rekey", "production", "la")

    only_new = settings_for(seaweedfs, bucket, [new_key])
    with pytest.raises(ServerReplyError) as lost:
        rpc(server, signer, "reencrypt_backups", app=app, backup=only_new.to_dict())
    assert lost.value.reply_message == (
        f"Re-encrypted 0 of 2 backups of app '{app}'; backup {before[0].id} failed: "
        f"Backup {before[0].id} was "
        f"encrypted with key '{old_key.id}', which is not among the backup keys available ({new_key.id}); "
        "add the old key back to the env's backup_keys.")

    rotated = settings_for(seaweedfs, bucket, [old_key, new_key])
    done = rpc(server, signer, "reencrypt_backups", app=app, backup=rotated.to_dict())
    after = listed(server, signer, app)
    assert (done["app"], done["key_id"], done["unchanged"]) == (app, new_key.id, 0)
    moved = {d["from"]: d["to"] for d in done["reencrypted"]}
    assert sorted(moved) == sorted(b.id for b in before)
    assert sorted(moved.values()) == sorted(b.id for b in after)
    assert {d["key_id"] for d in done["reencrypted"]} == {old_key.id}
    created = {b.id: b.created_at_unix_secs for b in after}
    assert all(created[moved[b.id]] == b.created_at_unix_secs for b in before)
    assert {b.encryption.key_id for b in after} == {new_key.id}
    assert all(a.extras is not None and a.extras.reason == "reencrypt" for a in after)
    assert sorted(o.key for o in store.list(prefix)) == sorted(
        [f"{prefix}index.json"] + [k for b in after for k in (b.archive_key, b.manifest_key)])
    again = rpc(server, signer, "reencrypt_backups", app=app, backup=only_new.to_dict())
    assert (again["reencrypted"], again["unchanged"]) == ([], 2)

    (live / "app" / "uploads" / "a.txt").write_text("damaged after the rotation\n")
    rpc(server, signer, "restore_backup", app=app, backup_id=moved[made["id"]], safety_backup=False)
    assert digests(live / "app" / "uploads") == wanted
    assert len(notes(live / "app" / "notes.db")) == 40


def test_the_new_commands_need_a_signature(server: RunningServer) -> None:
    url = f"http://127.0.0.1:{server.port}/rpc"
    for command in NEW_COMMANDS:
        reply = httpx.post(url, json={"command": command, "app": "drill/production", "backup_id": "x"},
                           timeout=10)
        assert (reply.status_code, reply.content) == (
            401, b'{"status":"error","message":"management auth required"}'), command
