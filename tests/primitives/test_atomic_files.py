"""Crash-safe writes (one home for the project files, the server's state and downloads)."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from tako_backups.errors import ConfigError
from tako_backups.primitives.atomic_files import place_new, write_atomic
from tako_backups.project.files import write_file


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@pytest.mark.parametrize("broken", ["replace", "fsync"])
def test_a_crash_mid_write_leaves_the_old_file_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, broken: str
) -> None:
    target = tmp_path / "tako.toml"
    target.write_text("old = true\n")

    def crash(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, broken, crash)
    with pytest.raises(OSError) as caught:
        write_atomic(target, b"new = true\n")
    assert caught.value.errno == errno.ENOSPC
    assert target.read_text() == "old = true\n"
    assert leftovers(tmp_path) == []


def test_project_files_name_the_file_in_the_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "tako.toml"
    target.write_text("old = true\n")

    def crash(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(ConfigError) as caught:
        write_file(target, b"new = true\n")
    assert str(caught.value) == f"Cannot write {target}: No space left on device."
    assert target.read_text() == "old = true\n"


def test_an_interrupt_mid_write_also_cleans_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "secrets.json"
    target.write_text("{}")

    def interrupt(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupt)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, b'{"a": 1}')
    assert target.read_text() == "{}"
    assert leftovers(tmp_path) == []


def test_existing_mode_is_kept_and_forced_mode_wins(tmp_path: Path) -> None:
    target = tmp_path / "tako.toml"
    target.write_text("a = 1\n")
    target.chmod(0o640)
    write_atomic(target, b"a = 2\n")
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    write_atomic(target, b"a = 3\n", mode=0o600)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert target.read_text() == "a = 3\n"


def test_a_new_file_gets_the_umask_default(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        write_atomic(tmp_path / "new", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o640


def test_a_symlinked_file_is_replaced_at_its_target(tmp_path: Path) -> None:
    real = tmp_path / "real.toml"
    real.write_text("a = 1\n")
    link = tmp_path / "tako.toml"
    link.symlink_to(real)
    write_atomic(link, b"a = 2\n")
    assert link.is_symlink() and real.read_text() == "a = 2\n"


def test_exclusive_write_never_replaces_an_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "key"
    target.write_text("original")
    with pytest.raises(FileExistsError):
        write_atomic(target, b"other", mode=0o600, exclusive=True)
    with pytest.raises(ConfigError) as caught:
        write_file(target, b"other", mode=0o600, exclusive=True)
    assert str(caught.value) == f"Cannot write {target}: it already exists."
    assert target.read_text() == "original"
    assert leftovers(tmp_path) == []


def test_exclusive_write_creates_a_missing_file(tmp_path: Path) -> None:
    write_atomic(tmp_path / "key", b"secret", mode=0o600, exclusive=True)
    assert (tmp_path / "key").read_bytes() == b"secret"
    assert stat.S_IMODE((tmp_path / "key").stat().st_mode) == 0o600
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("hard_links", [True, False])
def test_place_new_never_overwrites(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    hard_links: bool) -> None:
    if not hard_links:
        def no_link(*args: object) -> None:
            raise OSError(errno.EPERM, "Operation not permitted")

        monkeypatch.setattr(os, "link", no_link)
    temp, final = tmp_path / ".part", tmp_path / "backup.tar.zst.enc"
    temp.write_bytes(b"new")
    final.write_bytes(b"old")
    with pytest.raises(FileExistsError):
        place_new(temp, final)
    assert final.read_bytes() == b"old" and temp.exists()
    final.unlink()
    place_new(temp, final)
    assert final.read_bytes() == b"new" and not temp.exists()
