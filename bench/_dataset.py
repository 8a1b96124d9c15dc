"""The benchmark data tree: built once per size by tests/support/dataset.py and cached.

Imported by run.py, which puts the repository root on ``sys.path``."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from tests.support import dataset


def ensure_dataset(cache: Path, mb: int) -> Path:
    """``cache/datasets/mb{mb}-{generator}``, built on first use (into a ``.partial`` folder, then
    renamed). ``{generator}`` is a digest of tests/support/dataset.py, so a changed generator
    never reuses a tree an older one built."""
    generator = hashlib.sha256(Path(dataset.__file__).read_bytes()).hexdigest()[:10]
    final = cache / "datasets" / f"mb{mb}-{generator}"
    if (final / "app").is_dir() and (final / "tako").is_dir():
        return final
    partial = final.with_name(final.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    print(f"building the {mb} MB dataset in {final} (once) ...", flush=True)
    dataset.make_dataset(partial, mb)
    os.rename(partial, final)
    return final


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
