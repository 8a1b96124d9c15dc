"""Build archives by hand (as an attacker or a peer tool would) and store them with a manifest."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable

import zstandard

from tako_backups.core import catalog, layout
from tako_backups.core.crypto import EncryptingWriter
from tako_backups.models import BackupIndex, BackupInfo, BackupKey
from tako_backups.storage.memory import MemoryStore


def tar_bytes(build: Callable[[tarfile.TarFile], None], with_tops: bool = True) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        if with_tops:
            for top in ("app", "tako"):
                info = tarfile.TarInfo(top)
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
        build(tar)
    return buf.getvalue()


def add_file(tar: tarfile.TarFile, name: str, data: bytes = b"x", **attrs: object) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for k, v in attrs.items():
        setattr(info, k, v)
    tar.addfile(info, io.BytesIO(data))


def add_special(tar: tarfile.TarFile, name: str, kind: bytes, linkname: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    tar.addfile(info)


def store_plaintext(store: MemoryStore, plaintext: bytes, key: BackupKey, *, compress: bool = True,
                    backup_id: str = "b1710000000-AbCdEf12", server: str = "server") -> BackupInfo:
    """Compress (optionally), encrypt and store ``plaintext`` with a manifest and an index entry
    for app ``demo/production`` on ``server``."""
    prefix = layout.backup_prefix("demo", "production", server)
    data = zstandard.ZstdCompressor(level=3).compress(plaintext) if compress else plaintext
    out = io.BytesIO()
    enc = EncryptingWriter(out, key)
    enc.write(data)
    sealed = enc.finish()
    info = BackupInfo(
        id=backup_id, app="demo", environment="production", server=server,
        created_at_unix_secs=1710000000, size_bytes=sealed.size_bytes,
        sha256_hex=sealed.sha256_hex, archive_key=layout.archive_key(prefix, backup_id),
        manifest_key=layout.manifest_key(prefix, backup_id), encryption=sealed.encryption,
    )
    store.put_bytes(info.archive_key, out.getvalue())
    store.put_bytes(info.manifest_key, info.to_json())
    catalog.write_index(store, prefix, BackupIndex(backups=[info]))
    return info
