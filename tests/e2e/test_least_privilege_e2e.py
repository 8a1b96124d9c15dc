"""Least-privilege credentials and Tako's objects, end to end: the `tako` CLI, a real `tako-server
serve` process and SeaweedFS with an identity limited to Read and Write on its bucket (object GET,
PUT, HEAD, DELETE and multipart; ListObjects refused).

- deploy, now, list, status, download, restore, retention and drill all work without List, each
  reply that had to skip self-healing says so once, and at the end every archive and manifest on
  the bucket is named by the index (an admin identity lists it);
- the objects are Tako's: the server's sanitized label in the prefix and the manifest, compact JSON
  sent as application/json, created_at taken after the archive was sealed;
- requests are virtual-hosted (``{bucket}.localhost``, through a forward proxy) unless
  force_path_style is set;
- a backup that fails after its archive went up (manifest or index PUT refused) leaves nothing the
  index does not name, with or without List.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tako_backups.cli.output import format_size
from tako_backups.core.pipeline import backup
from tako_backups.core.verify import extract_verified
from tako_backups.models import BackupInfo, BackupKey
from tako_backups.project.backup_keys import backup_keys_for, ensure_backup_keys
from tako_backups.project.secrets import load_secrets
from tako_backups.project.tako_toml import load_project
from tako_backups.remote.signing import FileSigner
from tako_backups.storage.s3 import S3Store
from tests.forward_proxy import ForwardProxy
from tests.reliability.faultproxy import Fault, FaultProxy
from tests.support.developer import Developer
from tests.support.s3_servers import SeaweedFS
from tests.support.sqlite_checks import integrity
from tests.support.tako_server import (
    APP_PYTHON,
    NOTES_APP,
    RunningServer,
    authorize,
    notes,
    restart_server,
    server_env,
    start_server,
)
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

DAY = 86_400
LABEL = "La.1"  # the server's own name (config.json); config.toml calls it "la"
PREFIX = "_tako/backups/notes/production/la-1/"


def note(bucket: str) -> str:
    return (f"! la: Self-healing is off for bucket '{bucket}': listing is denied to these "
            "credentials.\n")


@pytest.fixture
def limited_bucket(seaweedfs: SeaweedFS) -> Iterator[str]:
    yield from seaweedfs.leased_bucket("lim-")


@pytest.fixture
def la(tmp_path: Path, signer: FileSigner) -> Iterator[RunningServer]:
    server = start_server(tmp_path / "la" / "tako", signer, LABEL)
    yield server
    assert server.terminate() == 0, server.log_tail()


def unnamed(seaweedfs: SeaweedFS, bucket: str) -> list[str]:
    """Every archive or manifest on the bucket that its prefix's index does not name, and every
    unfinished upload (listed with the admin identity)."""
    client = seaweedfs.client()
    keys = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for o in page.get("Contents", [])]
    named: set[str] = set()
    for key in keys:
        if key.endswith("/index.json"):
            index = json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())
            named |= {k for b in index["backups"] for k in (b["archive_key"], b["manifest_key"])}
    uploads = [u["Key"] for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]
    return [k for k in keys if not k.endswith("/index.json") and k not in named] + uploads


def listed(dev: Developer) -> list[BackupInfo]:
    [result] = dev.json("backups", "list", "--env", "production")["results"]
    return [BackupInfo.from_dict(b) for b in result["backups"]]


def env_key(dev: Developer) -> BackupKey:
    project = load_project(dev.app_dir / "tako.toml")
    ensure_backup_keys(project, load_secrets(project.secrets_path), "production")
    return backup_keys_for(load_secrets(project.secrets_path), "production")[-1]


def seed_old_backups(seaweedfs: SeaweedFS, bucket: str, key: BackupKey, tmp_path: Path) -> list[BackupInfo]:
    """Four backups made 40..37 days ago under the server's prefix (admin credentials)."""
    data = tmp_path / "old-data"
    (data / "app").mkdir(parents=True)
    (data / "tako").mkdir()
    (data / "app" / "old.txt").write_text("old\n")
    store = S3Store(bucket, seaweedfs.endpoint, "us-east-1", seaweedfs.access_key, seaweedfs.secret_key,
                    force_path_style=True)
    now = int(time.time())
    return [backup(store, data_root=data, work_root=tmp_path / "w", app="notes", env="production",
                   server=LABEL, key=key, retention_days=30, now=now - days * DAY).info
            for days in (40, 39, 38, 37)]


