"""Each hostile or broken archive is refused before anything lands outside staging."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest

from tako_backups.core.pipeline import restore_into
from tako_backups.errors import FormatError, IntegrityError, UnsafeArchiveError
from tako_backups.models import BackupKey
from tako_backups.storage.memory import MemoryStore

from .archive_helpers import add_file, add_special, store_plaintext, tar_bytes


def _restore(tmp_path: Path, plaintext: bytes, key: BackupKey, compress: bool = True) -> Path:
    store = MemoryStore()
    info = store_plaintext(store, plaintext, key, compress=compress)
    return restore_into(store, info, [key], tmp_path / "staging").tree


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda t: add_file(t, "/etc/evil"), "has an absolute path"),
        (lambda t: add_file(t, "app/../../evil"), "contains '..'"),
        (lambda t: add_file(t, "other/file"), "is outside app/ and tako/"),
        (lambda t: (add_special(t, "app/etc", tarfile.SYMTYPE, "/etc"), add_file(t, "app/etc/evil")),
         "written through a symlink"),
        (lambda t: (add_special(t, "app/out", tarfile.SYMTYPE, "../.."), add_file(t, "app/out/evil")),
         "written through a symlink"),
        (lambda t: add_special(t, "app/hard", tarfile.LNKTYPE, "app/x"), "is a hard link"),
        (lambda t: add_special(t, "app/dev", tarfile.CHRTYPE), "device, fifo or other special"),
        (lambda t: add_special(t, "app/blk", tarfile.BLKTYPE), "device, fifo or other special"),
        (lambda t: add_special(t, "app/fifo", tarfile.FIFOTYPE), "device, fifo or other special"),
        (lambda t: (add_special(t, "app/up", tarfile.SYMTYPE, ".."), add_file(t, "app/up/x")),
         "written through a symlink"),
        (lambda t: (add_file(t, "app/dup", b"1"), add_file(t, "app/dup", b"2")), "appears twice"),
    ],
    ids=["absolute", "dotdot", "outside-top", "through-absolute-symlink", "through-outward-symlink",
         "hardlink",
         "chardev", "blockdev", "fifo", "through-symlink", "duplicate"],
)
def test_restore_refuses_hostile_entry(tmp_path: Path, key: BackupKey, build, message: str) -> None:
    with pytest.raises(UnsafeArchiveError, match=message):
        _restore(tmp_path, tar_bytes(build), key)
    assert not (tmp_path / "staging").exists()
    assert not (tmp_path / "evil").exists() and not Path("/etc/evil").exists()
    assert not (tmp_path / "outside").exists()


def test_symlinks_keep_their_targets_byte_for_byte(tmp_path: Path, key: BackupKey) -> None:
    """As Tako restores them: inside the root, absolute, or leading out of it."""
    def build(t: tarfile.TarFile) -> None:
        add_file(t, "app/uploads/a.txt", b"A")
        add_special(t, "app/latest", tarfile.SYMTYPE, "uploads/a.txt")
        add_special(t, "tako/to-app", tarfile.SYMTYPE, "../app/uploads")
        add_special(t, "app/current", tarfile.SYMTYPE, "/srv/shared/current")
        add_special(t, "app/up", tarfile.SYMTYPE, "../../x")
        add_special(t, "app/odd", tarfile.SYMTYPE, "./a//b/../c/")

    tree = _restore(tmp_path, tar_bytes(build), key)
    assert (tree / "app/latest").read_bytes() == b"A"
    targets = {name: os.readlink(tree / name) for name in
               ("app/latest", "tako/to-app", "app/current", "app/up", "app/odd")}
    assert targets == {"app/latest": "uploads/a.txt", "tako/to-app": "../app/uploads",
                       "app/current": "/srv/shared/current", "app/up": "../../x", "app/odd": "./a//b/../c/"}


def test_archive_without_tako_folder_is_refused(tmp_path: Path, key: BackupKey) -> None:
    plaintext = tar_bytes(lambda t: add_file(t, "app/x"), with_tops=False)
    with pytest.raises(FormatError, match="^Backup archive is missing app/ or tako/ data directories.$"):
        _restore(tmp_path, plaintext, key)
    assert not (tmp_path / "staging").exists()


def test_not_zstd_is_a_format_error(tmp_path: Path, key: BackupKey) -> None:
    with pytest.raises(FormatError, match="not a valid zstd stream"):
        _restore(tmp_path, b"plain bytes, not zstd" * 10, key, compress=False)
    assert not (tmp_path / "staging").exists()


def test_not_tar_is_a_format_error(tmp_path: Path, key: BackupKey) -> None:
    with pytest.raises(FormatError, match="not a valid tar stream"):
        _restore(tmp_path, b"\x01" * 5000, key)


def test_truncated_archive_fails_checksum(tmp_path: Path, key: BackupKey) -> None:
    store = MemoryStore()
    info = store_plaintext(store, tar_bytes(lambda t: add_file(t, "app/x", b"y" * 50_000)), key)
    store.objects[info.archive_key] = store.objects[info.archive_key][:-100]
    with pytest.raises(IntegrityError, match="Downloaded backup checksum did not match manifest."):
        restore_into(store, info, [key], tmp_path / "staging")
    assert not (tmp_path / "staging").exists()


def test_tampered_archive_with_matching_manifest_sha_fails_the_tag(
    tmp_path: Path, key: BackupKey
) -> None:
    """An attacker who rewrites both object and manifest checksum still cannot forge the tag."""
    import dataclasses
    import hashlib

    store = MemoryStore()
    info = store_plaintext(store, tar_bytes(lambda t: add_file(t, "app/x", b"y" * 50_000)), key)
    data = bytearray(store.objects[info.archive_key])
    data[-5] ^= 0xFF
    store.objects[info.archive_key] = bytes(data)
    forged = dataclasses.replace(info, sha256_hex=hashlib.sha256(data).hexdigest())
    with pytest.raises(IntegrityError, match="failed authentication"):
        restore_into(store, forged, [key], tmp_path / "staging")
    assert not (tmp_path / "staging").exists()
