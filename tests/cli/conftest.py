"""CLI tests run the real ``tako`` app through Typer's runner inside a temp app folder, with their
own TAKO_HOME and no terminal (prompts are faked by patching ``stdin_is_terminal``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from tako_backups.cli import app

TOML = """\
# demo app
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
def app_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "demo"
    folder.mkdir()
    (folder / "tako.toml").write_text(TOML)
    monkeypatch.chdir(folder)
    return folder


@pytest.fixture
def tako() -> Callable[..., Result]:
    runner = CliRunner()

    def run(*args: str, input: str | None = None) -> Result:
        return runner.invoke(app, list(args), input=input)

    return run


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tako_backups.cli.prompts.stdin_is_terminal", lambda: True)
