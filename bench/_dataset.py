"""The benchmark data tree: built once per size by ../shared/bench/make_dataset.py and cached."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAKE_DATASET_CANDIDATES = (ROOT.parent / "shared" / "bench" / "make_dataset.py",
                           Path("/work/shared/bench/make_dataset.py"))


def make_dataset_script() -> Path:
    """The dataset generator: ../shared/bench relative to the repo, else /work/shared/bench."""
    for candidate in MAKE_DATASET_CANDIDATES:
        if candidate.exists():
            return candidate
    raise SystemExit("make_dataset.py not found in ../shared/bench nor /work/shared/bench")


def ensure_dataset(cache: Path, mb: int) -> Path:
    """``cache/datasets/mb{mb}``, built on first use (into a ``.partial`` folder, then renamed)."""
    final = cache / "datasets" / f"mb{mb}"
    if (final / "app").is_dir() and (final / "tako").is_dir():
        return final
    partial = final.with_name(final.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    print(f"building the {mb} MB dataset in {final} (once) ...", flush=True)
    subprocess.run([sys.executable, str(make_dataset_script()), str(partial), "--mb", str(mb)],
                   check=True)
    os.rename(partial, final)
    return final


def tree_bytes(root: Path) -> int:
    """Bytes of the regular files under ``root`` (symlinks not followed)."""
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except FileNotFoundError:
                continue
            if not os.path.islink(os.path.join(dirpath, name)):
                total += st.st_size
    return total


def link_tree(source: Path, dest: Path) -> None:
    """Make ``dest`` (``app/`` + ``tako/``) a hard-linked copy of ``source``: instant, no extra
    disk, and the page cache is shared. A restore replaces ``dest`` by renames, never writes
    through the links, so the cached dataset stays intact."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    os.chmod(dest, 0o710)
    for top in ("app", "tako"):
        subprocess.run(["cp", "-al", str(source / top), str(dest / top)], check=True)
