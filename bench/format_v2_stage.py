"""Format 2 against format 1 on the same tar stream: seal, open, and one member by ranges.

    format_v2_stage.py DATA_ROOT SCRATCH_DIR [--repeat N] [--chunk-size BYTES]

Makes DATA_ROOT's tar stream once (``write_archive`` with its zstd undone, untimed), then runs,
interleaved, best of N:

- seal v1: zstd (worker threads) -> AES-GCM + SHA-256 on a helper thread -> file, as
  ``formats.write_v1`` does; seal v2: :class:`ChunkedSealer` -> file;
- open v1: ``DecryptingReader`` + zstd stream reader; open v2: :class:`ChunkedStreamReader`
  (both read the whole object, verify it and drop the tar bytes);
- one member of about 1 MB from the v2 object by ranged reads (``os.pread``): bytes fetched
  against the object's size, and time against opening the whole object.

Prints one line per figure. The tar stream is read from the page cache, so the figures are the
work that differs between the formats, not disk or network time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import IO, TypeVar, cast

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import zstandard  # noqa: E402

from tako_backups.core import layout  # noqa: E402
from tako_backups.core.archive import COPY_BUFFER, compressor, write_archive  # noqa: E402
from tako_backups.core.crypto import DecryptingReader, EncryptingWriter  # noqa: E402
from tako_backups.core.format_v2 import DEFAULT_CHUNK_SIZE, Expected  # noqa: E402
from tako_backups.core.pipes import ThreadedWriter  # noqa: E402
from tako_backups.core.ranges_v2 import ChunkedRangeReader  # noqa: E402
from tako_backups.core.seal_v2 import ChunkedSealer  # noqa: E402
from tako_backups.core.unseal_v2 import ChunkedStreamReader  # noqa: E402
from tako_backups.models import BackupInfo, BackupKey  # noqa: E402

Marks = list[tuple[str, int, str, int, float]]
T = TypeVar("T")


def make_tar(root: Path, work: Path) -> tuple[Path, Marks]:
    plain = work / "plain.tar"
    scratch = work / "snapshots"
    scratch.mkdir()
    with open(plain, "wb") as out:
        unzstd = zstandard.ZstdDecompressor().stream_writer(out, closefd=False)
        write_archive(root, unzstd, scratch)
        unzstd.flush()
    with tarfile.open(plain, "r:") as tar:
        marks = [(m.name, m.offset, m.type.decode(), m.size, m.mtime) for m in tar]
    return plain, marks


def pieces(path: Path) -> list[bytes]:
    with open(path, "rb") as f:
        return list(iter(lambda: f.read(COPY_BUFFER), b""))


def seal_v1(data: list[bytes], out_path: Path, key: BackupKey) -> BackupInfo:
    with open(out_path, "wb") as out:
        enc = EncryptingWriter(out, key)
        with ThreadedWriter(enc, depth=4, name="tako-seal") as sealer:
            zw = compressor().stream_writer(cast(IO[bytes], sealer), closefd=False, write_size=COPY_BUFFER)
            for piece in data:
                zw.write(piece)
            zw.close()
        sealed = enc.finish()
    prefix = layout.backup_prefix("bench", "production", "la")
    return BackupInfo(id="b1-AbCdEf12", app="bench", environment="production", server="la",
                      created_at_unix_secs=1, size_bytes=sealed.size_bytes, sha256_hex=sealed.sha256_hex,
                      archive_key=prefix + "a", manifest_key=prefix + "m", encryption=sealed.encryption)


def seal_v2(data: list[bytes], marks: Marks, out_path: Path, key: BackupKey, chunk_size: int) -> Expected:
    with open(out_path, "wb") as out, ChunkedSealer(out, key, chunk_size=chunk_size) as sealer:
        for name, offset, kind, size, mtime in marks:
            sealer.member(name, offset=offset, kind=kind, size=size, mtime=mtime)
        for piece in data:
            sealer.write(piece)
        result = sealer.finish()
    return Expected(result.sealed.size_bytes, result.sealed.sha256_hex)


def open_v1(path: Path, info: BackupInfo, key: BackupKey) -> int:
    total = 0
    with open(path, "rb") as src:
        reader = DecryptingReader(src, info, key)
        with zstandard.ZstdDecompressor().stream_reader(cast(IO[bytes], reader), read_size=1 << 20,
                                                        closefd=False) as plain:
            while chunk := plain.read(1 << 20):
                total += len(chunk)
        reader.verify()
    return total


def open_v2(path: Path, expect: Expected, key: BackupKey) -> int:
    total = 0
    with open(path, "rb") as src:
        reader = ChunkedStreamReader(src, key, expect=expect)
        for chunk in reader.chunks():
            total += len(chunk)
        reader.verify()
    return total


def one_member(path: Path, key: BackupKey, name: str) -> tuple[int, int, int]:
    """Read member ``name`` through ranged reads; returns (its size, bytes fetched, requests)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        rr = ChunkedRangeReader.open(lambda o, n: os.pread(fd, n, o), os.fstat(fd).st_size, key)
        member = next(m for m in rr.members() if m.name == name)
        with tarfile.TarFile(fileobj=cast(IO[bytes], rr.stream_from(member.offset)), mode="r") as tf:
            info = tf.next()
            assert info is not None and info.name == name
            body = tf.extractfile(info)
            assert body is not None
            size = len(body.read())
        return size, rr.bytes_fetched, rr.requests
    finally:
        os.close(fd)


