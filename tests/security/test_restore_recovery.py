"""What ``recover_interrupted_restores`` makes of each state a crash can leave in ``tmp/restore/``,
including the double faults a kill -9 alone cannot produce: the live tree ends whole (old or
new), and a tree is deleted only when a whole copy of it is live."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import pytest

from tako_backups.core.swap import remove_tree
from tako_backups.server.paths import ServerPaths
from tako_backups.server.recovery import recover_interrupted_restores

STAGING = "demo.production.b1710000000-AbCdEf12.0a1b2c3d"


@pytest.fixture
def paths(tmp_path: Path) -> ServerPaths:
    paths = ServerPaths(tmp_path / "tako")
    paths.prepare()
    return paths


def make_tree(root: Path, label: str) -> Path:
    (root / "app" / "uploads").mkdir(parents=True)
    (root / "tako").mkdir()
    (root / "app" / "uploads" / "a.txt").write_text(f"{label} upload\n")
    (root / "app" / "notes.db").write_text(f"{label} db\n")
    return root


def label_of(live: Path) -> str:
    return (live / "app" / "notes.db").read_text().split()[0]


def test_staging_without_aside_is_removed_and_live_untouched(paths: ServerPaths) -> None:
    live = make_tree(paths.data_dir("demo", "production"), "old")
    make_tree(paths.restore_work / STAGING / "tree", "new")
    assert recover_interrupted_restores(paths) == [f"removed {paths.restore_work / STAGING}"]
    assert label_of(live) == "old"
    assert list(paths.restore_work.iterdir()) == []


def test_death_between_the_renames_moves_the_old_tree_back(paths: ServerPaths) -> None:
    staging = paths.restore_work / STAGING
    make_tree(staging / "tree", "new")
    make_tree(staging / "aside", "old")
    live = paths.data_dir("demo", "production")
    live.parent.mkdir(parents=True)
    assert recover_interrupted_restores(paths) == [f"moved {staging / 'aside'} back to {live}"]
    assert label_of(live) == "old"
    assert list(paths.restore_work.iterdir()) == []


def test_empty_skeleton_made_since_is_replaced_by_the_old_tree(paths: ServerPaths) -> None:
    staging = paths.restore_work / STAGING
    make_tree(staging / "tree", "new")
    make_tree(staging / "aside", "old")
    live = paths.ensure_data_dir("demo", "production")  # e.g. a scheduled backup ran since
    recover_interrupted_restores(paths)
    assert label_of(live) == "old"
    assert sorted(p.name for p in live.iterdir()) == ["app", "tako"]


def test_death_after_the_swap_keeps_the_new_tree(paths: ServerPaths) -> None:
    staging = paths.restore_work / STAGING
    make_tree(staging / "aside", "old")
    live = make_tree(paths.data_dir("demo", "production"), "new")
    assert recover_interrupted_restores(paths) == [f"removed {staging}"]
    assert label_of(live) == "new"
    assert list(paths.restore_work.iterdir()) == []


def test_death_after_swapping_in_an_empty_backup_keeps_it(paths: ServerPaths) -> None:
    """A restored tree with no files is still the restored tree: it is not mistaken for a skeleton."""
    staging = paths.restore_work / STAGING
    make_tree(staging / "aside", "old")
    live = paths.ensure_data_dir("demo", "production")
    recover_interrupted_restores(paths)
    assert not any(p.is_file() for p in live.rglob("*"))
    assert list(paths.restore_work.iterdir()) == []


def test_stranded_tree_is_kept_when_live_holds_files_again(paths: ServerPaths,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    """A swap that could not roll back, then an app that wrote into a fresh data dir: neither
    tree is deleted, and the log says where both are."""
    staging = paths.restore_work / STAGING
    make_tree(staging / "tree", "new")
    make_tree(staging / "aside", "old")
    live = make_tree(paths.data_dir("demo", "production"), "interim")
    with caplog.at_level(logging.ERROR, logger="tako_backups.server.recovery"):
        assert recover_interrupted_restores(paths) == [f"kept {staging}"]
    assert label_of(live) == "interim" and label_of(staging / "aside") == "old"
    assert label_of(staging / "tree") == "new"
    assert f"kept {staging}: {live} holds files again" in caplog.text


def test_staging_with_aside_but_no_app_name_is_kept(paths: ServerPaths) -> None:
    staging = paths.restore_work / "not-an-app-folder"
    make_tree(staging / "aside", "old")
    assert recover_interrupted_restores(paths) == [f"kept {staging}"]
    assert label_of(staging / "aside") == "old"


def test_backup_scratch_folders_are_removed(paths: ServerPaths) -> None:
    scratch = paths.backup_work / "b1710000000-XyZ12345"
    scratch.mkdir()
    (scratch / "snapshot.db").write_bytes(b"x" * 100)
    assert recover_interrupted_restores(paths) == [f"removed {scratch}"]
    assert list(paths.backup_work.iterdir()) == []


def test_remove_tree_removes_folders_the_archive_made_read_only(tmp_path: Path) -> None:
    """As a non-root user (nobody, when the suite runs as root) read-only folders would stop a
    plain rmtree and leave staging behind."""
    as_nobody = os.geteuid() == 0
    base = Path(tempfile.mkdtemp(prefix="tako-rm-", dir="/tmp")) if as_nobody else tmp_path
    try:
        tree = base / "staging"
        make_tree(tree / "aside", "old")
        for folder in (tree / "aside" / "app" / "uploads", tree / "aside" / "app", tree / "aside"):
            os.chmod(folder, 0o500)
        if as_nobody:
            for path in [base, *base.rglob("*")]:
                os.lchown(path, 65534, 65534)
            os.chmod(base, 0o755)
        pid = os.fork()
        if pid == 0:  # the child drops to nobody (when root), removes the tree, reports by exit code
            code = 1
            try:
                if as_nobody:
                    os.setgid(65534)
                    os.setuid(65534)
                remove_tree(tree)
                code = 0 if not tree.exists() else 1
            finally:
                os._exit(code)
        assert os.waitpid(pid, 0)[1] == 0
        assert not tree.exists()
    finally:
        if as_nobody:
            remove_tree(base)
    remove_tree(tmp_path / "missing")  # nothing there: no error
