"""Archiving never reads through a symlink: an app that swaps a file, a folder or a database for
a symlink to a secret outside its data root while a backup runs gets that entry left out of the
archive, never the secret in it."""

from __future__ import annotations

import io
import os
import sqlite3
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import zstandard

from tako_backups.core import archive
from tako_backups.core import snapshot as snapshot_module
from tako_backups.core.archive import ArchiveStats, write_archive
from tako_backups.core.snapshot import Entry

SECRET = b"-----BEGIN PRIVATE KEY----- server secret " + os.urandom(16).hex().encode()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A data root with app files and a folder, and a secret folder next to it (the server's
    ``state/``), holding files named like the app's."""
    data = tmp_path / "data"
    (data / "app" / "sub").mkdir(parents=True)
    (data / "tako").mkdir()
    (data / "app" / "config.txt").write_bytes(b"app config")
    (data / "app" / "sub" / "server.key").write_bytes(b"the app's own key file")
    (data / "app" / "zz-last.txt").write_bytes(b"last")
    state = tmp_path / "state"
    state.mkdir()
    for name in ("server.key", "config.txt"):
        (state / name).write_bytes(SECRET)
    return data


def archived(root: Path, scratch: Path) -> tuple[dict[str, bytes], bytes, ArchiveStats]:
    """(member name -> content or link target, the whole tar stream, stats)."""
    out = io.BytesIO()
    scratch.mkdir(exist_ok=True)
    stats = write_archive(root, out, scratch)
    plain = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(out.getvalue())).read()
    members: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(plain)) as tar:
        for member in tar:
            f = tar.extractfile(member) if member.isreg() else None
            members[member.name] = f.read() if f else member.linkname.encode()
    return members, plain, stats


def swap_when_walked(monkeypatch: pytest.MonkeyPatch, arcname: str, swap: Callable[[], None]) -> None:
    """Run ``swap`` right after the walk yields ``arcname`` (it has been looked at, not opened)."""
    real_walk = archive.walk

    def walk(data_root: Path) -> Iterator[Entry]:
        for entry in real_walk(data_root):
            if entry.arcname == arcname:
                swap()
            yield entry

    monkeypatch.setattr(archive, "walk", walk)


def to_symlink(path: Path, target: Path) -> Callable[[], None]:
    def swap() -> None:
        path.rename(path.with_name(path.name + ".moved"))
        path.symlink_to(target)
    return swap


def test_a_file_swapped_for_a_symlink_after_the_walk_is_left_out(
        root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    swap_when_walked(monkeypatch, "app/config.txt", to_symlink(root / "app" / "config.txt",
                                                               tmp_path / "state" / "config.txt"))
    members, plain, stats = archived(root, tmp_path / "scratch")
    assert SECRET not in plain
    assert "app/config.txt" not in members
    assert members["app/zz-last.txt"] == b"last"
    assert members["app/sub/server.key"] == b"the app's own key file"
    assert stats.files == 2


def test_a_folder_swapped_for_a_symlink_after_the_walk_entered_it_is_read_where_it_was(
        root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The walk holds the folder open: its files are read from the folder it saw (now moved
    aside), never from where the symlink points."""
    swap_when_walked(monkeypatch, "app/sub/server.key", to_symlink(root / "app" / "sub", tmp_path / "state"))
    members, plain, _ = archived(root, tmp_path / "scratch")
    assert SECRET not in plain
    assert members["app/sub/server.key"] == b"the app's own key file"


def test_a_folder_swapped_for_a_symlink_between_its_lstat_and_its_open_is_left_out(
        root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_stat = os.stat
    swapped: list[str] = []

    def stat_then_swap(name, *args, **kwargs):  # type: ignore[no-untyped-def]
        st = real_stat(name, *args, **kwargs)
        if name == "sub" and kwargs.get("dir_fd") is not None and not swapped:
            swapped.append(name)
            to_symlink(root / "app" / "sub", tmp_path / "state")()
        return st

    monkeypatch.setattr(snapshot_module.os, "stat", stat_then_swap)
    members, plain, _ = archived(root, tmp_path / "scratch")
    assert swapped == ["sub"]
    assert SECRET not in plain
    assert not any(name.startswith("app/sub") for name in members)


def test_a_symlink_swapped_for_a_file_is_left_out_not_read(
        root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reverse: the walk saw a symlink, which became something else; no target is made up."""
    (root / "app" / "link").symlink_to("/etc/hostname")

    def swap() -> None:
        (root / "app" / "link").unlink()
        (root / "app" / "link").mkdir()

    swap_when_walked(monkeypatch, "app/link", swap)
    members, _, _ = archived(root, tmp_path / "scratch")
    assert "app/link" not in members


def make_db(path: Path, marker: str) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (v TEXT)")
    conn.execute("INSERT INTO t VALUES (?)", (marker,))
    conn.commit()
    conn.close()


def test_a_database_swapped_for_a_symlink_to_another_database_is_left_out(
        root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite follows symlinks when it opens a file; the snapshot checks where it landed."""
    other = tmp_path / "other-app" / "app.db"
    other.parent.mkdir()
    make_db(other, "OTHER APP'S PRIVATE ROW")
    make_db(root / "app" / "app.db", "own row")
    make_db(root / "tako" / "workflows.sqlite", "workflows")
    swap_when_walked(monkeypatch, "app/app.db", to_symlink(root / "app" / "app.db", other))
    members, plain, stats = archived(root, tmp_path / "scratch")
    assert b"OTHER APP'S PRIVATE ROW" not in plain
    assert "app/app.db" not in members
    assert stats.sqlite_names == ["tako/workflows.sqlite"]
    assert list((tmp_path / "scratch").iterdir()) == []


def test_a_database_under_a_folder_swapped_for_a_symlink_is_left_out(
        root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "other-app"
    other.mkdir()
    make_db(other / "app.db", "OTHER APP'S PRIVATE ROW")
    make_db(root / "app" / "sub" / "app.db", "own row")
    swap_when_walked(monkeypatch, "app/sub/app.db", to_symlink(root / "app" / "sub", other))
    members, plain, stats = archived(root, tmp_path / "scratch")
    assert b"OTHER APP'S PRIVATE ROW" not in plain
    assert "app/sub/app.db" not in members and stats.sqlite_names == []


def test_a_data_root_reached_through_a_symlink_still_snapshots_its_databases(tmp_path: Path) -> None:
    """The server's own path to the data root may contain symlinks (/opt -> /data); only links
    inside it are refused."""
    real = tmp_path / "real"
    (real / "app").mkdir(parents=True)
    (real / "tako").mkdir()
    make_db(real / "app" / "app.db", "own row")
    (tmp_path / "via").symlink_to(real)
    members, plain, stats = archived(tmp_path / "via", tmp_path / "scratch")
    assert stats.sqlite_names == ["app/app.db"] and b"own row" in plain
    assert members["app/app.db"][:16] == b"SQLite format 3\x00"
