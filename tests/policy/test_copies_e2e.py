"""The second copy for real: a `tako-server serve`, two SeaweedFS processes (the copy's is stopped
in the middle of a backup, or the primary bucket is wiped) and a loopback webhook receiver."""

from __future__ import annotations

import hashlib
import io
import json
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from tako_backups.core.pipeline import restore_into
from tako_backups.core.verify import verify_backup
from tako_backups.models import BackupInfo
from tako_backups.policy import BackupPolicy
from tako_backups.remote.client import ServerReplyError
from tako_backups.remote.signing import FileSigner
from tako_backups.storage.s3 import S3Store
from tests.policy.conftest import weed_down
from tests.policy.support import (
    SECRET,
    TAKO_MANIFEST,
    call,
    digests,
    index_of,
    objects,
    prefix_of,
    put,
    seed_app,
    settings_for,
    storage_of,
    wipe,
)
from tests.support.s3_servers import SeaweedFS
from tests.support.tako_server import RunningServer
from tests.support.waiting import wait_for
from tests.support.webhooks import Receiver

pytestmark = pytest.mark.slow

TIERS = BackupPolicy(every=3_600, keep_hourly=24, keep_daily=30, keep_monthly=12)


def test_each_backup_lands_in_both_buckets_in_tako_s_format(
        server: RunningServer, signer: FileSigner, seaweedfs: SeaweedFS, copy_weed: SeaweedFS,
        primary_bucket: str, copy_bucket: str, tmp_path: Path) -> None:
    name = "twins"
    seed_app(server, name)
    settings = settings_for(storage_of(seaweedfs, primary_bucket), storage_of(copy_weed, copy_bucket), TIERS)
    finalized = call(server, signer, "deploy", app=f"{name}/production", backup=settings.to_dict(),
                     runtime=None)["data"]
    assert finalized["backup"]["status"] == "created"
    assert finalized["backup"]["copy"] == {"bucket": copy_bucket, "status": "ok", "state": "ok"}
    reply = call(server, signer, "backup_now", app=f"{name}/production")
    assert reply["copy"] == {"bucket": copy_bucket, "status": "ok", "state": "ok"}

    prefix = prefix_of(name)
    primary, copy = objects(seaweedfs, primary_bucket, prefix), objects(copy_weed, copy_bucket, prefix)
    assert digests(primary) == digests(copy)  # same archives, same manifests, same index
    ids = [finalized["backup"]["id"], reply["data"]["id"]]
    assert sorted(primary) == sorted([f"{prefix}index.json"] + [f"{prefix}{i}{s}" for i in ids
                                                                for s in (".tar.zst.enc", ".json")])
    for bucket_objects in (primary, copy):
        index = json.loads(bucket_objects[f"{prefix}index.json"])
        assert list(index) == ["version", "backups"] and index["version"] == 1
        assert sorted(b["id"] for b in index["backups"]) == sorted(ids)
        for backup_id in ids:
            manifest = json.loads(bucket_objects[f"{prefix}{backup_id}.json"])
            assert list(manifest) == [*TAKO_MANIFEST, "extras"]
            archive = bucket_objects[manifest["archive_key"]]
            assert (len(archive), hashlib.sha256(archive).hexdigest()) == (manifest["size_bytes"],
                                                                           manifest["sha256_hex"])

    key = settings.backup_keys[0]
    copy_store = S3Store.from_binding(storage_of(copy_weed, copy_bucket))
    restored = restore_into(copy_store, BackupInfo.from_dict(reply["data"]), [key], tmp_path / "staged")
    assert (restored.tree / "app" / "uploads" / "a.txt").read_text() == "the first upload of twins\n"

    status = call(server, signer, "backup_status", app=f"{name}/production")["data"]
    assert status["policy_text"] == "every 1h, keeps 24 hourly, 30 daily, 12 monthly"
    assert status["retention_days"] == 30
    copy_state = status["copy"]
    assert (copy_state["bucket"], copy_state["state"], copy_state["missing"]) == (copy_bucket, "ok", [])


