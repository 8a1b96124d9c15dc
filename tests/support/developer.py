"""The developer's side of the end-to-end tests: a home with an SSH key, TAKO_HOME, an app folder
with tako.toml, and `tako` run in-process (Typer's CliRunner) or as `python -m tako_backups`.

Servers are real `tako-server serve` subprocesses (``start_server`` of tests/support/tako_server.py,
with a server name of their own, so two servers of one env keep separate bucket prefixes).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from tako_backups.cli import app
from tests.support.keys import make_key
from tests.support.s3_servers import SeaweedFS
from tests.support.tako_server import ROOT, RunningServer


@dataclass
class Developer:
    """A laptop: HOME (with ~/.ssh/id_ed25519), TAKO_HOME and one app folder."""

    home: Path
    tako_home: Path
    app_dir: Path

    def env(self) -> dict[str, str]:
        return {"HOME": str(self.home), "TAKO_HOME": str(self.tako_home)}

    def write_servers(self, servers: dict[str, RunningServer], key_path: Path | None = None) -> None:
        extra = f'key_path = "{key_path}"\n' if key_path is not None else ""
        (self.tako_home / "config.toml").write_text("".join(
            f'[[servers]]\nname = "{name}"\nhost = "127.0.0.1"\nmanagement_port = {server.port}\n{extra}\n'
            for name, server in servers.items()))

    def write_project(self, name: str, servers: list[str], store: SeaweedFS, bucket: str,
                      start: list[str] | None = None, *, endpoint: str | None = None,
                      path_style: bool = True) -> None:
        """tako.toml for app ``name`` on ``servers``, backing up to ``bucket`` at ``endpoint``
        (default: ``store``'s), path style unless ``path_style`` is False (Tako's default)."""
        lines = [f'name = "{name}"']
        if start is not None:
            lines.append("start = " + json.dumps(start))
        lines += ["", "[envs.production]", f'route = "{name}.example.com"',
                  f"servers = {json.dumps(servers)}", 'backup = { storage = "backups" }', "",
                  "[storages.backups]", f'bucket = "{bucket}"',
                  f'endpoint = "{endpoint or store.endpoint}"', 'region = "us-east-1"',
                  *(["force_path_style = true"] if path_style else []), ""]
        self.app_dir.mkdir(parents=True, exist_ok=True)
        (self.app_dir / "tako.toml").write_text("\n".join(lines))

    def set_credentials(self, access_key: str, secret_key: str) -> None:
        """`tako storages credentials backups` for production, never expiring."""
        result = self.tako("storages", "credentials", "backups", "--env", "production", "--access-key-id",
                           access_key, "--secret-access-key", secret_key, "--expires-on", "never")
        assert result.exit_code == 0, result.output

    def tako(self, *args: str) -> Result:
        """Run `tako` in-process (the caller has set HOME/TAKO_HOME and the cwd)."""
        return CliRunner().invoke(app, list(args))

    def tako_process(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run `python -m tako_backups` as its own process, in the app folder."""
        env = {**os.environ, **self.env(), "PYTHONPATH": str(ROOT)}
        env.pop("SSH_AUTH_SOCK", None)
        return subprocess.run([sys.executable, "-m", "tako_backups", *args], cwd=self.app_dir, env=env,
                              capture_output=True, text=True, timeout=60)

    def json(self, *args: str) -> Any:
        result = self.tako(*args, "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)


def developer_home(folder: Path) -> Path:
    """``folder`` as a developer's HOME: a new key at ~/.ssh/id_ed25519."""
    (folder / ".ssh").mkdir(mode=0o700)
    make_key(folder / ".ssh" / "id_ed25519", "dev@laptop")
    return folder


def enter_developer(tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch) -> Developer:
    """A Developer with ``home``, and TAKO_HOME and the app folder in ``tmp_path``: HOME and
    TAKO_HOME set, no ssh-agent, no secrets passphrase, the cwd its app folder."""
    developer = Developer(home, tmp_path / "tako-home", tmp_path / "app")
    developer.tako_home.mkdir()
    developer.app_dir.mkdir()
    for name, value in developer.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    monkeypatch.delenv("TAKO_SECRETS_PASSPHRASE", raising=False)
    monkeypatch.chdir(developer.app_dir)
    return developer
