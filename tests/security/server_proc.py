"""Start, crash and restart a real `tako-server serve` on 127.0.0.1 for the reliability tests."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tako_backups.core.verify import extract_verified
from tako_backups.errors import RemoteError
from tako_backups.models import BackupBinding, BackupInfo
from tako_backups.remote.signing import FileSigner
from tako_backups.storage.s3 import S3Store
from tests.server.e2e_support import (
    NOTES_APP,
    SERVER,
    RunningServer,
    app_pids,
    free_port,
    server_env,
    wait_for,
)

APP = "notes/production"
NOTES_RUNTIME: dict[str, Any] = {"start": [sys.executable, str(NOTES_APP)], "instances": 1,
                                 "env": {"NOTES_INTERVAL": "0.02"}}


def launch(data_dir: Path, signer: FileSigner, *, crash_at: str | None = None,
           log_path: Path | None = None) -> RunningServer:
    """Start `tako-server serve` on ``data_dir`` (authorizing ``signer`` the first time), or the
    crash launcher when ``crash_at`` names a crash point; return once ``hello`` answers. The log
    goes to ``log_path`` (default: beside ``data_dir``)."""
    if not (data_dir / "management-authorized-keys").exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        (data_dir / "config.json").write_text(json.dumps({"server_name": "la"}))
        subprocess.run([*SERVER, "authorize-key", f"{signer.path}.pub", "--data-dir", str(data_dir)],
                       env=server_env(), capture_output=True, check=True)
    env = server_env()
    argv = list(SERVER)
    if crash_at is not None:
        env["TAKO_TEST_CRASH_AT"] = crash_at
        argv = [sys.executable, "-m", "tests.security.crash_launcher"]
    port = free_port()
    log_path = log_path or data_dir.parent / f"{data_dir.name}-server.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [*argv, "serve", "--data-dir", str(data_dir), "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    server = RunningServer(process, port, data_dir, log_path)

    def ready() -> bool:
        assert process.poll() is None, f"tako-server exited early:\n{server.log_tail()}"
        try:
            with server.client(signer) as client:
                return bool(client.call("hello")["server"] == "la")
        except RemoteError:
            return False

    wait_for(ready, "tako-server to answer hello")
    return server


def kill_app_processes(app_dir: Path) -> list[int]:
    """SIGKILL what a killed server left of an app, as systemd does with the rest of the unit's
    control group when its main process dies; return their pids once they are gone."""
    pids = app_pids(app_dir)
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGKILL)  # each app process leads its own group
        except ProcessLookupError:
            pass
    wait_for(lambda: not app_pids(app_dir), "the orphaned app processes to go")
    return pids


def wait_exit(server: RunningServer, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while server.process.poll() is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"tako-server did not exit:\n{server.log_tail()}")
        time.sleep(0.02)
    return int(server.process.returncode)


def live_dir(data_dir: Path, name: str = "notes") -> Path:
    return data_dir / "apps" / name / "production" / "data"


def extract_backup(settings: BackupBinding, info: dict[str, Any], dest: Path) -> Path:
    """Download ``info``'s archive from the test's side of the bucket and extract it (verified)."""
    backup = BackupInfo.from_dict(info)
    archive = S3Store.from_binding(settings.storage).get_bytes(backup.archive_key)
    dest.mkdir(parents=True)
    extract_verified(io.BytesIO(archive), backup, settings.backup_keys, dest)
    return dest
