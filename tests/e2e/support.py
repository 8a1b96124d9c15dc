"""The developer's side of the end-to-end tests: a home with an SSH key, TAKO_HOME, an app folder
with tako.toml, and `tako` run in-process (Typer's CliRunner) or as `python -m tako_backups`.

Servers are real `tako-server serve` subprocesses (tests/server/e2e_support.py); this adds one
that takes its own server name, so two servers of one env keep separate bucket prefixes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from typer.testing import CliRunner, Result

from tako_backups.cli import app
from tako_backups.errors import RemoteError
from tako_backups.remote.client import RpcClient
from tako_backups.remote.signing import FileSigner
from tests.server.e2e_support import ROOT, SERVER, RunningServer, free_port, server_env, wait_for
from tests.servers import SeaweedFS


def start_named_server(data_dir: Path, signer: FileSigner, name: str) -> RunningServer:
    """`tako-server serve` calling itself ``name``, with ``signer`` authorized; returns once
    ``hello`` answers."""
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "config.json").write_text(json.dumps({"server_name": name}))
    subprocess.run([*SERVER, "authorize-key", f"{signer.path}.pub", "--data-dir", str(data_dir)],
                   env=server_env(), capture_output=True, check=True)
    port = free_port()
    log_path = data_dir.parent / f"{data_dir.name}-server.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [*SERVER, "serve", "--data-dir", str(data_dir), "--host", "127.0.0.1", "--port", str(port)],
            env=server_env(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    server = RunningServer(process, port, data_dir, log_path)

    def ready() -> bool:
        assert process.poll() is None, f"tako-server exited early:\n{server.log_tail()}"
        try:
            with RpcClient(name, "127.0.0.1", port, []) as client:
                return bool(client.call("hello")["server"] == name)
        except RemoteError:
            return False

    wait_for(ready, f"tako-server {name} to answer hello")
    return server


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
            f'[servers.{name}]\nhost = "127.0.0.1"\nmanagement_port = {server.port}\n{extra}\n'
            for name, server in servers.items()))

    def write_project(self, name: str, servers: list[str], store: SeaweedFS, bucket: str,
                      start: list[str] | None = None) -> None:
        lines = [f'name = "{name}"']
        if start is not None:
            lines.append("start = " + json.dumps(start))
        lines += ["", "[envs.production]", f'route = "{name}.example.com"',
                  f"servers = {json.dumps(servers)}", 'backup = { storage = "backups" }', "",
                  "[storages.backups]", f'bucket = "{bucket}"',
                  f'endpoint = "{store.endpoint}"', 'region = "us-east-1"', "force_path_style = true", ""]
        self.app_dir.mkdir(parents=True, exist_ok=True)
        (self.app_dir / "tako.toml").write_text("\n".join(lines))

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
