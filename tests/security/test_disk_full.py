"""A restore that runs out of disk space fails cleanly: old data intact, staging removed, the app
still running, and the same restore succeeds once space is freed.

The server's data root is a real 32 MiB tmpfs that the test mounts (this needs root, as CI runs;
the mount is removed afterwards). Two ways to run out: a backup larger than the free space
(refused before it is written), and a disk that another process fills while the restore is
writing (a real ENOSPC half-way through).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tako_backups.models import BackupBinding
from tako_backups.remote.client import ServerReplyError
from tako_backups.remote.signing import FileSigner
from tests.security.server_proc import APP, launch
from tests.support.sqlite_checks import integrity
from tests.support.tako_server import NOTES_RUNTIME, RunningServer, app_pids, notes
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

DISK = "32m"


class SmallDiskServer:
    """tako-server whose data root is a fresh tmpfs of ``DISK``."""

    def __init__(self, base: Path, signer: FileSigner) -> None:
        self.mount = base / "disk"
        self.mount.mkdir(parents=True)
        mount = ["mount", "-t", "tmpfs", "-o", f"size={DISK},mode=0755", "tmpfs", str(self.mount)]
        done = subprocess.run(mount, capture_output=True, text=True)
        assert done.returncode == 0, (
            f"these tests mount a {DISK} tmpfs and need root (CAP_SYS_ADMIN), as .ci/run has: {done.stderr}")
        self.data_dir = self.mount / "tako"
        self.signer = signer
        self.server: RunningServer = launch(self.data_dir, signer, log_path=base / "server.log")

    def view(self, *parts: str) -> Path:
        return self.data_dir.joinpath(*parts)

    def call(self, command: str, payload: dict[str, Any] | None = None) -> Any:
        with self.server.client(self.signer) as client:
            return client.call(command, payload)

    def free(self) -> int:
        st = os.statvfs(self.mount)
        return st.f_bavail * st.f_frsize

    def close(self) -> int:
        try:
            return self.server.terminate()
        finally:
            if subprocess.run(["umount", str(self.mount)], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", str(self.mount)], capture_output=True)


@pytest.fixture
def small_disk(tmp_path: Path, signer: FileSigner) -> Iterator[SmallDiskServer]:
    running = SmallDiskServer(tmp_path, signer)
    try:
        yield running
    finally:
        assert running.close() == 0, running.server.log_tail()


def fill(path: Path, leave: int = 0) -> None:
    """Write ``path`` until the filesystem has ``leave`` bytes free (0: until it is full)."""
    st = os.statvfs(path.parent)
    chunk = b"\0" * (1 << 20)
    with open(path, "ab") as out:
        try:
            while True:
                room = st.f_bavail * st.f_frsize - leave
                if leave and room <= 0:
                    break
                out.write(chunk if not leave else chunk[:min(len(chunk), room)])
                out.flush()
                st = os.statvfs(path.parent)
        except OSError:
            pass


def no_space(disk: SmallDiskServer, info: dict[str, Any]) -> str:
    return (f"Server 'la': Not enough disk space under {disk.data_dir / 'tmp' / 'restore'} to restore backup "
            f"{info['id']} ({info['size_bytes']} bytes encrypted); free up space and try again. "
            "The live data was not touched.")


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "notes.db" and "-" not in p.suffix
            and "uploads" not in p.parts}


def prepare(disk: SmallDiskServer, settings: BackupBinding, files: dict[str, bytes]) -> tuple[Path, dict]:
    """Deploy the notes app, write ``files`` and back them up; then make the live data the "old"
    tree (those files gone, old.txt written). Returns the live app dir and the backup."""
    deployed = disk.call("deploy", {"app": APP, "backup": settings.to_dict(), "runtime": NOTES_RUNTIME})
    assert deployed["backup"]["status"] == "created"
    live = disk.view("apps", "notes", "production", "data", "app")
    wait_for(lambda: len(notes(live / "notes.db")) >= 10, "the notes app to write rows")
    for rel, data in files.items():
        (live / rel).parent.mkdir(parents=True, exist_ok=True)
        (live / rel).write_bytes(data)
    info = disk.call("backup_now", {"app": APP, "backup": None})
    for rel in files:
        (live / rel).unlink()
    (live / "old.txt").write_text("the live data before the restore\n")
    return live, info


def assert_untouched(disk: SmallDiskServer, live: Path, before: dict[str, str], rows: list) -> None:
    assert digest(live) == before
    assert list(disk.view("tmp", "restore").iterdir()) == []
    assert notes(live / "notes.db", limit=len(rows)) == rows
    assert integrity(live / "notes.db") == "ok"


def test_backup_larger_than_the_free_space_is_refused_before_writing(
        small_disk: SmallDiskServer, moto_settings: BackupBinding) -> None:
    big = os.urandom(12 << 20)
    live, info = prepare(small_disk, moto_settings, {"big.bin": big})
    fill(small_disk.view("ballast.bin"), leave=8 << 20)
    assert 7 << 20 < small_disk.free() <= 8 << 20
    before, rows, pids = digest(live), notes(live / "notes.db"), app_pids(live)
    assert len(pids) == 1

    with pytest.raises(ServerReplyError) as full:
        small_disk.call("restore_backup", {"app": APP, "backup_id": info["id"]})
    assert str(full.value) == no_space(small_disk, info)
    assert_untouched(small_disk, live, before, rows)
    assert app_pids(live) == pids, "the app was stopped although the restore never reached the swap"
    wait_for(lambda: len(notes(live / "notes.db")) > len(rows) + 3, "the app to keep writing")

    small_disk.view("ballast.bin").unlink()
    assert small_disk.call("restore_backup", {"app": APP, "backup_id": info["id"]}) == info
    assert (live / "big.bin").read_bytes() == big and not (live / "old.txt").exists()
    wait_for(lambda: len(app_pids(live)) == 1, "the app to run on the restored data")


def test_disk_filling_up_while_the_restore_writes_fails_cleanly(
        small_disk: SmallDiskServer, moto_settings: BackupBinding) -> None:
    files = {f"many/f{i:04d}.bin": os.urandom(4096) for i in range(3000)}
    live, info = prepare(small_disk, moto_settings, files)
    before, rows, pids = digest(live), notes(live / "notes.db"), app_pids(live)
    assert len(pids) == 1 and small_disk.free() > 20 << 20
    staging = small_disk.view("tmp", "restore")
    filled = threading.Event()

    def written() -> int:
        return sum(len(list(d.iterdir())) for d in staging.glob("*/tree/app/many"))

    def filler() -> None:  # another process eats the disk once the restore has written 100 files
        wait_for(lambda: written() >= 100, "the restore to write into staging", timeout=60)
        fill(small_disk.view("ballast.bin"))
        filled.set()

    thread = threading.Thread(target=filler)
    thread.start()
    try:
        with pytest.raises(ServerReplyError) as full:
            small_disk.call("restore_backup", {"app": APP, "backup_id": info["id"]})
    finally:
        thread.join(timeout=90)
    assert filled.is_set()
    assert str(full.value) == no_space(small_disk, info)
    assert digest(live) == before and list(staging.iterdir()) == []

    small_disk.view("ballast.bin").unlink()
    wait_for(lambda: len(app_pids(live)) == 1 and len(notes(live / "notes.db")) > len(rows) + 3,
             "the app to write again once space is back")
    assert_untouched(small_disk, live, before, rows)
    assert small_disk.call("restore_backup", {"app": APP, "backup_id": info["id"]}) == info
    assert {rel: (live / rel).read_bytes() for rel in files} == files
    assert not (live / "old.txt").exists()