def test_a_copy_that_goes_away_mid_backup_is_reported_and_synced_after(
        server: RunningServer, signer: FileSigner, seaweedfs: SeaweedFS, copy_weed: SeaweedFS,
        primary_bucket: str, copy_bucket: str, receiver: Receiver) -> None:
    name, app = "lagging", "lagging/production"
    seed_app(server, name, big_mb=64)
    settings = settings_for(storage_of(seaweedfs, primary_bucket), storage_of(copy_weed, copy_bucket), TIERS,
                            webhook=receiver.url)
    first = call(server, signer, "backup_now", app=app, backup=settings.to_dict())
    assert first["copy"]["status"] == "ok"

    replies: list[dict[str, Any]] = []
    backup = threading.Thread(target=lambda: replies.append(call(server, signer, "backup_now", app=app)))
    uploads = copy_weed.client()
    backup.start()
    wait_for(lambda: uploads.list_multipart_uploads(Bucket=copy_bucket).get("Uploads"),
             "the copy's multipart upload to start", timeout=60)
    with weed_down(copy_weed):  # the copy's provider goes away mid-stream
        backup.join(300)
        assert not backup.is_alive()
        [second] = replies
        assert second["status"] == "ok"
        assert second["copy"]["status"] == "failed" and second["copy"]["state"] == "lagging"
        new_id = second["data"]["id"]
        status = call(server, signer, "backup_status", app=app)["data"]
        assert status["copy"]["state"] == "lagging" and status["copy"]["missing"] == [new_id]
        listed = call(server, signer, "list_backups", app=app)["data"]
        assert listed["copy"]["missing"] == [new_id]
        assert [b["id"] for b in listed["backups"]][0] == new_id  # the primary has it
        wait_for(lambda: receiver.events(SECRET), "the copy_lagging webhook", timeout=30)
        [event] = receiver.events(SECRET)
        assert (event["event"], event["app"], event["env"], event["backup_id"]) == (
            "copy_lagging", name, "production", new_id)
        assert event["error"].startswith(f"The copy in bucket {copy_bucket} lags behind: ")
        down = f"Cannot connect to storage endpoint {copy_weed.endpoint}"
        with pytest.raises(ServerReplyError, match=down):
            call(server, signer, "sync_copies", app=app)  # still down: it says so

    synced = call(server, signer, "sync_copies", app=app)["data"]
    assert synced["copied"] == [new_id] and synced["failed"] == [] and synced["already"] == 1
    assert synced["copy"]["state"] == "ok"
    prefix = prefix_of(name)
    primary, copy = objects(seaweedfs, primary_bucket, prefix), objects(copy_weed, copy_bucket, prefix)
    assert digests(primary) == digests(copy)
    assert index_of(copy_weed, copy_bucket, prefix)["version"] == 1
    assert call(server, signer, "backup_status", app=app)["data"]["copy"]["state"] == "ok"
    again = call(server, signer, "sync_copies", app=app)["data"]
    assert (again["copied"], again["already"]) == ([], 2)


def test_reads_fall_back_to_the_copy_and_say_so(
        server: RunningServer, signer: FileSigner, seaweedfs: SeaweedFS, copy_weed: SeaweedFS,
        primary_bucket: str, copy_bucket: str, tmp_path: Path) -> None:
    name, app = "fallback", "fallback/production"
    live = seed_app(server, name)
    settings = settings_for(storage_of(seaweedfs, primary_bucket), storage_of(copy_weed, copy_bucket), TIERS)
    older = call(server, signer, "backup_now", app=app, backup=settings.to_dict())["data"]
    (live / "app" / "uploads" / "a.txt").write_text("changed after the backup\n")
    newer = call(server, signer, "backup_now", app=app)["data"]

    # A damaged object on the primary: its checksum fails, the copy restores.
    archive = bytearray(seaweedfs.client().get_object(Bucket=primary_bucket, Key=older["archive_key"])
                        ["Body"].read())
    archive[len(archive) // 2] ^= 0xFF
    put(seaweedfs, primary_bucket, older["archive_key"], bytes(archive))
    restored = call(server, signer, "restore_backup", app=app, backup_id=older["id"], safety_backup=False)
    assert (restored["source"], restored["source_bucket"]) == ("copy", copy_bucket)
    assert restored["fallback_reason"].startswith(f"primary (bucket {primary_bucket}): ")
    assert "checksum did not match" in restored["fallback_reason"]
    assert (live / "app" / "uploads" / "a.txt").read_text() == "the first upload of fallback\n"
    drilled = call(server, signer, "drill_backup", app=app, backup_id=older["id"])["data"]
    assert (drilled["ok"], drilled["source"]) == (True, "copy")
    assert "checksum did not match" in drilled["message"]

    # The primary bucket is wiped: every read uses the copy.
    wipe(seaweedfs, primary_bucket)
    restored = call(server, signer, "restore_backup", app=app, backup_id=newer["id"], safety_backup=False)
    assert restored["data"] == newer and restored["source"] == "copy"
    assert (live / "app" / "uploads" / "a.txt").read_text() == "changed after the backup\n"
    link = call(server, signer, "backup_download_url", app=app, backup_id=newer["id"])["data"]
    assert (link["source"], link["source_bucket"], link["backup"]) == ("copy", copy_bucket, newer)
    assert link["url"].startswith(copy_weed.endpoint)
    archive_bytes = httpx.get(link["url"], timeout=30).raise_for_status().content
    assert hashlib.sha256(archive_bytes).hexdigest() == newer["sha256_hex"]
    newest = max(older, newer, key=lambda b: (b["created_at_unix_secs"], b["id"]))  # Tako's order
    newest_drill = call(server, signer, "drill_backup", app=app)["data"]  # the primary's index is gone too
    assert (newest_drill["backup_id"], newest_drill["ok"]) == (newest["id"], True)
    assert newest_drill["source"] == "copy"
    asked = call(server, signer, "backup_download_url", app=app, backup_id=newer["id"], source="copy")["data"]
    assert asked["source"] == "copy" and "fallback_reason" not in asked
    report = verify_backup(io.BytesIO(archive_bytes), BackupInfo.from_dict(newer), settings.backup_keys,
                           tmp_path / "verify")  # what the copy's download holds restores
    assert report.files == 2 and report.sqlite_files == ["app/notes.db"]


