"""Setup the project and CLI tests share: a TAKO_HOME of the test's own (keys and config.toml)
with no passphrase from the shell, and an app folder with a basic tako.toml."""

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


def own_tako_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make ``tmp_path/tako-home`` the TAKO_HOME and drop TAKO_SECRETS_PASSPHRASE; returns the home."""
    home = tmp_path / "tako-home"
    home.mkdir()
    monkeypatch.setenv("TAKO_HOME", str(home))
    monkeypatch.delenv("TAKO_SECRETS_PASSPHRASE", raising=False)
    return home


def make_app_dir(tmp_path: Path, toml: str = BASIC_TOML) -> Path:
    """``tmp_path/demo`` holding ``toml`` as its tako.toml."""
    folder = tmp_path / "demo"
    folder.mkdir()
    (folder / "tako.toml").write_text(toml)
    return folder
