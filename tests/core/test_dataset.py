"""The test and benchmark data generator: deterministic, Tako-shaped, the sizes it promises."""

from __future__ import annotations

import filecmp
import os
import sqlite3
from pathlib import Path

import pytest
import zstandard

from tests.support.dataset import MB, make_dataset


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _size(paths: list[Path]) -> int:
    return sum(p.stat().st_size for p in paths)


def test_same_arguments_give_the_same_bytes_and_another_seed_others(tmp_path: Path) -> None:
    first, again, other = (make_dataset(tmp_path / name, mb=2, seed=seed)
                           for name, seed in (("a", 7), ("b", 7), ("c", 8)))
    assert first == again
    names = _files(tmp_path / "a")
    assert names == _files(tmp_path / "b")
    regular = [n for n in names if (tmp_path / "a" / n).is_file() and not (tmp_path / "a" / n).is_symlink()]
    match, mismatch, errors = filecmp.cmpfiles(tmp_path / "a", tmp_path / "b", regular, shallow=False)
    assert (len(match), mismatch, errors) == (len(regular), [], [])
    photo = next(n for n in regular if n.endswith(".bin"))
    assert (tmp_path / "a" / photo).read_bytes() != (tmp_path / "c" / photo).read_bytes()
    assert other.uploads > 0


def test_the_tree_holds_what_a_tako_app_keeps_in_the_promised_shares(tmp_path: Path) -> None:
    root = tmp_path / "data"
    built = make_dataset(root, mb=16)
    assert sorted(p.name for p in root.iterdir()) == ["app", "tako"]
    assert sorted(p.name for p in (root / "tako").iterdir()) == ["channels.sqlite", "workflows.sqlite"]
    for name in ("app/app.db", "tako/workflows.sqlite", "tako/channels.sqlite"):
        db = root / name
        assert db.read_bytes()[18:20] == b"\x02\x02", f"{name} is not in WAL mode"
        assert not db.with_name(db.name + "-wal").exists()  # checkpointed
        conn = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        conn.close()

    link = root / "app" / "symlink-to-latest"
    target = os.readlink(link)
    folders = sorted(p.name for p in (root / "app" / "uploads").iterdir())
    assert target == f"uploads/{folders[-1]}" and link.resolve().is_dir()

    photos = list((root / "app" / "uploads").rglob("photo-*.bin"))
    docs = list((root / "app" / "uploads").rglob("doc-*.txt"))
    assert built.uploads == len(photos) + len(docs) and all(len(list(d.iterdir())) <= 200
                                                            for d in (root / "app" / "uploads").iterdir())
    total = 16 * MB
    assert built.bytes >= total
    assert _size(photos) == int(total * 0.35) and _size(docs) == int(total * 0.20)
    assert 0.40 <= (root / "app" / "app.db").stat().st_size / total <= 0.40 + 1 / 16
    assert 0.05 <= (root / "tako" / "workflows.sqlite").stat().st_size / total <= 0.05 + 1 / 16

    photo = photos[0].read_bytes()
    doc = docs[0].read_bytes()
    assert len(zstandard.ZstdCompressor(level=3).compress(photo)) > len(photo)  # incompressible
    assert len(zstandard.ZstdCompressor(level=3).compress(doc)) < len(doc) / 2  # text-like
    assert doc.decode("ascii").count(" ") > len(doc) / 12


def test_a_size_below_one_mb_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 1 MB"):
        make_dataset(tmp_path / "x", mb=0)
