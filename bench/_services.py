"""SeaweedFS and a real `tako-server serve` on 127.0.0.1 for the benchmark, and a probe that
samples the server's memory and temporary disk while it works."""

from __future__ import annotations

import contextlib
import os
import resource
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tako_backups.models import BackupBinding, BackupKey, StorageBinding
from tako_backups.remote.client import RpcClient
from tako_backups.remote.signing import FileSigner
from tako_backups.storage.s3 import S3Store
from tests.support.keys import make_key
from tests.support.s3_servers import SeaweedFS, start_seaweedfs
from tests.support.tako_server import RunningServer, start_server

BUCKET = "bench"
RPC_TIMEOUT = 3600.0


@dataclass
class Services:
    seaweed: SeaweedFS
    server: RunningServer
    signer: FileSigner
    key: BackupKey
    settings: BackupBinding
    client: RpcClient = field(init=False)

    def __post_init__(self) -> None:
        self.client = self.server.client(self.signer)

    def app_data(self, app: str) -> Path:
        name, env = app.split("/")
        return self.server.data_dir / "apps" / name / env / "data"

    @property
    def tmp_dir(self) -> Path:
        return self.server.data_dir / "tmp"

    def call(self, command: str, payload: dict[str, Any]) -> Any:
        return self.client.call(command, payload, timeout=RPC_TIMEOUT)

    def store(self) -> S3Store:
        return S3Store.from_binding(self.settings.storage)


@contextlib.contextmanager
def running_services(work: Path) -> Iterator[Services]:
    """Start SeaweedFS (one bucket) and tako-server under ``work``; stop both afterwards."""
    work.mkdir(parents=True, exist_ok=True)
    seaweed = start_seaweedfs(work / "seaweedfs")
    try:
        seaweed.make_bucket(BUCKET)
        signer = make_key(work / "id_ed25519", "bench@localhost")
        server = start_server(work / "tako", signer)
        try:
            key = BackupKey("backup-key-" + os.urandom(8).hex(), os.urandom(32))
            storage = StorageBinding(bucket=BUCKET, endpoint=seaweed.endpoint, region="us-east-1",
                                     access_key_id=seaweed.access_key,
                                     secret_access_key=seaweed.secret_key, force_path_style=True)
            services = Services(seaweed, server, signer, key,
                                BackupBinding(storage=storage, backup_keys=[key], retention_days=30))
            try:
                yield services
            finally:
                services.client.close()
        finally:
            server.terminate(timeout=120)
    finally:
        seaweed.stop()


def reset_peak_rss(pid: int) -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) of ``pid``; False when the kernel refuses."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def status_kb(pid: int, field_name: str) -> int:
    """A ``kB`` field of /proc/<pid>/status (VmRSS, VmHWM), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise KeyError(field_name)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds ``pid`` has used so far, all its threads (ended ones too)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    """User + system CPU seconds of this process's ended children, all of them so far."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def dir_bytes(root: Path) -> int:
    """Disk used under ``root`` (allocated blocks), tolerant of files vanishing mid-walk."""
    total = 0
    stack = [str(root)]
    while stack:
        path = stack.pop()
        try:
            with os.scandir(path) as it:
                for entry in it:
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    total += st.st_blocks * 512
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
        except (FileNotFoundError, NotADirectoryError):
            continue
    return total


class Probe:
    """Samples the server's RSS (and optionally its tmp/ disk use) until stopped.

    Peak RSS comes from the kernel's VmHWM after a reset (exact), cross-checked by polling.
    """

    def __init__(self, pid: int, disk_dir: Path | None, interval: float = 0.02) -> None:
        self.pid, self.disk_dir, self.interval = pid, disk_dir, interval
        self.rss_before_kb = status_kb(pid, "VmRSS")
        self.hwm_reset = reset_peak_rss(pid)
        self.polled_rss_kb = self.rss_before_kb
        self.peak_disk = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-probe", daemon=True)

    def __enter__(self) -> Probe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_rss_kb = max(self.polled_rss_kb,
                               status_kb(self.pid, "VmHWM") if self.hwm_reset else 0)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, KeyError, ValueError):
                self.polled_rss_kb = max(self.polled_rss_kb, status_kb(self.pid, "VmRSS"))
            if self.disk_dir is not None:
                self.peak_disk = max(self.peak_disk, dir_bytes(self.disk_dir))
            time.sleep(self.interval)
