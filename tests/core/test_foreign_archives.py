"""Backups written entirely by other tools restore byte for byte through our core.

Nothing of ours writes these: GNU ``tar --format=gnu`` makes the archive (names and a link target
over 100 bytes become ``././@LongLink`` entries), the ``zstd`` command compresses it (one frame, or
pieces compressed apart and concatenated), pycryptodome's AES-256-GCM encrypts it (12-byte nonce,
tag kept apart), and the manifest and index are written by hand in Tako's compact field order. The
objects go to an in-memory bucket or, through a plain boto3 client, to a real SeaweedFS bucket;
our catalog reads the index and ``restore_into`` brings the tree back.
"""

from __future__ import annotations

import base64
import hashlib
import os
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest
from Crypto.Cipher import AES

from tako_backups.core import catalog
from tako_backups.core.pipeline import restore_into
from tako_backups.core.verify import verify_backup
from tako_backups.errors import IntegrityError
from tako_backups.models import BackupKey
from tako_backups.storage.memory import MemoryStore
from tests.support.s3_servers import SeaweedFS

from .treecmp import describe

PREFIX = "_tako/backups/demo/production/la/"
BACKUP_ID = "b1710000000-GnuTar01"
KEY_ID = "backup-key-0f1e2d3c4b5a6978"
LONG_DIR = "d" * 120
LONG_FILE = "f" * 110 + ".txt"


def source_tree(root: Path) -> Path:
    """``app/`` and ``tako/`` as a server keeps them: files of every size class and mode, nested and
    long names, a private folder, a relative symlink inside the tree and a SQLite database."""
    app, tako = root / "app", root / "tako"
    (app / "uploads" / "000").mkdir(parents=True)
    (app / LONG_DIR).mkdir()
    (app / "private").mkdir(mode=0o700)
    tako.mkdir()
    files = {
        app / "uploads" / "000" / "photo-000001.bin": (os.urandom(300_000), 0o644),
        app / "uploads" / "000" / "doc-000002.txt": (b"order invoice customer\n" * 4_000, 0o644),
        app / "empty": (b"", 0o644),
        app / "block": (os.urandom(512), 0o600),
        app / "run.sh": (b"#!/bin/sh\necho hello\n", 0o755),
        app / LONG_DIR / LONG_FILE: (b"a long name\n" * 3, 0o644),
        app / "ünïcode-名前.txt": ("ünïcode\n".encode(), 0o640),
        app / "private" / "token.txt": (b"not a secret, just private\n", 0o600),
    }
    for path, (data, mode) in files.items():
        path.write_bytes(data)
        path.chmod(mode)
    os.symlink(LONG_DIR, app / "latest")  # a link target over 100 bytes
    os.symlink("uploads/000/photo-000001.bin", app / "photo-link")
    db = sqlite3.connect(tako / "workflows.sqlite")
    db.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, workflow TEXT, payload TEXT)")
    db.executemany("INSERT INTO runs VALUES (?, ?, ?)", [(i, f"wf-{i % 7}", "{}" * i) for i in range(500)])
    db.commit()
    db.close()
    for n, path in enumerate(sorted(p for p in root.rglob("*") if not p.is_symlink())):
        os.utime(path, (1_700_000_000 + n, 1_700_000_000 + n))
    return root


def gnu_tar(root: Path, out: Path) -> bytes:
    """``tar --format=gnu`` of ``app`` and ``tako``, checked to really be GNU with long-name entries."""
    subprocess.run(["tar", "--format=gnu", "-C", str(root), "-cf", str(out), "app", "tako"], check=True)
    data = out.read_bytes()
    assert data[257:265] == b"ustar  \x00"  # GNU magic, not POSIX ustar or PAX
    long_entries = {data[at + 156:at + 157] for at in range(0, len(data), 512)
                    if data[at:at + 13] == b"././@LongLink"}
    assert long_entries == {b"L", b"K"}  # a long name and a long link target
    listing = subprocess.run(["tar", "-tvf", str(out)], check=True, capture_output=True, text=True).stdout
    assert f"app/{LONG_DIR}/{LONG_FILE}" in listing and "app/latest -> " + LONG_DIR in listing
    return data