def test_object_only_credentials_do_everything_and_leave_no_orphans(
        dev: Developer, la: RunningServer, seaweedfs: SeaweedFS, limited_bucket: str, tmp_path: Path,
        signer: FileSigner) -> None:
    bucket = limited_bucket
    admin = seaweedfs.client()
    dev.write_servers({"la": la})
    dev.write_project("notes", ["la"], seaweedfs, bucket, start=[APP_PYTHON, str(NOTES_APP)])
    dev.set_credentials(seaweedfs.limited_access_key, seaweedfs.limited_secret_key)
    key = env_key(dev)
    old = seed_old_backups(seaweedfs, bucket, key, tmp_path)
    live = la.data_dir / "apps" / "notes" / "production" / "data" / "app"

    deployed = dev.tako("deploy", "--env", "production")
    assert deployed.exit_code == 0, deployed.output
    [first, *kept] = listed(dev)
    assert deployed.stdout == (f"Deploy\nnotes (production)\nla: deployed, backup {first.id} "
                               f"({format_size(first.size_bytes)})\n")
    assert deployed.stderr == note(bucket)
    # Retention without List: 30 days keeps the new backup, the floor the two newest old ones;
    # the two oldest are deleted by key.
    assert [b.id for b in kept] == [old[3].id, old[2].id]
    for gone in old[:2]:
        for object_key in (gone.archive_key, gone.manifest_key):
            assert "Contents" not in admin.list_objects_v2(Bucket=bucket, Prefix=object_key)
    wait_for(lambda: len(notes(live / "notes.db")) >= 20, "the deployed notes app to write rows")

    made = dev.tako("backups", "now", "--env", "production")
    assert made.exit_code == 0, made.output
    [info] = [b for b in listed(dev) if b.id not in {first.id, old[3].id, old[2].id}]
    assert made.stdout == f"Backups\nnotes (production)\nla: {info.id} ({format_size(info.size_bytes)})\n"
    assert made.stderr == note(bucket)

    # The objects are Tako's.
    assert (info.app, info.environment, info.server) == ("notes", "production", "la-1")
    assert info.archive_key == f"{PREFIX}{info.id}.tar.zst.enc"
    assert info.created_at_unix_secs >= int(info.id[1:].split("-")[0])
    manifest = admin.get_object(Bucket=bucket, Key=info.manifest_key)
    assert manifest["ContentType"] == "application/json"
    assert manifest["Body"].read() == json.dumps(info.to_dict(), separators=(",", ":")).encode()
    index = admin.get_object(Bucket=bucket, Key=f"{PREFIX}index.json")
    assert index["ContentType"] == "application/json"
    assert index["Body"].read().startswith(b'{"version":1,"backups":[{"id":"')
    assert admin.head_object(Bucket=bucket, Key=info.archive_key).get("ContentType") != "application/json"

    shown = dev.tako("backups", "list", "--env", "production")
    assert (shown.exit_code, shown.stderr) == (0, "")  # answered from the index: nothing skipped
    assert info.id in shown.stdout and old[3].id in shown.stdout and old[2].id not in shown.stdout
    status = dev.tako("backups", "status", "--env", "production")
    assert (status.exit_code, status.stderr) == (0, "")
    assert f"la: enabled, last {listed(dev)[0].id} at " in status.stdout  # deploy's may share the second

    fetched = dev.tako("backups", "download", info.id, "--env", "production")
    assert fetched.exit_code == 0, fetched.output
    archive = dev.app_dir / f"{info.id}.tar.zst.enc"
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == info.sha256_hex
    saved = tmp_path / "saved"
    saved.mkdir()
    with open(archive, "rb") as stream:
        extract_verified(stream, info, [key], saved)
    saved_rows = notes(saved / "app" / "notes.db")
    assert len(saved_rows) >= 20

    (live / "garbage.bin").write_bytes(os.urandom(1024))
    restored = dev.tako("backups", "restore", info.id, "--env", "production", "--yes")
    assert restored.exit_code == 0, restored.output
    assert restored.stderr == ""  # the safety copy is kept and uploaded after the reply
    assert not (live / "garbage.bin").exists() and integrity(live / "notes.db") == "ok"
    assert notes(live / "notes.db", limit=len(saved_rows)) == saved_rows

    drilled = dev.tako("backups", "drill", info.id, "--env", "production")
    assert drilled.exit_code == 0, drilled.output
    assert f"la: {info.id} restorable (" in drilled.stdout

    # Offline, config.toml's name 'la' is not the server's own 'La.1', and without List the
    # other prefixes cannot be found: the error says which prefix was tried.
    verified = dev.tako("backups", "verify", info.id, "--env", "production")
    assert (verified.exit_code, verified.stderr) == (1, (
        f"error: Backup '{info.id}' was not found under _tako/backups/notes/production/la/; the other server "
        "prefixes under _tako/backups/notes/production/ were not searched: listing the bucket is denied to "
        "these credentials.\n"))

    def safety_copy_verified() -> bool:  # the restore's safety copy is uploaded after its reply
        with la.client(signer) as client:
            kept = client.call("backup_status", {"app": "notes/production"}).get("kept_tree")
        return kept is None or kept["upload"] == "verified"

    wait_for(safety_copy_verified, "the safety copy to be in the bucket", timeout=60)
    assert unnamed(seaweedfs, bucket) == []


