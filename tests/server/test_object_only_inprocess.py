"""The server with credentials that may not list the bucket (in-process, on a MemoryStore that
refuses listings): every command works from the index, and a reply says once, next to Tako's
``data``, that self-healing is off."""

from __future__ import annotations

import logging

import pytest

from tako_backups.core.layout import backup_prefix, index_key
from tako_backups.remote.signing import FileSigner
from tako_backups.server.paths import ServerPaths
from tako_backups.server.service import BackupService
from tako_backups.storage.memory import MemoryStore
from tests.server.helpers import APP, binding
from tests.server.test_rpc_inprocess import call, seed_live_data
from tests.support.asgi import AsgiClient

PREFIX = backup_prefix("demo", "production", "la")
NOTE = "Self-healing is off for bucket 'backups': listing is denied to these credentials."


@pytest.fixture
def memory_store() -> MemoryStore:
    return MemoryStore(deny_list=True)


def test_backup_list_status_download_restore_drill_deploy_without_listing(
        client: AsgiClient, signer: FileSigner, memory_store: MemoryStore, paths: ServerPaths,
        service: BackupService, caplog: pytest.LogCaptureFixture) -> None:
    data = seed_live_data(paths)
    settings = binding()
    with caplog.at_level(logging.WARNING, logger="tako_backups.server.notes"):
        created = call(client, signer, "backup_now", app=APP, backup=settings.to_dict()).json()
    assert created["notes"] == [NOTE]
    assert sorted(created) == ["data", "notes", "status"] and created["data"]["server"] == "la"
    denied_logs = [r for r in caplog.records if "is denied" in r.getMessage()]
    assert len(denied_logs) == 1  # one log line for the run, though cleanup and merge both skipped
    info = created["data"]

    listed = call(client, signer, "list_backups", app=APP).json()
    assert listed == {"status": "ok", "data": {"app": APP, "backups": [info], "index_rebuilt": False}}
    status = call(client, signer, "backup_status", app=APP).json()
    assert status["data"]["last_backup"] == info and "notes" not in status
    link = call(client, signer, "backup_download_url", app=APP, backup_id=info["id"]).json()
    assert link["data"]["backup"] == info and "notes" not in link
    drill = call(client, signer, "drill_backup", app=APP).json()
    assert drill["data"]["ok"] is True and drill["data"]["backup_id"] == info["id"]

    (data / "app" / "uploads" / "a.txt").write_text("changed")
    restored = call(client, signer, "restore_backup", app=APP, backup_id=info["id"]).json()
    # the replaced tree is kept and uploaded in the background, after the reply: no note here
    assert restored["data"] == info and "notes" not in restored
    assert (data / "app" / "uploads" / "a.txt").read_text() == "first upload\n"
    assert service.safety.wait(APP, 30)

    deployed = call(client, signer, "deploy", app=APP, backup=settings.to_dict()).json()
    assert deployed["data"]["backup"]["status"] == "created" and deployed["notes"] == [NOTE]

    index = call(client, signer, "list_backups", app=APP).json()["data"]["backups"]
    named = {k for b in index for k in (b["archive_key"], b["manifest_key"])}
    assert named | {index_key(PREFIX)} == set(memory_store.objects)  # no orphans


def test_a_lost_index_lists_as_empty_with_the_note(client: AsgiClient, signer: FileSigner,
                                                   memory_store: MemoryStore) -> None:
    call(client, signer, "backup_now", app=APP, backup=binding().to_dict())
    memory_store.delete(index_key(PREFIX))
    listed = call(client, signer, "list_backups", app=APP).json()
    assert listed == {"status": "ok", "data": {"app": APP, "backups": [], "index_rebuilt": False},
                      "notes": [NOTE]}
    status = call(client, signer, "backup_status", app=APP).json()
    assert status["data"]["last_backup"] is None and status["notes"] == [NOTE]
    reindexed = call(client, signer, "reindex", app=APP)
    assert reindexed.status_code == 400
    assert reindexed.json()["message"] == (
        "Cannot rebuild the index of app 'demo/production' from its manifests: listing bucket 'backups' is "
        "denied to these credentials.")


def test_no_note_when_the_bucket_can_be_listed(client: AsgiClient, signer: FileSigner,
                                               memory_store: MemoryStore) -> None:
    memory_store.deny_list = False
    created = call(client, signer, "backup_now", app=APP, backup=binding().to_dict()).json()
    assert sorted(created) == ["data", "status"]
    memory_store.delete(index_key(PREFIX))
    listed = call(client, signer, "list_backups", app=APP).json()
    assert sorted(listed) == ["data", "status"] and listed["data"]["index_rebuilt"] is True


def test_a_refused_upload_listing_alone_is_noted_too(client: AsgiClient, signer: FileSigner,
                                                     memory_store: MemoryStore) -> None:
    memory_store.deny_list, memory_store.deny_list_uploads = False, True
    created = call(client, signer, "backup_now", app=APP, backup=binding().to_dict()).json()
    assert created["notes"] == [NOTE]
