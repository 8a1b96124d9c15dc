#!/usr/bin/env python3
"""One file back from a format-2 archive (issue 16): `extract --path` of one ~1 MB file against a
full extract of the same archive.

    .venv/bin/python bench/partial_extract.py [--mb 1024] [--repeat 3] [--cache DIR]

Builds (once, cached) the dataset of tests/support/dataset.py, seals its tar stream as a format-2
object on disk (untimed), then, best of N, runs :func:`tako_backups.core.partial.extract_paths`
(the code behind `extract --path` and `restore --path`) for the regular file whose size is
closest to 1 MB, and for ``app`` + ``tako`` (everything, through the same ranged reader, every
chunk verified). Reads go through ``os.pread`` and are counted, so the figures are the bytes a
ranged GET would fetch and the work of opening them, not network time. Prints the figures and
PASS/FAIL for the targets: the one file reads <= 2 % of the archive's bytes and takes <= 10 % of
the full extract's time.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH), str(BENCH.parent)]

from _dataset import ensure_dataset  # noqa: E402
from format_v2_stage import make_tar, pieces  # noqa: E402

from tako_backups.core import layout  # noqa: E402
from tako_backups.core.format_v2 import DEFAULT_CHUNK_SIZE  # noqa: E402
from tako_backups.core.partial import ArchiveAccess, PathSelection, extract_paths  # noqa: E402
from tako_backups.core.seal_v2 import ChunkedSealer  # noqa: E402
from tako_backups.models import BackupInfo, BackupKey  # noqa: E402

TARGET_BYTES_SHARE = 0.02
TARGET_TIME_SHARE = 0.10
ONE_MB = 1 << 20


def seal(root: Path, work: Path, key: BackupKey) -> tuple[Path, BackupInfo, str, int]:
    """The format-2 object of ``root`` in ``work``, its manifest, and the file nearest 1 MB."""
    plain, marks = make_tar(root, work)
    obj = work / "archive.v2"
    with open(obj, "wb") as out, ChunkedSealer(out, key, chunk_size=DEFAULT_CHUNK_SIZE) as sealer:
        for name, offset, kind, size, mtime in marks:
            sealer.member(name, offset=offset, kind=kind, size=size, mtime=mtime)
        for piece in pieces(plain):
            sealer.write(piece)
        result = sealer.finish()
    plain.unlink()
    prefix = layout.backup_prefix("bench", "production", "la")
    info = BackupInfo(id="b1-AbCdEf12", app="bench", environment="production", server="la",
                      created_at_unix_secs=1, size_bytes=result.sealed.size_bytes,
                      sha256_hex=result.sealed.sha256_hex, archive_key=prefix + "a",
                      manifest_key=prefix + "m",
                      encryption=result.sealed.encryption)
    name, _, _, size, _ = min((m for m in marks if m[2] == "0"), key=lambda m: abs(m[3] - ONE_MB))
    return obj, info, name, size


class Counted:
    def __init__(self, path: Path) -> None:
        self.path, self.bytes = path, 0

    def access(self) -> ArchiveAccess:
        fd = os.open(self.path, os.O_RDONLY)

        @contextlib.contextmanager
        def opened() -> Iterator[BinaryIO]:
            with open(self.path, "rb") as f:
                yield f

        def read_range(offset: int, length: int) -> bytes:
            data = os.pread(fd, length, offset)
            self.bytes += len(data)
            return data

        return ArchiveAccess(opened, read_range)


def extract(obj: Path, info: BackupInfo, key: BackupKey, paths: list[str], work: Path) -> tuple[float, int]:
    dest = Path(tempfile.mkdtemp(dir=work))
    counted = Counted(obj)
    started = time.perf_counter()
    extract_paths(counted.access(), info, [key], dest, PathSelection.parse(paths))
    seconds = time.perf_counter() - started
    shutil.rmtree(dest)
    return seconds, counted.bytes


def run(dataset: Path, scratch: Path, repeat: int) -> dict[str, Any]:
    """Seal ``dataset`` in format 2 under ``scratch`` and measure; returns the figures."""
    work = scratch / "partial-extract"
    work.mkdir(parents=True)
    key = BackupKey(id="backup-key-0123456789abcdef", key=os.urandom(32))
    try:
        obj, info, name, size = seal(dataset, work, key)
        one = min(extract(obj, info, key, [name], work) for _ in range(repeat))
        full = min(extract(obj, info, key, ["app", "tako"], work) for _ in range(repeat))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"archive_bytes": info.size_bytes, "file": name, "file_bytes": size,
            "one_seconds": one[0], "one_bytes_read": one[1],
            "full_seconds": full[0], "full_bytes_read": full[1],
            "bytes_share": one[1] / info.size_bytes, "time_share": one[0] / full[0]}


def report(figures: dict[str, Any]) -> list[str]:
    """The figure lines and one PASS/FAIL line per target."""
    f = figures
    ok_bytes = f["bytes_share"] <= TARGET_BYTES_SHARE
    ok_time = f["time_share"] <= TARGET_TIME_SHARE
    return [
        f"partial extract: {f['file']} ({f['file_bytes'] / ONE_MB:.2f} MB) from a "
        f"{f['archive_bytes'] / ONE_MB:.0f} MB format-2 archive",
        f"  read {f['one_bytes_read'] / ONE_MB:.2f} MB in {f['one_seconds']:.3f} s; full extract read "
        f"{f['full_bytes_read'] / ONE_MB:.0f} MB in {f['full_seconds']:.2f} s",
        f"{'PASS' if ok_bytes else 'FAIL'} extract --path reads {f['bytes_share']:.2%} of the archive "
        f"(target <= {TARGET_BYTES_SHARE:.0%})",
        f"{'PASS' if ok_time else 'FAIL'} extract --path takes {f['time_share']:.2%} of a full extract "
        f"(target <= {TARGET_TIME_SHARE:.0%})",
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=int, default=1024, help="dataset size in MB (default 1024)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each measure; the best counts")
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("TAKO_BENCH_CACHE", "/tmp/tako-bench")))
    args = ap.parse_args(argv)
    scratch = args.cache.resolve() / f"run-{os.getpid()}"
    scratch.mkdir(parents=True)
    try:
        lines = report(run(ensure_dataset(args.cache.resolve(), args.mb), scratch, args.repeat))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print("\n".join(lines))
    return 0 if all(not line.startswith("FAIL") for line in lines) else 1


if __name__ == "__main__":
    raise SystemExit(main())
