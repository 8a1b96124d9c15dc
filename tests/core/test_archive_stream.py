"""The hand-rolled tar writer emits tarfile's exact bytes and GNU tar reads back every field;
SQLite snapshots run ahead safely."""

from __future__ import annotations

import io
import os
import sqlite3
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest
import zstandard

from tako_backups.core import archive
from tako_backups.core.archive import write_archive
from tako_backups.core.snapshot import PinnedDatabase, SnapshotError

from .treecmp import describe


def _tree(root: Path) -> Path:
    (root / "app" / "deep" / ("d" * 120)).mkdir(parents=True)
    (root / "tako").mkdir()
    (root / "app" / "empty").write_bytes(b"")
    (root / "app" / "block").write_bytes(os.urandom(512))
    (root / "app" / "big").write_bytes(os.urandom(3 * (1 << 20) + 17))
    (root / "app" / "deep" / ("d" * 120) / "ünïcode.txt").write_text("hello")
    os.symlink("deep", root / "app" / "link")
    return root


def _plain(root: Path, scratch: Path) -> bytes:
    out = io.BytesIO()
    write_archive(root, out, scratch)
    return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(out.getvalue())).read()


def test_tar_bytes_match_what_tarfile_writes_for_the_same_files(tmp_path: Path) -> None:
    """Headers made by tarfile's own ``gettarinfo`` (lstat to header), not by our code: the
    hand-rolled writer emits tarfile's exact PAX bytes, with no user or group names (as Tako's)."""
    root = _tree(tmp_path / "data")
    (tmp_path / "scratch").mkdir()
    plain = _plain(root, tmp_path / "scratch")
    with tarfile.open(fileobj=io.BytesIO(plain)) as ours:
        names = ours.getnames()  # the member order is ours to choose; the bytes of each are not
    assert names[:1] == ["app"] and "tako" in names and f"app/deep/{'d' * 120}/ünïcode.txt" in names
    expected = io.BytesIO()
    with tarfile.open(fileobj=expected, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for name in names:
            info = tar.gettarinfo(root / name, arcname=name)
            info.uname = info.gname = ""
            if info.isfile():
                with open(root / name, "rb") as body:
                    tar.addfile(info, body)
            else:
                tar.addfile(info)
    assert plain == expected.getvalue()


def test_gnu_tar_lists_and_extracts_what_the_source_tree_holds(tmp_path: Path) -> None:
    """GNU tar reads every header field as the source files have them, and extracts the same tree."""
    root = _tree(tmp_path / "data")
    (tmp_path / "scratch").mkdir()
    (tmp_path / "a.tar").write_bytes(_plain(root, tmp_path / "scratch"))
    listing = subprocess.run(["tar", "--numeric-owner", "-tvf", str(tmp_path / "a.tar")], check=True,
                             capture_output=True, text=True).stdout.splitlines()
    seen = {}
    for line in listing:
        mode, owner, size, _day, _time, name = line.split(maxsplit=5)
        name, _, target = name.partition(" -> ")
        seen[name.rstrip("/")] = (mode, owner, int(size), target)
    expected = {}
    for path in sorted(p for p in root.rglob("*")):
        st = path.lstat()
        target = os.readlink(path) if path.is_symlink() else ""
        size = st.st_size if stat.S_ISREG(st.st_mode) else 0
        expected[str(path.relative_to(root))] = (stat.filemode(st.st_mode), f"{st.st_uid}/{st.st_gid}", size,
                                                 target)
    assert seen == expected
    with tarfile.open(tmp_path / "a.tar") as tar:
        assert {m.name: m.mtime for m in tar} == {rel: (root / rel).lstat().st_mtime for rel in expected}
    (tmp_path / "out").mkdir()
    subprocess.run(["tar", "-xpf", str(tmp_path / "a.tar"), "-C", str(tmp_path / "out")], check=True)
    assert describe(tmp_path / "out") == describe(root)


def test_a_file_that_shrinks_is_zero_padded_to_its_header_size(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    root = _tree(tmp_path / "data")
    real_readv = os.readv

    def short_readv(fd: int, buffers: list[memoryview]) -> int:
        st = os.fstat(fd)
        return 0 if st.st_size == 512 and stat.S_ISREG(st.st_mode) else real_readv(fd, buffers)

    monkeypatch.setattr(archive.os, "readv", short_readv)
    (tmp_path / "scratch").mkdir()
    with tarfile.open(fileobj=io.BytesIO(_plain(root, tmp_path / "scratch"))) as tar:
        block = tar.extractfile("app/block")
        assert block is not None and block.read() == bytes(512)
        big = tar.extractfile("app/big")
        assert big is not None and big.read() == (root / "app" / "big").read_bytes()


def test_databases_are_archived_once_each_whatever_order_their_snapshots_finish(tmp_path: Path) -> None:
    root = _tree(tmp_path / "data")
    for path in (root / "app" / "a.db", root / "app" / "deep" / "b.db", root / "tako" / "workflows.sqlite"):
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE t (v TEXT)")
        conn.execute("INSERT INTO t VALUES (?)", (path.name,))
        conn.commit()
        conn.close()
    (tmp_path / "scratch").mkdir()
    out = io.BytesIO()
    stats = write_archive(root, out, tmp_path / "scratch")
    assert stats.sqlite_files == 3
    assert list((tmp_path / "scratch").iterdir()) == []
    plain = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(out.getvalue())).read()
    with tarfile.open(fileobj=io.BytesIO(plain)) as tar:
        names = tar.getnames()
        assert sorted(names) == sorted(set(names))
        for name in ("app/a.db", "app/deep/b.db", "tako/workflows.sqlite"):
            member = tar.extractfile(name)
            assert member is not None and member.read(16) == b"SQLite format 3\x00"


def test_a_failed_snapshot_fails_the_archive_and_leaves_no_scratch(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    root = _tree(tmp_path / "data")
    conn = sqlite3.connect(root / "app" / "a.db")
    conn.execute("CREATE TABLE t (v)")
    conn.commit()
    conn.close()

    def broken(self: PinnedDatabase, dest: Path) -> None:
        dest.write_bytes(b"partial")
        raise SnapshotError(f"Could not snapshot SQLite database '{self.source}': disk I/O error.")

    monkeypatch.setattr(PinnedDatabase, "copy_to", broken)
    (tmp_path / "scratch").mkdir()
    with pytest.raises(SnapshotError, match="a.db': disk I/O error"):
        write_archive(root, io.BytesIO(), tmp_path / "scratch")
    assert list((tmp_path / "scratch").iterdir()) == []


def test_a_row_in_the_snapshot_never_names_an_upload_the_archive_lacks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The app writes ``uploads/n.txt``, then commits row n. Rows committed while the copy of
    the database runs are not in the snapshot; files written before a row that *is* in the
    snapshot must be in the archive, even in a folder the walk lists after the database."""
    root = _tree(tmp_path / "data")
    (root / "app" / "uploads").mkdir()
    db = sqlite3.connect(root / "app" / "a.db", isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY)")

    def write_note(n: int) -> None:
        (root / "app" / "uploads" / f"{n}.txt").write_text(str(n))
        db.execute("INSERT INTO notes VALUES (?)", (n,))

    write_note(1)
    real_copy = PinnedDatabase.copy_to

    def slow_copy(self: PinnedDatabase, dest: Path) -> None:
        # the app goes on writing after the snapshot was pinned and before the walk lists uploads/
        for n in range(2, 6):
            write_note(n)
        real_copy(self, dest)

    monkeypatch.setattr(PinnedDatabase, "copy_to", slow_copy)
    out = io.BytesIO()
    (tmp_path / "scratch").mkdir()
    write_archive(root, out, tmp_path / "scratch")
    db.close()
    extracted = tmp_path / "out"
    with tarfile.open(fileobj=io.BytesIO(zstandard.ZstdDecompressor().decompress(
            out.getvalue(), max_output_size=1 << 26))) as tar:
        tar.extractall(extracted, filter="data")
    rows = [r[0] for r in sqlite3.connect(extracted / "app" / "a.db").execute("SELECT id FROM notes")]
    uploads = {int(p.stem) for p in (extracted / "app" / "uploads").glob("*.txt")}
    assert rows == [1]
    assert set(rows) <= uploads


class _ThreadCountingSink(io.BytesIO):
    """Records the most OS threads this process had while the archive was being written."""

    most = 0

    def write(self, data: bytes | memoryview) -> int:  # type: ignore[override]
        self.most = max(self.most, len(os.listdir("/proc/self/task")))
        return super().write(data)


def test_zstd_in_the_caller_writes_the_same_single_frame_without_worker_threads(tmp_path: Path) -> None:
    """The kept-tree upload (beside the restarted app) compresses on the archiving thread: one
    frame, the same tar, and no zstd workers (the tree has no database: no snapshot thread
    either), where the default starts at least one."""
    root = _tree(tmp_path / "data")
    for n in range(4):  # several MiB of compressible data, so both compressors emit many chunks
        (root / "app" / f"text{n}").write_bytes(b"tako backups " * 300_000)
    (tmp_path / "scratch").mkdir()
    before = len(os.listdir("/proc/self/task"))
    outs = {}
    for workers in (archive.ZSTD_THREADS, archive.ZSTD_IN_CALLER):
        out = _ThreadCountingSink()
        write_archive(root, out, tmp_path / "scratch", zstd_workers=workers)
        outs[workers] = out
    alone = outs[archive.ZSTD_IN_CALLER]
    whole = zstandard.ZstdDecompressor().decompressobj()
    plain = whole.decompress(alone.getvalue())
    assert whole.eof and not whole.unused_data  # exactly one frame
    assert plain == _plain(root, tmp_path / "scratch")
    assert alone.most == before < outs[archive.ZSTD_THREADS].most
