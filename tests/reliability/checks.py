"""What every reliability test checks on the bucket after a fault, a crash or a race."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from tako_backups.models import BackupIndex, BackupInfo
from tests.reliability.faultproxy import FaultProxy

SQLITE_HEADER = b"SQLite format 3\x00"

# The figures docs/RELIABILITY.md quotes. FIGURES counts what the running test did (each test
# asserts its own counts); conftest.py adds them to the test's module in MODULE_FIGURES and prints
# those at the end of the run. A figure is counted where it happens: "backups restored" as soon as a
# restore returns, "restores verified" only once the test's checks of that restore passed, "index
# entries checked" only once every entry proved sound.
FIGURES: Counter[str] = Counter()
MODULE_FIGURES: defaultdict[str, Counter[str]] = defaultdict(Counter)
RESTORED, VERIFIED = "backups restored", "restores verified"
FAULTS, SLOWDOWNS = "faults injected", "requests delayed or held"
INDEX_CHECKED = "index entries checked"


def figures_so_far(proxy: FaultProxy | None = None) -> dict[str, int]:
    """The running test's non-zero figures, with what ``proxy`` fired so far (faults and slowdowns)."""
    counts = Counter(FIGURES)
    if proxy is not None:
        counts.update({FAULTS: proxy.faults_injected, SLOWDOWNS: proxy.slowdowns})
    return {what: n for what, n in counts.items() if n}


def objects(client: Any, bucket: str, prefix: str) -> dict[str, int]:
    """key -> size of every object under ``prefix``, read straight from the S3 server."""
    found: dict[str, int] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", ()):
            found[item["Key"]] = int(item["Size"])
    return found


def pending_uploads(client: Any, bucket: str, prefix: str = "") -> list[str]:
    """Keys with an unfinished multipart upload under ``prefix``."""
    resp = client.list_multipart_uploads(Bucket=bucket, Prefix=prefix)
    return sorted(u["Key"] for u in resp.get("Uploads", []))


def sound_index(client: Any, bucket: str, prefix: str) -> BackupIndex:
    """The index, after checking that every entry's archive exists with the manifest's size and
    its manifest exists with the entry's exact content. A missing index is an empty one."""
    listed = objects(client, bucket, prefix)
    if prefix + "index.json" not in listed:
        return BackupIndex()
    index = BackupIndex.from_json(client.get_object(Bucket=bucket, Key=prefix + "index.json")["Body"].read())
    for info in index.backups:
        assert listed.get(info.archive_key) == info.size_bytes, f"missing or partial {info.archive_key}"
        assert info.manifest_key in listed, f"index names missing {info.manifest_key}"
        manifest = client.get_object(Bucket=bucket, Key=info.manifest_key)["Body"].read()
        assert BackupInfo.from_json(manifest) == info
    FIGURES[INDEX_CHECKED] += len(index.backups)
    return index


def archives_without_manifest(client: Any, bucket: str, prefix: str) -> list[str]:
    listed = objects(client, bucket, prefix)
    return sorted(k for k in listed if k.endswith(".tar.zst.enc")
                  and k.removesuffix(".tar.zst.enc") + ".json" not in listed)


def make_tree(root: Path, big_bytes: int, rows: int = 200) -> Path:
    """A data root: app/big.bin (random), app/notes.db (SQLite, WAL), a few small files, tako/."""
    (root / "app" / "docs").mkdir(parents=True)
    (root / "tako").mkdir()
    with open(root / "app" / "big.bin", "wb") as f:
        left = big_bytes
        while left > 0:
            chunk = os.urandom(min(left, 1 << 20))
            f.write(chunk)
            left -= len(chunk)
    for i in range(5):
        (root / "app" / "docs" / f"doc-{i}.txt").write_text(f"document {i}\n" * (i + 1))
    for name in ("app/notes.db", "tako/workflows.sqlite"):
        conn = sqlite3.connect(root / name)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")
        conn.executemany("INSERT INTO t (body) VALUES (?)", [(f"row {i}",) for i in range(rows)])
        conn.commit()
        conn.close()
    return root


def file_digests(root: Path) -> dict[str, str]:
    """relative path -> sha256 of every regular non-SQLite file (SQLite files are snapshots, so
    they are compared by :func:`sqlite_rows` instead)."""
    out = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.name.endswith(("-wal", "-shm")):
            continue
        data = path.read_bytes()
        if not data.startswith(SQLITE_HEADER):
            out[str(path.relative_to(root))] = hashlib.sha256(data).hexdigest()
    return out


def sqlite_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.read_bytes()[:16] == SQLITE_HEADER)


def sqlite_rows(db: Path, table: str = "t") -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)
    try:
        return list(conn.execute(f"SELECT * FROM {table} ORDER BY 1"))
    finally:
        conn.close()