def timed(fn: Callable[[], T]) -> tuple[tuple[float, float], T]:
    """((wall seconds, CPU seconds), what ``fn`` returned)."""
    started, cpu = time.perf_counter(), os.times()
    result = fn()
    done = os.times()
    return (time.perf_counter() - started, (done.user - cpu.user) + (done.system - cpu.system)), result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("root", type=Path)
    ap.add_argument("scratch", type=Path)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE)
    args = ap.parse_args()
    key = BackupKey("backup-key-0123456789abcdef", os.urandom(32))
    work = Path(tempfile.mkdtemp(dir=args.scratch, prefix="format-v2-"))
    try:
        plain, marks = make_tar(args.root, work)
        data = pieces(plain)
        tar_bytes = sum(len(p) for p in data)
        target = min((m for m in marks if m[2] == "0"), key=lambda m: abs(m[3] - 1_000_000))
        v1, v2 = work / "v1.enc", work / "v2.enc"
        best: dict[str, tuple[float, float]] = {}

        def keep(label: str, fig: tuple[float, float]) -> None:
            best[label] = min(best.get(label, fig), fig)

        for _ in range(args.repeat):
            fig, info = timed(partial(seal_v1, data, v1, key))
            keep("seal v1", fig)
            fig, expect = timed(partial(seal_v2, data, marks, v2, key, args.chunk_size))
            keep("seal v2", fig)
            keep("open v1", timed(partial(open_v1, v1, info, key))[0])
            keep("open v2", timed(partial(open_v2, v2, expect, key))[0])
            fig, (size, fetched, requests) = timed(partial(one_member, v2, key, target[0]))
            keep("member v2", fig)
        v1_size, v2_size = v1.stat().st_size, v2.stat().st_size
        print(f"tar stream {tar_bytes / 1e6:.0f} MB, {len(marks)} members; chunk size "
              f"{args.chunk_size >> 10} KiB; best of {args.repeat}; load {os.getloadavg()[0]:.1f}")
        print(f"object v1 {v1_size / 1e6:.1f} MB, v2 {v2_size / 1e6:.1f} MB "
              f"({(v2_size / v1_size - 1) * 100:+.2f} %)")
        for a, b in (("seal v1", "seal v2"), ("open v1", "open v2")):
            (wa, ca), (wb, cb) = best[a], best[b]
            print(f"{a}: {wa:.2f} s ({ca:.2f} s CPU)   {b}: {wb:.2f} s ({cb:.2f} s CPU)   "
                  f"wall {wb / wa:.2f}x  CPU {cb / ca:.2f}x")
        wm, _ = best["member v2"]
        print(f"one member ({target[0]}, {size / 1e6:.2f} MB): {fetched / 1e6:.2f} MB fetched in "
              f"{requests} reads = {fetched / v2_size * 100:.2f} % of the object; {wm:.3f} s = "
              f"{wm / best['open v2'][0] * 100:.1f} % of opening the whole object")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