def zstd_cli(plain: Path, frames: int, work: Path) -> bytes:
    """The ``zstd`` command's output: one frame, or ``frames`` pieces compressed apart and
    concatenated (cut at offsets that are not tar block boundaries)."""
    data = plain.read_bytes()
    cuts = [0] + [len(data) * i // frames + 7 * i for i in range(1, frames)] + [len(data)]
    out = b""
    for i in range(frames):
        piece = work / f"piece-{i}"
        piece.write_bytes(data[cuts[i]:cuts[i + 1]])
        out += subprocess.run(["zstd", "-q", "-3", "-c", str(piece)], check=True, capture_output=True).stdout
    (work / "all.zst").write_bytes(out)
    info = subprocess.run(["zstd", "-lv", str(work / "all.zst")], capture_output=True, text=True).stdout
    assert f"# Zstandard Frames: {frames}" in info
    return out


def sealed(compressed: bytes, key: bytes) -> tuple[bytes, bytes, bytes]:
    """(ciphertext, nonce, tag) from pycryptodome's AES-256-GCM, no associated data."""
    nonce = os.urandom(12)
    ciphertext, tag = AES.new(key, AES.MODE_GCM, nonce=nonce).encrypt_and_digest(compressed)
    return ciphertext, nonce, tag


def manifest_json(ciphertext: bytes, nonce: bytes, tag: bytes) -> str:
    """Tako's manifest, written out by hand: compact, fields in Tako's struct order."""
    b64 = base64.b64encode
    return (f'{{"id":"{BACKUP_ID}","app":"demo","environment":"production","server":"la",'
            f'"created_at_unix_secs":1710000003,"size_bytes":{len(ciphertext)},'
            f'"sha256_hex":"{hashlib.sha256(ciphertext).hexdigest()}",'
            f'"archive_key":"{PREFIX}{BACKUP_ID}.tar.zst.enc","manifest_key":"{PREFIX}{BACKUP_ID}.json",'
            f'"encryption":{{"algorithm":"aes-256-gcm","key_id":"{KEY_ID}",'
            f'"nonce_base64":"{b64(nonce).decode()}","tag_base64":"{b64(tag).decode()}"}}}}')


def foreign_backup(tmp_path: Path, frames: int, key: bytes) -> tuple[Path, dict[str, bytes]]:
    """The source tree and the three objects another toolchain would have put on the bucket."""
    root = source_tree(tmp_path / "source")
    (tmp_path / "work").mkdir()
    gnu_tar(root, tmp_path / "work" / "plain.tar")
    ciphertext, nonce, tag = sealed(zstd_cli(tmp_path / "work" / "plain.tar", frames, tmp_path / "work"), key)
    manifest = manifest_json(ciphertext, nonce, tag)
    return root, {f"{PREFIX}{BACKUP_ID}.tar.zst.enc": ciphertext,
                  f"{PREFIX}{BACKUP_ID}.json": manifest.encode(),
                  f"{PREFIX}index.json": ('{"version":1,"backups":[' + manifest + "]}").encode()}


@pytest.mark.parametrize("frames", [1, 3], ids=["one-frame", "three-frames"])
@pytest.mark.parametrize("bucket", ["memory", "seaweedfs"])
def test_a_backup_made_by_gnu_tar_zstd_and_pycryptodome_restores_byte_for_byte(
    request: pytest.FixtureRequest, bucket: str, frames: int, tmp_path: Path,
) -> None:
    key = os.urandom(32)
    root, objects = foreign_backup(tmp_path, frames, key)
    store: Any
    if bucket == "memory":
        store = MemoryStore()
        for name, data in objects.items():
            store.objects[name] = data
    else:
        store = request.getfixturevalue("seaweed_store")
        server = request.getfixturevalue("seaweedfs")
        assert isinstance(server, SeaweedFS)
        for name, data in objects.items():  # boto3's own PutObject, not our writer
            server.client().put_object(Bucket=store.bucket, Key=name, Body=data)

    [info] = catalog.read_index(store, PREFIX).backups
    assert info.id == BACKUP_ID and info.size_bytes == len(objects[info.archive_key])
    tree = restore_into(store, info, [BackupKey(KEY_ID, key)], tmp_path / "staging").tree
    assert describe(tree) == describe(root)
    assert sorted(p.name for p in tree.iterdir()) == ["app", "tako"]
    assert os.readlink(tree / "app" / "latest") == LONG_DIR
    assert (tree / "app" / LONG_DIR / LONG_FILE).read_bytes() == b"a long name\n" * 3

    report = verify_backup(store.open_read(info.archive_key), info, [BackupKey(KEY_ID, key)], tmp_path / "v")
    assert report.sqlite_files == ["tako/workflows.sqlite"]
    assert report.files == sum(1 for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def test_a_foreign_archive_with_a_wrong_tag_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    key = os.urandom(32)
    _root, objects = foreign_backup(tmp_path, 1, key)
    store = MemoryStore()
    manifest = objects[f"{PREFIX}{BACKUP_ID}.json"].decode()
    tag = manifest.split('"tag_base64":"')[1].split('"')[0]
    forged = base64.b64encode(bytes(16)).decode()
    store.objects.update(objects)
    index = objects[f"{PREFIX}index.json"]
    store.objects[f"{PREFIX}index.json"] = index.replace(tag.encode(), forged.encode())
    [info] = catalog.read_index(store, PREFIX).backups
    with pytest.raises(IntegrityError):
        restore_into(store, info, [BackupKey(KEY_ID, key)], tmp_path / "staging")
    assert not (tmp_path / "staging").exists()
