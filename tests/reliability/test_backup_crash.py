"""kill -9 a real `tako-server` at each step of a backup; the restarted server recovers.

The fault proxy holds one request of the backup (an archive part, the manifest, the index) so
the server is killed exactly there. After a restart: the scratch folder of the dead run is gone,
the next backup succeeds, its cleanup aborts the dead run's multipart upload and deletes an
archive that never got a manifest, and every index entry names whole objects that restore.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tako_backups.core import layout
from tako_backups.core.pipeline import restore_into
from tako_backups.models import BackupBinding, BackupInfo
from tako_backups.remote.signing import FileSigner
from tako_backups.storage.s3 import S3Store
from tests.reliability.checks import (
    FIGURES,
    INDEX_CHECKED,
    RESTORED,
    SLOWDOWNS,
    VERIFIED,
    archives_without_manifest,
    figures_so_far,
    file_digests,
    make_tree,
    objects,
    pending_uploads,
    sound_index,
)
from tests.reliability.faultproxy import Fault, FaultProxy
from tests.reliability.serverproc import RunningServer, kill_9, restart_server, start_server
from tests.server.helpers import binding, storage
from tests.support.s3_servers import SeaweedFS
from tests.support.sqlite_checks import integrity

pytestmark = pytest.mark.slow

APP = "demo/production"
PREFIX = layout.backup_prefix("demo", "production", "la")
BIG = 20 * 1024 * 1024  # more than one 16 MiB part, so the archive is a multipart upload


def backup_now(server: RunningServer, signer: FileSigner,
               settings: BackupBinding | None = None) -> BackupInfo:
    payload = {"app": APP, "backup": None if settings is None else settings.to_dict()}
    with server.client(signer) as client:
        data = client.call("backup_now", payload)
    return BackupInfo.from_dict(data)


def crash_during(server: RunningServer, signer: FileSigner, proxy: FaultProxy, fault: Fault) -> str:
    """Start backup_now, wait until ``fault`` holds its request, kill -9 the server; returns the key held."""
    seen = len(proxy.ops(fault.op, fault.key))
    proxy.add(fault)
    outcome: dict[str, Any] = {}

    def call() -> None:
        try:
            outcome["data"] = backup_now(server, signer)
        except Exception as exc:  # noqa: BLE001 - the server dies under the call
            outcome["error"] = exc

    thread = threading.Thread(target=call)
    thread.start()
    proxy.wait_for(fault.op, fault.key, count=seen + 1)
    held = proxy.ops(fault.op, fault.key)[seen]
    assert held.fault == "hold"
    kill_9(server)
    thread.join(timeout=30)
    proxy.clear()
    assert "error" in outcome and "data" not in outcome
    return held.key


def assert_restorable(store: Any, info: BackupInfo, settings: BackupBinding, tree: Path,
                      staging: Path) -> None:
    restored = restore_into(store, info, settings.backup_keys, staging).tree
    FIGURES[RESTORED] += 1
    assert file_digests(restored) == file_digests(tree)
    assert integrity(restored / "app" / "notes.db") == "ok"
    FIGURES[VERIFIED] += 1


@pytest.fixture
def server_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "tako"


def test_kill_9_mid_upload_then_at_manifest_then_at_index(
    server_dir: Path, signer: FileSigner, seaweedfs: SeaweedFS, proxy: FaultProxy, bucket: str, s3: Any,
    tmp_path: Path,
) -> None:
    data = server_dir / "apps" / "demo" / "production" / "data"
    make_tree(data, BIG)
    settings = binding(storage(bucket=bucket, endpoint=proxy.endpoint, access_key=seaweedfs.access_key,
                               secret_key=seaweedfs.secret_key))
    server = start_server(server_dir, signer)
    work = server_dir / "tmp" / "backups"
    survived: list[BackupInfo] = []
    try:
        survived.append(backup_now(server, signer, settings))

        # 1. Killed while an archive part is on its way: a multipart upload and a scratch folder stay.
        held = crash_during(server, signer, proxy, Fault("UploadPart", "hold", times=None))
        assert held.startswith(PREFIX) and held.endswith(".tar.zst.enc")
        assert pending_uploads(s3, bucket, PREFIX) == [held]
        assert [p.name for p in work.iterdir()] == [held[len(PREFIX):].removesuffix(".tar.zst.enc")]
        server = restart_server(server_dir, signer)
        assert list(work.iterdir()) == []
        survived.append(backup_now(server, signer))
        assert pending_uploads(s3, bucket, PREFIX) == []
        assert "cleaned up after earlier backups of demo/production: 1 unfinished uploads aborted, " \
               "0 orphaned archives deleted" in server.log_tail(200)
        assert {b.id for b in sound_index(s3, bucket, PREFIX).backups} == {b.id for b in survived}

        # 2. Killed after the archive, before its manifest: a whole archive nobody names.
        manifest = crash_during(server, signer, proxy, Fault("PutObject", "hold", key=r"/b\d+-.{8}\.json$"))
        orphan = manifest.removesuffix(".json") + ".tar.zst.enc"
        assert archives_without_manifest(s3, bucket, PREFIX) == [orphan]
        server = restart_server(server_dir, signer)
        survived.append(backup_now(server, signer))
        assert archives_without_manifest(s3, bucket, PREFIX) == []
        assert orphan not in objects(s3, bucket, PREFIX)
        assert {b.id for b in sound_index(s3, bucket, PREFIX).backups} == {b.id for b in survived}

        # 3. Killed before the index write: archive and manifest are whole; the next backup adopts them.
        crash_during(server, signer, proxy, Fault("PutObject", "hold", key=r"/index\.json$"))
        listed = objects(s3, bucket, PREFIX)
        adopted = [k for k in listed if k.endswith(".json") and k != PREFIX + "index.json"
                   and k[len(PREFIX):].removesuffix(".json") not in {b.id for b in survived}]
        assert len(adopted) == 1
        server = restart_server(server_dir, signer)
        survived.append(backup_now(server, signer))
        index = sound_index(s3, bucket, PREFIX)
        assert {b.id for b in index.backups} == {b.id for b in survived} | {
            adopted[0][len(PREFIX):].removesuffix(".json")}
        assert pending_uploads(s3, bucket) == []
        assert archives_without_manifest(s3, bucket, PREFIX) == []
    finally:
        if server.process.poll() is None:
            assert server.terminate() == 0, server.log_tail()

    store: Any = S3Store(bucket, seaweedfs.endpoint, "us-east-1", seaweedfs.access_key, seaweedfs.secret_key,
                    force_path_style=True)
    for n, info in enumerate(index.backups):
        assert_restorable(store, info, settings, data, tmp_path / f"staging-{n}")
    assert len(index.backups) == 5
    held = proxy.slowdowns  # one hold per crash; two archive parts may be held at once
    assert figures_so_far(proxy) == {"kill -9 crashes": 3, INDEX_CHECKED: 2 + 3 + 5, SLOWDOWNS: held,
                                     RESTORED: 5, VERIFIED: 5}
    assert 3 <= held <= 4
