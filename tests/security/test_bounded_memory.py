"""Hostile archives cannot make a restore hold gigabytes: an extended header declaring 4 GiB (in a
zstd frame of about 130 KB) is refused before it is read, with the whole restore process (in a
fresh interpreter) peaking under 150 MB; a zstd frame that needs a window over 128 MiB is refused
before anything is decompressed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tako_backups.core.pipeline import restore_into
from tako_backups.errors import FormatError
from tako_backups.models import BackupKey
from tako_backups.storage.memory import MemoryStore
from tests.core.archive_helpers import tar_bytes
from tests.security.hostile import store_archive, zstd_frame

REPO = Path(__file__).resolve().parents[2]
PEAK_MB = 150


@pytest.mark.parametrize("kind", ["pax", "gnu-long-name"])
def test_a_4_gib_extended_header_is_refused_in_bounded_memory(kind: str) -> None:
    probe = subprocess.run([sys.executable, "-m", "tests.security.memory_probe", kind, str(4 << 30)],
                           cwd=REPO, capture_output=True, text=True, timeout=300)
    assert probe.returncode == 0, probe.stderr
    report = json.loads(probe.stdout)
    assert report["error"] == (
        "UnsafeArchiveError: The archive header at byte 1024 declares 4294967296 bytes of extended "
        "header data (PAX or GNU long name); an entry may have at most 1 MiB; refusing to restore.")
    assert report["archive_bytes"] < 200_000
    assert report["peak_mib"] * (1 << 20) < PEAK_MB * 1_000_000


@pytest.mark.parametrize("window_log", [28, 31])
def test_a_zstd_window_over_128_mib_is_refused(tmp_path: Path, window_log: int) -> None:
    key = BackupKey("backup-key-0123456789abcdef", os.urandom(32))
    store = MemoryStore()
    plain = tar_bytes(lambda t: None)
    info = store_archive(store, zstd_frame([plain], window_log=window_log), key)
    with pytest.raises(FormatError, match=r"^Backup b1710000000-HoStIlE1 is not a valid zstd stream\.$"):
        restore_into(store, info, [key], tmp_path / "staging")
    assert not (tmp_path / "staging").exists()


def test_a_zstd_window_of_128_mib_is_read(tmp_path: Path) -> None:
    key = BackupKey("backup-key-0123456789abcdef", os.urandom(32))
    store = MemoryStore()
    info = store_archive(store, zstd_frame([tar_bytes(lambda t: None)], window_log=27), key)
    tree = restore_into(store, info, [key], tmp_path / "staging").tree
    assert sorted(p.name for p in tree.iterdir()) == ["app", "tako"]