def test_virtual_hosted_requests_through_the_server(dev: Developer, signer: FileSigner, seaweedfs: SeaweedFS,
                                                    limited_bucket: str, tmp_path: Path) -> None:
    bucket, port = limited_bucket, seaweedfs.ports[3]
    with ForwardProxy(seaweedfs.endpoint) as proxy:
        data_dir = tmp_path / "la" / "tako"
        authorize(data_dir, signer, LABEL)
        env = {**server_env(), "HTTP_PROXY": proxy.url, "http_proxy": proxy.url, "NO_PROXY": "",
               "no_proxy": ""}
        server = restart_server(data_dir, signer, LABEL, env=env)
        try:
            dev.write_servers({"la": server})
            dev.write_project("notes", ["la"], seaweedfs, bucket, endpoint=seaweedfs.virtual_host_endpoint,
                              path_style=False)
            dev.set_credentials(seaweedfs.limited_access_key, seaweedfs.limited_secret_key)
            made = dev.tako("backups", "now", "--env", "production")
            assert made.exit_code == 0, made.output
            assert made.stderr == note(bucket)
            [info] = listed(dev)
        finally:
            assert server.terminate() == 0, server.log_tail()
    seen = proxy.requests()
    assert seen and {r.host for r in seen} == {f"{bucket}.localhost:{port}"}
    assert all(r.url.startswith(f"http://{bucket}.localhost:{port}/") for r in seen)
    assert not [r for r in seen if r.path.startswith(f"/{bucket}")]  # no path-style request
    puts = {r.path.split("?")[0].rsplit("/", 1)[1]: r.content_type for r in seen if r.method == "PUT"}
    assert puts == {f"{info.id}.tar.zst.enc": None, f"{info.id}.json": "application/json",
                    "index.json": "application/json"}
    assert [r.method for r in seen if r.path.endswith("/index.json")][0] == "GET"  # read before upload
    assert unnamed(seaweedfs, bucket) == []


@pytest.mark.parametrize("identity", ["object-only", "admin"])
def test_a_failed_backup_leaves_nothing_the_index_does_not_name(
        dev: Developer, la: RunningServer, seaweedfs: SeaweedFS, tmp_path: Path, identity: str) -> None:
    limited = identity == "object-only"
    bucket = seaweedfs.lease_bucket("lim-" if limited else "t-")
    proxy = FaultProxy(seaweedfs.endpoint).start()
    try:
        dev.write_servers({"la": la})
        dev.write_project("notes", ["la"], seaweedfs, bucket, endpoint=proxy.endpoint)
        dev.set_credentials(*((seaweedfs.limited_access_key, seaweedfs.limited_secret_key) if limited
                              else (seaweedfs.access_key, seaweedfs.secret_key)))
        live = la.data_dir / "apps" / "notes" / "production" / "data" / "app"
        live.mkdir(parents=True, exist_ok=True)
        (live / "hello.txt").write_text("hello\n")
        assert dev.tako("backups", "now", "--env", "production").exit_code == 0
        [first] = listed(dev)
        refused = {"status": 403, "code": "AccessDenied", "times": 1}
        for object_key in (rf"{PREFIX}b\d+-.{{8}}\.json$", rf"{PREFIX}index\.json$"):
            proxy.add(Fault("PutObject", "error", key=object_key, **refused))
            failed = dev.tako("backups", "now", "--env", "production")
            assert failed.exit_code == 1
            assert "refused the credentials (AccessDenied) while trying to upload" in failed.stderr
            assert unnamed(seaweedfs, bucket) == []
            assert listed(dev) == [first]
        proxy.add(Fault("PutObject", "error", key=rf"{PREFIX}index\.json$", **refused))
        deployed = dev.tako("deploy", "--env", "production")
        assert deployed.exit_code == 0, deployed.output
        assert "la: deployed, backup failed: " in deployed.stdout
        assert unnamed(seaweedfs, bucket) == [] and listed(dev) == [first]
        archives = [s for s in proxy.ops("PutObject") if s.key.endswith(".tar.zst.enc")]
        assert len(archives) == 4  # each failed backup did upload its archive, and deleted it again
        assert len(proxy.ops("DeleteObject")) >= 6
    finally:
        proxy.stop()
        seaweedfs.release_bucket(bucket)

