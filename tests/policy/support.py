"""Helpers of the tiers / copy / notification suite: settings for real buckets, app data, reading
what a bucket holds, and backups crafted with an older ``created_at``."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

from tako_backups.core import layout
from tako_backups.models import BackupBinding, StorageBinding
from tako_backups.policy import BackupPolicy, NotifySettings
from tako_backups.remote.signing import FileSigner
from tako_backups.server.paths import ServerPaths
from tests.support.keys import new_backup_key
from tests.support.s3_servers import SeaweedFS
from tests.support.tako_server import RunningServer

SECRET = "whsec-e2e-0123456789abcdef"
# Tako's manifest fields, in Tako's order; ours live under "extras" only.
TAKO_MANIFEST = ["id", "app", "environment", "server", "created_at_unix_secs", "size_bytes", "sha256_hex",
                 "archive_key", "manifest_key", "encryption"]


def storage_of(weed: SeaweedFS, bucket: str, expires_on: str | None = None) -> StorageBinding:
    return StorageBinding(bucket=bucket, endpoint=weed.endpoint, region="us-east-1",
                          access_key_id=weed.access_key, secret_access_key=weed.secret_key,
                          force_path_style=True, expires_on=expires_on)


def settings_for(primary: StorageBinding, copy: StorageBinding | None, policy: BackupPolicy | None = None,
                 webhook: str | None = None) -> BackupBinding:
    notify = None if webhook is None else NotifySettings(webhook_url=webhook, webhook_secret=SECRET)
    return BackupBinding(storage=primary, backup_keys=[new_backup_key()],
                         retention_days=policy.tako_retention_days if policy else 30,
                         policy=policy, copy=copy, notify=notify)


def seed_app(server: RunningServer, name: str, *, big_mb: int = 0) -> Path:
    """Live data for ``{name}/production``: a SQLite database, an upload, and with ``big_mb`` an
    incompressible file of that size (so an upload spans several 16 MiB parts)."""
    data = ServerPaths(server.data_dir).ensure_data_dir(name, "production")
    (data / "app" / "uploads").mkdir(exist_ok=True)
    (data / "app" / "uploads" / "a.txt").write_text(f"the first upload of {name}\n")
    conn = sqlite3.connect(data / "app" / "notes.db")
    conn.execute("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT)")
    conn.executemany("INSERT INTO notes (body) VALUES (?)", [(f"note {i}",) for i in range(40)])
    conn.commit()
    conn.close()
    if big_mb:
        with open(data / "app" / "uploads" / "big.bin", "wb") as f:
            for _ in range(big_mb):
                f.write(os.urandom(1 << 20))
    return data


def call(server: RunningServer, signer: FileSigner, command: str, **fields: Any) -> dict[str, Any]:
    """The whole reply of a signed call (``status``, ``data`` and our fields next to it)."""
    with server.client(signer) as client:
        return client.call_reply(command, fields)


def prefix_of(name: str) -> str:
    return layout.backup_prefix(name, "production", "la")


def objects(weed: SeaweedFS, bucket: str, prefix: str) -> dict[str, bytes]:
    """Every object under ``prefix`` of ``bucket``: key -> bytes."""
    client = weed.client()
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", ()):
            found[item["Key"]] = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
    return found


def digests(found: dict[str, bytes]) -> dict[str, str]:
    return {key: hashlib.sha256(data).hexdigest() for key, data in found.items()}


def wipe(weed: SeaweedFS, bucket: str) -> None:
    client = weed.client()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", ()):
            client.delete_object(Bucket=bucket, Key=item["Key"])


def put(weed: SeaweedFS, bucket: str, key: str, data: bytes) -> None:
    weed.client().put_object(Bucket=bucket, Key=key, Body=data)


def craft_older(weeds: list[tuple[SeaweedFS, str]], source: dict[str, Any], created: int,
                suffix: str) -> dict[str, Any]:
    """A copy of backup ``source`` as if taken at ``created`` (id ``b{created}-{suffix}``), put
    (archive + manifest) into each of ``weeds``' buckets; the next backup's index merge finds it."""
    prefix = source["archive_key"][: -len(source["id"] + layout.ARCHIVE_SUFFIX)]
    backup_id = f"b{created}-{suffix}"
    info = {**source, "id": backup_id, "created_at_unix_secs": created,
            "archive_key": layout.archive_key(prefix, backup_id),
            "manifest_key": layout.manifest_key(prefix, backup_id)}
    for weed, bucket in weeds:
        archive = weed.client().get_object(Bucket=bucket, Key=source["archive_key"])["Body"].read()
        put(weed, bucket, info["archive_key"], archive)
        put(weed, bucket, info["manifest_key"], json.dumps(info, indent=2).encode() + b"\n")
    return info


def index_of(weed: SeaweedFS, bucket: str, prefix: str) -> dict[str, Any]:
    return json.loads(weed.client().get_object(Bucket=bucket, Key=f"{prefix}index.json")["Body"].read())
