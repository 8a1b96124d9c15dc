from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tako_backups.models import BackupKey

ROOT = Path(__file__).resolve().parents[2]
MAKE_DATASET = next(
    (p for p in (ROOT.parent / "shared" / "bench" / "make_dataset.py",
                 Path("/work/shared/bench/make_dataset.py")) if p.exists()),
    ROOT.parent / "shared" / "bench" / "make_dataset.py",
)


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small deterministic data root made by ../shared/bench/make_dataset.py."""
    root = tmp_path_factory.mktemp("dataset") / "data"
    subprocess.run([sys.executable, str(MAKE_DATASET), str(root), "--mb", "3"], check=True,
                   capture_output=True)
    return root


@pytest.fixture
def key() -> BackupKey:
    return BackupKey("backup-key-0123456789abcdef", os.urandom(32))


@pytest.fixture
def other_key() -> BackupKey:
    return BackupKey("backup-key-fedcba9876543210", os.urandom(32))
