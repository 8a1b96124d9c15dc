"""Every test gets its own TAKO_HOME (keys and config.toml) and no passphrase from the shell."""

from __future__ import annotations

from pathlib import Path

import pytest

BASIC_TOML = """\
name = "demo"

[envs.production]
route = "demo.example.com"
servers = ["la-1"]
backup = { storage = "backups" }

[storages.backups]
bucket = "demo-backups"
endpoint = "https://s3.example.com"
region = "auto"
"""


@pytest.fixture(autouse=True)
def tako_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "tako-home"
    home.mkdir()
    monkeypatch.setenv("TAKO_HOME", str(home))
    monkeypatch.delenv("TAKO_SECRETS_PASSPHRASE", raising=False)
    return home


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "demo"
    folder.mkdir()
    (folder / "tako.toml").write_text(BASIC_TOML)
    return folder
