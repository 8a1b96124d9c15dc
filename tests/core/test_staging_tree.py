"""Extraction walks every path with directory descriptors: no component ever resolves through a
symlink, whether the archive made it or it was there before; names that differ only in case do
not get around that; descriptors stay bounded and are all closed."""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tako_backups.core.extract import ExtractResult, extract_stream
from tako_backups.core.staging_tree import DIR_CACHE, StagingTree
from tako_backups.errors import UnsafeArchiveError
from tests.core.archive_helpers import add_file, add_special, tar_bytes

REFUSE = "; refusing to restore."


def extract(dest: Path, build: Callable[[tarfile.TarFile], None], progress: object = None) -> ExtractResult:
    stream = io.BytesIO(tar_bytes(build))
    return extract_stream(stream, dest, progress) if progress is not None else extract_stream(stream, dest)


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    (tmp_path / "tree").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_bytes(b"outside data")
    return tmp_path / "tree"


@pytest.mark.parametrize("link_at", ["app/sub", "app/a/b", "tako/deep/er"])
def test_a_symlink_already_in_the_middle_of_a_path_is_never_followed(dest: Path, link_at: str) -> None:
    outside = dest.parent / "outside"
    (dest / link_at).parent.mkdir(parents=True)
    (dest / link_at).symlink_to(outside)
    member = f"{link_at}/x/evil"
    with pytest.raises(UnsafeArchiveError) as refused:
        extract(dest, lambda t: add_file(t, member, b"evil"))
    assert str(refused.value) == f"Archive entry '{member}' would be written through a symlink{REFUSE}"
    assert listing(outside) == ["secret"]


def test_a_symlink_already_where_a_file_goes_is_neither_followed_nor_replaced(dest: Path) -> None:
    outside = dest.parent / "outside"
    (dest / "app").mkdir()
    (dest / "app" / "config").symlink_to(outside / "secret")
    with pytest.raises(UnsafeArchiveError) as refused:
        extract(dest, lambda t: add_file(t, "app/config", b"overwritten"))
    assert str(refused.value) == f"Archive entry 'app/config' clashes with an earlier entry{REFUSE}"
    assert (outside / "secret").read_bytes() == b"outside data"
    assert os.readlink(dest / "app" / "config") == str(outside / "secret")


def test_a_symlink_already_where_a_folder_goes_is_refused(dest: Path) -> None:
    outside = dest.parent / "outside"
    (dest / "app").mkdir()
    (dest / "app" / "data").symlink_to(outside)

    def build(t: tarfile.TarFile) -> None:
        add_special(t, "app/data", tarfile.DIRTYPE)
        add_file(t, "app/data/evil")

    with pytest.raises(UnsafeArchiveError) as refused:
        extract(dest, build)
    assert str(refused.value) == f"Archive entry 'app/data' would be written through a symlink{REFUSE}"
    assert listing(outside) == ["secret"]


def test_names_differing_in_case_stay_inside_the_tree(dest: Path) -> None:
    """``app/A -> ..`` then ``app/a/x``: on a case-insensitive filesystem ``app/a`` is the link and
    the member is refused; on this one they are two entries, and ``x`` lands in a real folder."""
    def build(t: tarfile.TarFile) -> None:
        add_special(t, "app/A", tarfile.SYMTYPE, "..")
        add_file(t, "app/a/x", b"inside")

    extract(dest, build)
    assert os.readlink(dest / "app" / "A") == ".."
    assert not (dest / "app" / "a").is_symlink()
    assert (dest / "app" / "a" / "x").read_bytes() == b"inside"
    assert not (dest / "x").exists() and listing(dest.parent / "outside") == ["secret"]


def test_a_case_insensitive_match_on_a_symlink_is_refused(dest: Path) -> None:
    """What a case-insensitive (or normalizing) filesystem shows the extractor for ``app/a`` once
    ``app/A -> ..`` exists: a symlink under the name it opens. The string checks pass (the names
    differ), the descriptor walk refuses."""
    (dest / "app").mkdir()
    (dest / "app" / "a").symlink_to("..")  # as app/a resolves to app/A -> .. there
    with pytest.raises(UnsafeArchiveError) as refused:
        extract(dest, lambda t: (add_special(t, "app/A", tarfile.SYMTYPE, ".."), add_file(t, "app/a/x")))
    assert str(refused.value) == f"Archive entry 'app/a/x' would be written through a symlink{REFUSE}"
    assert not (dest / "x").exists()


def test_a_file_where_a_folder_is_needed_clashes(dest: Path) -> None:
    with pytest.raises(UnsafeArchiveError) as refused:
        extract(dest, lambda t: (add_file(t, "app/f"), add_file(t, "app/f/x")))
    assert str(refused.value) == f"Archive entry 'app/f/x' clashes with an earlier entry{REFUSE}"


def test_folders_get_their_modes_last_deepest_first(dest: Path) -> None:
    """Folder entries after their contents, a read-only parent over a closed child, and a folder
    listed twice: every file lands, each folder ends with its last entry's mode and time."""
    def build(t: tarfile.TarFile) -> None:
        add_file(t, "app/ro/sub/f", b"f")
        for name, mode in (("app/ro/sub", 0o000), ("app/ro", 0o500), ("app/ro", 0o550)):
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, 1_600_000_000
            t.addfile(info)

    extract(dest, build)
    try:
        assert (dest / "app" / "ro").stat().st_mode & 0o7777 == 0o550
        assert (dest / "app" / "ro" / "sub").stat().st_mode & 0o7777 == 0o000
        assert (dest / "app" / "ro").stat().st_mtime == 1_600_000_000
        assert (dest / "app" / "ro" / "sub" / "f").read_bytes() == b"f"
    finally:
        os.chmod(dest / "app" / "ro", 0o755)
        os.chmod(dest / "app" / "ro" / "sub", 0o755)


class FdCounter:
    """Progress that samples the number of open descriptors at every file written."""

    def __init__(self) -> None:
        self.most = 0

    def start(self, description: str, total: int | None = None) -> None:
        pass

    def advance(self, amount: int) -> None:
        self.most = max(self.most, open_fds())

    def finish(self) -> None:
        pass


def test_descriptors_stay_bounded_and_are_all_closed(dest: Path) -> None:
    """1,200 folders, 150 levels deep in places: at most the cache's descriptors are open at once,
    and none is left open afterwards."""
    def build(t: tarfile.TarFile) -> None:
        for i in range(1000):
            add_file(t, f"app/d{i % 200}/e{i}/f", b"x")
        add_file(t, "tako/" + "/".join(f"l{i}" for i in range(150)) + "/deep", b"deep")

    before = open_fds()
    counter = FdCounter()
    result = extract(dest, build, counter)
    assert result.members == 1003
    assert before < counter.most <= before + DIR_CACHE + 4
    assert open_fds() == before
    assert (dest / "tako" / "/".join(f"l{i}" for i in range(150)) / "deep").read_bytes() == b"deep"


def test_descriptors_are_closed_after_a_refusal(dest: Path) -> None:
    before = open_fds()
    with pytest.raises(UnsafeArchiveError):
        extract(dest, lambda t: (add_file(t, "app/a/b/c"), add_special(t, "app/l", tarfile.SYMTYPE, "/"),
                                 add_file(t, "app/l/x")))
    assert open_fds() == before


def test_the_tree_closes_its_descriptors_once(dest: Path) -> None:
    before = open_fds()
    tree = StagingTree(dest, cache_size=2)
    for i in range(5):
        tree.make_folder(("app", f"d{i}", "e"), "label")
    assert open_fds() <= before + 3
    tree.close()
    tree.close()
    assert open_fds() == before
