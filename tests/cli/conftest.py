"""CLI tests run the real ``tako`` app through Typer's runner inside a temp app folder, with their
own TAKO_HOME and no terminal (prompts are faked by patching ``stdin_is_terminal``).

``demo`` starts in-process tako-servers (tests/cli/remote_harness.py) that trust ``key``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from tako_backups.cli import app
from tako_backups.remote.signing import FileSigner
from tests.app_setup import BASIC_TOML, make_app_dir, own_tako_home
from tests.cli.remote_harness import Demo, Fleet, Tako, prepare

TOML = "# demo app\n" + BASIC_TOML


@pytest.fixture(autouse=True)
def tako_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return own_tako_home(tmp_path, monkeypatch)


@pytest.fixture
def app_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = make_app_dir(tmp_path, TOML)
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


@pytest.fixture
def demo(tmp_path: Path, tako_home: Path, signer: FileSigner, tako: Tako,
         monkeypatch: pytest.MonkeyPatch) -> Demo:
    """``demo(*servers, **kw)``: the demo project on in-process servers (default: ``la``)."""
    def make(*servers: str, **kw: Any) -> Fleet:
        return prepare(tmp_path, tako_home, signer, tako, monkeypatch, servers or ("la",), **kw)

    return make
