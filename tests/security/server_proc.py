"""Start, crash and restart a real `tako-server serve` on 127.0.0.1 for the reliability tests."""

from __future__ import annotations

import io
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from tako_backups.core.verify import extract_verified
from tako_backups.models import BackupBinding, BackupInfo
from tako_backups.remote.signing import FileSigner
from tako_backups.storage.s3 import S3Store
from tests.support.tako_server import RunningServer, app_pids, authorize, restart_server, server_env
from tests.support.waiting import wait_for

APP = "notes/production"


def launch(data_dir: Path, signer: FileSigner, *, crash_at: str | None = None,
           log_path: Path | None = None) -> RunningServer:
    """Start `tako-server serve` on ``data_dir`` (authorizing ``signer`` the first time), or the
    crash launcher when ``crash_at`` names a crash point; return once ``server_info`` answers. The log
    goes to ``log_path`` (default: beside ``data_dir``)."""
    if not (data_dir / "management-authorized-keys").exists():
        authorize(data_dir, signer)
    if crash_at is None:
        return restart_server(data_dir, signer, log_path=log_path)
    return restart_server(data_dir, signer, argv=[sys.executable, "-m", "tests.security.crash_launcher"],
                          env={**server_env(), "TAKO_TEST_CRASH_AT": crash_at}, log_path=log_path)


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
