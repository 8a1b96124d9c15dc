"""Run in a fresh interpreter by test_bounded_memory: restore one hostile archive through the core
(MemoryStore, decryption, zstd, tar) and print, as JSON, the error it ended with and the process's
peak resident memory in MiB. ``python -m tests.security.memory_probe pax|gnu-long-name SIZE``."""

from __future__ import annotations

import json
import os
import resource
import sys
import tarfile
import tempfile
from pathlib import Path

from tako_backups.core.pipeline import restore_into
from tako_backups.errors import TakoError
from tako_backups.models import BackupKey
from tako_backups.storage.memory import MemoryStore
from tests.security.hostile import header, store_archive, zstd_frame

KINDS = {"pax": tarfile.XHDTYPE, "gnu-long-name": tarfile.GNUTYPE_LONGNAME}


def hostile_archive(kind: str, size: int) -> bytes:
    """``app/`` and ``tako/``, then an extended header of ``kind`` declaring ``size`` bytes that
    really follow (``a`` repeated, as RLE blocks), then a member and the end of the archive."""
    info = tarfile.TarInfo("././@LongLink" if kind == "gnu-long-name" else "PaxHeader/x")
    info.type, info.size = KINDS[kind], size
    parts = [header("app", kind=tarfile.DIRTYPE), header("tako", kind=tarfile.DIRTYPE),
             info.tobuf(tarfile.GNU_FORMAT), (0x61, size + (-size % 512)), header("app/x"), (0, 1024)]
    return zstd_frame(parts)


def peak_mib() -> float:
    """This process's peak resident memory. On Linux from VmHWM: ``ru_maxrss`` would also count
    the parent's memory at the time it forked this process (the mark survives exec)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


def main() -> None:
    kind, size = sys.argv[1], int(sys.argv[2])
    key = BackupKey("backup-key-0123456789abcdef", os.urandom(32))
    store = MemoryStore()
    info = store_archive(store, hostile_archive(kind, size), key)
    with tempfile.TemporaryDirectory() as scratch:
        try:
            restore_into(store, info, [key], Path(scratch) / "staging")
            error = None
        except (TakoError, OSError, MemoryError) as exc:
            error = f"{type(exc).__name__}: {exc}"
    print(json.dumps({"error": error, "peak_mib": round(peak_mib(), 1),
                      "archive_bytes": len(store.objects[info.archive_key])}))


if __name__ == "__main__":
    main()
