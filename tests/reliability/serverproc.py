"""Start, restart and kill a real `tako-server serve` subprocess on 127.0.0.1."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tako_backups.errors import RemoteError
from tako_backups.remote.signing import FileSigner
from tests.server.e2e_support import SERVER, RunningServer, free_port, server_env, start_server, wait_for


def restart_server(data_dir: Path, signer: FileSigner) -> RunningServer:
    """Start `tako-server serve` again on an existing data dir (key already authorized)."""
    port = free_port()
    log_path = data_dir.parent / f"{data_dir.name}-server.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [*SERVER, "serve", "--data-dir", str(data_dir), "--host", "127.0.0.1", "--port", str(port)],
            env=server_env(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    server = RunningServer(process, port, data_dir, log_path)

    def ready() -> bool:
        assert process.poll() is None, f"tako-server exited early:\n{server.log_tail()}"
        with server.client(signer) as client:
            try:
                return bool(client.call("hello")["server"] == "la")
            except RemoteError:
                return False

    wait_for(ready, "tako-server to answer hello")
    return server


def kill_9(server: RunningServer) -> None:
    from tests.reliability.checks import FIGURES

    server.process.kill()
    server.process.wait(timeout=10)
    FIGURES["kill -9 crashes"] += 1


__all__ = ["RunningServer", "kill_9", "restart_server", "start_server"]
