"""A real `tako-server serve` subprocess on 127.0.0.1, and ways to look at the apps it runs."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tako_backups.demo.scenario import readable_copy
from tako_backups.errors import RemoteError
from tako_backups.remote.client import RpcClient
from tako_backups.remote.signing import FileSigner
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
SERVER = [sys.executable, "-m", "tako_backups.server.cli"]


def others_may(path: Path, right: int) -> bool:
    """Whether a user with no rights of its own has ``right`` (``stat.S_IXOTH``, ``S_IROTH``) on
    ``path`` and may reach it: every folder on the way searchable, also after resolving links."""
    for way in {path.absolute(), path.resolve()}:
        if not all(folder.stat().st_mode & stat.S_IXOTH for folder in way.parents):
            return False
    return bool(path.stat().st_mode & right)


def app_python() -> str:
    """A Python the apps' own uids can run (tako-server as root runs each app as a uid of its
    own): this interpreter when others may run it, else the system's python3 (a pyenv under
    /root is out of their reach)."""
    for candidate in (sys.executable, shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")):
        if candidate and others_may(Path(candidate), stat.S_IXOTH):
            return candidate
    return sys.executable


def reachable_notes_app() -> Path:
    """examples/notes-app/app.py where the apps' own uids can read it: the checkout's file when
    others may read it, else a copy in a folder of its own in the temp dir, removed at exit (a
    checkout in a private folder, `mktemp -d` say, is out of their reach)."""
    source = ROOT / "examples" / "notes-app" / "app.py"
    if others_may(source, stat.S_IROTH):
        return source
    folder = Path(tempfile.mkdtemp(prefix="tako-notes-app-"))
    atexit.register(shutil.rmtree, folder, True)
    return readable_copy(source, folder)


APP_PYTHON = app_python()
NOTES_APP = reachable_notes_app()
NOTES_RUNTIME: dict[str, Any] = {"start": [APP_PYTHON, str(NOTES_APP)], "instances": 1,
                                 "env": {"NOTES_INTERVAL": "0.02"}}


def let_apps_reach(data_dir: Path) -> None:
    """Make the temp folders above ``data_dir`` searchable (not listable) by others, as the
    folders above /opt/tako are: pytest makes them 0700, and the apps' uids must pass them."""
    top = Path(tempfile.gettempdir()).resolve()
    for folder in data_dir.resolve().parents:
        if folder == top or top not in folder.parents:
            break
        mode = folder.stat().st_mode
        if folder.stat().st_uid == os.geteuid() and not mode & stat.S_IXOTH:
            folder.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


@dataclass
class RunningServer:
    process: subprocess.Popen[bytes]
    port: int
    data_dir: Path
    log_path: Path

    def client(self, signer: FileSigner) -> RpcClient:
        return RpcClient("la", "127.0.0.1", self.port, [signer])

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def terminate(self, timeout: float = 20.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
                raise AssertionError(f"tako-server did not stop on SIGTERM:\n{self.log_tail()}") from None
        return int(self.process.returncode)


def authorize(data_dir: Path, signer: FileSigner, name: str = "la") -> None:
    """Make ``data_dir`` a server named ``name`` and authorize ``signer`` with `tako-server authorize-key`."""
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "config.json").write_text(json.dumps({"server_name": name}))
    done = subprocess.run([*SERVER, "authorize-key", f"{signer.path}.pub", "--data-dir", str(data_dir)],
                          env=server_env(), capture_output=True, text=True, check=True)
    assert done.stdout.startswith(f"Authorized ssh-ed25519 key {signer.fingerprint}"), done.stdout


def restart_server(data_dir: Path, signer: FileSigner, name: str = "la", *, argv: list[str] | None = None,
                   env: dict[str, str] | None = None, log_path: Path | None = None) -> RunningServer:
    """Start `tako-server serve` on an existing data dir (``signer`` already authorized) and return
    once ``server_info`` answers with ``name``. ``argv`` replaces the `tako-server` command (a crash
    launcher), ``env`` its environment; the log goes to ``log_path`` (default: beside ``data_dir``)."""
    port = free_port()
    let_apps_reach(data_dir)
    log_path = log_path or data_dir.parent / f"{data_dir.name}-server.log"
    command = [*(argv or SERVER), "serve", "--data-dir", str(data_dir), "--host", "127.0.0.1",
               "--port", str(port)]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, env=env or server_env(), stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
    server = RunningServer(process, port, data_dir, log_path)

    def ready() -> bool:
        assert process.poll() is None, f"tako-server exited early:\n{server.log_tail()}"
        try:
            with RpcClient(name, "127.0.0.1", port, [signer]) as client:
                return bool(client.call("server_info")["server_name"] == name)
        except RemoteError:
            return False

    wait_for(ready, f"tako-server {name} to answer server_info")
    return server


def start_server(data_dir: Path, signer: FileSigner, name: str = "la") -> RunningServer:
    """A new `tako-server serve` called ``name`` on ``data_dir``, with ``signer`` authorized; returns
    once server_info answers."""
    authorize(data_dir, signer, name)
    return restart_server(data_dir, signer, name)


def running_server(data_dir: Path, signer: FileSigner, name: str = "la") -> Iterator[RunningServer]:
    """For a fixture (``yield from running_server(...)``): :func:`start_server`, hand the server
    over, then check that it stops cleanly on SIGTERM."""
    running = start_server(data_dir, signer, name)
    yield running
    assert running.terminate() == 0, running.log_tail()


def app_pids(app_dir: Path) -> list[int]:
    """Live (non-zombie) processes whose TAKO_DATA_DIR is ``app_dir``."""
    needle = f"TAKO_DATA_DIR={app_dir}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if needle in environ.split(b"\0") and stat[stat.rfind(")") + 2] != "Z":
            pids.append(int(entry.name))
    return sorted(pids)


def notes(db: Path, limit: int | None = None) -> list[tuple[int, str]]:
    """The notes rows (id, body) in id order, read-only."""
    if not db.exists():
        return []
    conn = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=10)
    try:
        sql = "SELECT id, body FROM notes ORDER BY id" + ("" if limit is None else f" LIMIT {int(limit)}")
        return [(int(i), str(b)) for i, b in conn.execute(sql)]
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


