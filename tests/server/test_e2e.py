"""End to end: a real `tako-server serve`, a real SeaweedFS bucket and the notes app running.

deploy -> backup_now -> list_backups -> backup_status -> backup_download_url -> restore_backup,
a tampered archive, two restores at once, and a clean stop on SIGTERM.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tako_backups.core.verify import extract_verified
from tako_backups.models import BackupBinding, BackupInfo
from tako_backups.remote.client import ServerReplyError
from tako_backups.remote.signing import FileSigner
from tests.server.helpers import binding, storage
from tests.support.s3_servers import SeaweedFS
from tests.support.sqlite_checks import integrity
from tests.support.tako_server import (
    APP_PYTHON,
    NOTES_RUNTIME,
    RunningServer,
    app_pids,
    notes,
    running_server,
    start_server,
)
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

# An app that takes a second to stop on SIGTERM: a restore holds its lock at least that long.
SLOW_STOP_APP = ("import signal, sys, time\n"
                 "signal.signal(signal.SIGTERM, lambda *a: (time.sleep(1.5), sys.exit(0)))\n"
                 "while True: time.sleep(0.1)\n")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, signer: FileSigner) -> Iterator[RunningServer]:
    yield from running_server(tmp_path_factory.mktemp("e2e") / "tako", signer)


@pytest.fixture(scope="module")
def settings(seaweedfs: SeaweedFS) -> Iterator[BackupBinding]:
    bucket = seaweedfs.lease_bucket()
    yield binding(storage(bucket=bucket, endpoint=seaweedfs.endpoint, access_key=seaweedfs.access_key,
                          secret_key=seaweedfs.secret_key))
    seaweedfs.release_bucket(bucket)


def app_dir(server: RunningServer, name: str) -> Path:
    return server.data_dir / "apps" / name / "production" / "data" / "app"


def deploy(server: RunningServer, signer: FileSigner, app: str, settings: BackupBinding | None,
           runtime: dict[str, Any] | None = NOTES_RUNTIME) -> dict[str, Any]:
    with server.client(signer) as client:
        return client.call("deploy", {"app": app, "backup": None if settings is None else settings.to_dict(),
                                      "runtime": runtime})  # type: ignore[no-any-return]


def test_deploy_backup_list_status_download_restore(server: RunningServer, signer: FileSigner,
                                                    settings: BackupBinding, tmp_path: Path) -> None:
    app, live = "notes/production", app_dir(server, "notes")
    finalized = deploy(server, signer, app, settings)
    assert finalized["status"] == "finalized"
    assert finalized["backup"]["status"] == "created" and finalized["backup"]["size_bytes"] > 0
    assert (live.parent.stat().st_mode & 0o777) == 0o710
    wait_for(lambda: len(notes(live / "notes.db")) >= 25, "the notes app to write rows")

    with server.client(signer) as client:
        info = client.call("backup_now", {"app": app, "backup": None})
        assert (info["app"], info["environment"], info["server"]) == ("notes", "production", "la")
        listed = client.call("list_backups", {"app": app})
        assert listed["app"] == app
        assert {b["id"] for b in listed["backups"]} == {info["id"], finalized["backup"]["id"]}
        assert info in listed["backups"]
        newest = max(listed["backups"], key=lambda b: (b["created_at_unix_secs"], b["id"]))
        assert listed["backups"][0] == newest
        status = client.call("backup_status", {"app": app})
        assert status == {"app": app, "enabled": True, "retention_days": 30, "last_backup": newest,
                          "next_backup_at_unix_secs": newest["created_at_unix_secs"] + 86_400,
                          "last_drill": None, "last_ok_drill": None, "overdue": False,
                          "overdue_after_seconds": 133_200, "index_rebuilt": False}
        link = client.call("backup_download_url", {"app": app, "backup_id": info["id"]})
    assert (link["backup"], link["expires_in_seconds"]) == (info, 900)
    archive = httpx.get(link["url"], timeout=30).raise_for_status().content
    assert len(archive) == info["size_bytes"]
    assert hashlib.sha256(archive).hexdigest() == info["sha256_hex"]
    backed_up = tmp_path / "backed-up"
    backed_up.mkdir()
    extract_verified(io.BytesIO(archive), BackupInfo.from_dict(info), settings.backup_keys, backed_up)
    saved_rows = notes(backed_up / "app" / "notes.db")
    uploads = sorted((backed_up / "app" / "uploads").glob("note-*.txt"))
    assert len(saved_rows) >= 25 and uploads

    pids_before = app_pids(live)
    assert len(pids_before) == 1
    (live / "uploads" / uploads[0].name).write_text("garbage\n")
    (live / "garbage.bin").write_bytes(os.urandom(4096))

    with server.client(signer) as client:
        assert client.call("restore_backup", {"app": app, "backup_id": info["id"]}) == info

    pids_after = app_pids(live)
    assert len(pids_after) == 1 and pids_after != pids_before, "the app was not restarted around the swap"
    assert not set(pids_before) & set(pids_after)
    assert not (live / "garbage.bin").exists()
    assert (live / "uploads" / uploads[0].name).read_bytes() == uploads[0].read_bytes()
    assert integrity(live / "notes.db") == "ok"
    assert notes(live / "notes.db", limit=len(saved_rows)) == saved_rows
    wait_for(lambda: len(notes(live / "notes.db")) > len(saved_rows) + 5, "the restored app to write again")
    assert app_pids(live) == pids_after
    assert list((server.data_dir / "tmp" / "restore").iterdir()) == []


def test_tampered_archive_restore_leaves_live_data_and_app(server: RunningServer, signer: FileSigner,
                                                          settings: BackupBinding,
                                                          seaweedfs: SeaweedFS) -> None:
    app, live = "tamper/production", app_dir(server, "tamper")
    created = deploy(server, signer, app, settings)["backup"]
    assert created["status"] == "created"
    with server.client(signer) as client:
        info = client.call("backup_download_url", {"app": app, "backup_id": created["id"]})["backup"]
    s3 = seaweedfs.client()
    data = bytearray(s3.get_object(Bucket=settings.storage.bucket, Key=info["archive_key"])["Body"].read())
    data[len(data) // 2] ^= 0xFF
    s3.put_object(Bucket=settings.storage.bucket, Key=info["archive_key"], Body=bytes(data))
    wait_for(lambda: len(notes(live / "notes.db")) >= 5, "the notes app to write rows")
    (live / "marker.txt").write_text("live data\n")
    pids = app_pids(live)
    assert len(pids) == 1

    with server.client(signer) as client, pytest.raises(ServerReplyError) as failure:
        client.call("restore_backup", {"app": app, "backup_id": created["id"]})
    assert str(failure.value) == "Server 'la': Downloaded backup checksum did not match manifest."
    assert (live / "marker.txt").read_text() == "live data\n"
    assert app_pids(live) == pids
    assert list((server.data_dir / "tmp" / "restore").iterdir()) == []


def test_second_restore_while_one_runs_is_refused(server: RunningServer, signer: FileSigner,
                                                  settings: BackupBinding) -> None:
    app, live = "busy/production", app_dir(server, "busy")
    slow = {"start": [APP_PYTHON, "-c", SLOW_STOP_APP], "instances": 1}
    assert deploy(server, signer, app, None, runtime=slow)["backup"] == {"status": "disabled"}
    (live / "big.bin").write_bytes(os.urandom(1 << 20))
    with server.client(signer) as client:
        info = client.call("backup_now", {"app": app, "backup": settings.to_dict()})
    outcome: dict[str, Any] = {}

    def first_restore() -> None:
        with server.client(signer) as client:
            try:
                outcome["data"] = client.call("restore_backup", {"app": app, "backup_id": info["id"]})
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                outcome["error"] = exc

    staging = server.data_dir / "tmp" / "restore"
    thread = threading.Thread(target=first_restore)
    thread.start()
    try:
        wait_for(lambda: any(staging.iterdir()) or not thread.is_alive(), "the first restore to start")
        with server.client(signer) as client, pytest.raises(ServerReplyError) as refused:
            client.call("restore_backup", {"app": app, "backup_id": info["id"]})
    finally:
        thread.join(timeout=120)
    assert str(refused.value) == (
        "Server 'la': A backup or restore of app 'busy/production' is already running.")
    assert outcome == {"data": info}
    assert (live / "big.bin").stat().st_size == 1 << 20
    assert len(app_pids(live)) == 1


def test_sigterm_stops_server_and_apps(tmp_path: Path, signer: FileSigner) -> None:
    running = start_server(tmp_path / "tako", signer)
    try:
        assert deploy(running, signer, "stop/production", None)["backup"] == {"status": "disabled"}
        live = app_dir(running, "stop")
        wait_for(lambda: len(notes(live / "notes.db")) >= 3, "the notes app to write rows")
        pids = app_pids(live)
        assert len(pids) == 1
    finally:
        code = running.terminate(timeout=15)
    assert code == 0, running.log_tail()
    assert app_pids(live) == []
    assert "tako-server stopped" in running.log_tail()
