"""Every test gets its own TAKO_HOME (keys and config.toml) and no passphrase from the shell."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.app_setup import make_app_dir, own_tako_home


@pytest.fixture(autouse=True)
def tako_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return own_tako_home(tmp_path, monkeypatch)


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    return make_app_dir(tmp_path)
