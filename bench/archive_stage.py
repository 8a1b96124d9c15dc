"""One run of the archive stage alone: snapshot + tar + zstd + AES-GCM + SHA-256 into a null sink.

    archive_stage.py DATA_ROOT SCRATCH_DIR

Prints one JSON object: seconds (wall), cpu_user, cpu_sys, size_bytes (ciphertext), max_rss_kb.
Run in a fresh process per repetition, like the `tar | zstd` reference it is compared with.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tako_backups.models import BackupKey  # noqa: E402


class NullSink:
    def write(self, data: bytes | memoryview) -> int:
        return len(data)


def run(root: Path, scratch_parent: Path) -> dict[str, float]:
    from tako_backups.core import formats

    key = BackupKey("backup-key-0123456789abcdef", os.urandom(32))
    with tempfile.TemporaryDirectory(dir=scratch_parent, prefix="archive-stage-") as scratch:
        started, cpu = time.perf_counter(), os.times()
        _stats, sealed = formats.write_v1(root, NullSink(), Path(scratch), key)
        seconds, done = time.perf_counter() - started, os.times()
    return {"seconds": seconds, "cpu_user": done.user - cpu.user, "cpu_sys": done.system - cpu.system,
            "size_bytes": sealed.size_bytes,
            "max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}


if __name__ == "__main__":
    print(json.dumps(run(Path(sys.argv[1]), Path(sys.argv[2]))))
