"""Format-2 backups on a bucket for tests, until ``backup`` writes them itself: the data tree is
tarred (PAX, as tarfile writes it), sealed with :class:`ChunkedSealer` (small chunks, so small
data spans many), uploaded, and recorded with its manifest and index entry like any backup."""

from __future__ import annotations

import io
import os
import tarfile
import time
from pathlib import Path

from tako_backups.core import catalog, layout
from tako_backups.core.seal_v2 import ChunkedSeal, ChunkedSealer
from tako_backups.models import BackupExtras, BackupInfo, BackupKey
from tako_backups.primitives.names import sanitize_segment
from tako_backups.storage.base import ObjectStore


def tar_of(data_root: Path) -> bytes:
    """``app/`` and ``tako/`` of ``data_root`` as one PAX tar (links kept as links)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for top in ("app", "tako"):
            tar.add(data_root / top, arcname=top)
    return buf.getvalue()


def seal_tar(tar: bytes, key: BackupKey, chunk_size: int) -> tuple[bytes, ChunkedSeal]:
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(tar), mode="r:") as t:
        members = t.getmembers()
    with ChunkedSealer(out, key, chunk_size=chunk_size) as sealer:
        for info in members:
            sealer.tar_member(info, info.offset)
        sealer.write(tar)
        result = sealer.finish()
    return out.getvalue(), result


def put_v2_backup(store: ObjectStore, data_root: Path, key: BackupKey, *, app: str = "demo",
                  env: str = "production", server: str = "la", chunk_size: int = 16 << 10,
                  now: int | None = None) -> BackupInfo:
    """Back ``data_root`` up as a format-2 archive on ``store`` and record it; its manifest."""
    created = int(time.time()) if now is None else now
    obj, result = seal_tar(tar_of(data_root), key, chunk_size)
    backup_id = layout.new_backup_id(created)
    prefix = layout.backup_prefix(app, env, server)
    files = [p for p in data_root.rglob("*") if p.is_file() and not p.is_symlink()]
    info = BackupInfo(
        id=backup_id, app=app, environment=env, server=sanitize_segment(server),
        created_at_unix_secs=created, size_bytes=result.sealed.size_bytes,
        sha256_hex=result.sealed.sha256_hex,
        archive_key=layout.archive_key(prefix, backup_id),
        manifest_key=layout.manifest_key(prefix, backup_id),
        encryption=result.sealed.encryption,
        extras=BackupExtras(files=len(files), bytes=sum(os.path.getsize(p) for p in files),
                            sqlite_files=[], reason="manual"))
    store.put_bytes(info.archive_key, obj)
    catalog.record_backup(store, prefix, info, now=created)
    return info
