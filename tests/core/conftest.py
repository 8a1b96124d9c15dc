from __future__ import annotations

import os
from pathlib import Path

import pytest

from tako_backups.models import BackupKey
from tests.support.dataset import make_dataset


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small deterministic app data root (tests/support/dataset.py, 3 MiB)."""
    root = tmp_path_factory.mktemp("dataset") / "data"
    make_dataset(root, mb=3)
    return root


@pytest.fixture
def other_key() -> BackupKey:
    return BackupKey("backup-key-fedcba9876543210", os.urandom(32))
