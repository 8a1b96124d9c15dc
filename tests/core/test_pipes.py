"""The threaded stages and the chunk reader under the fast pipeline: order, errors, bounds."""

from __future__ import annotations

import io
import os
import tarfile
import threading
from pathlib import Path

import pytest

from tako_backups.core.chunk_reader import ChunkReader
from tako_backups.core.pipes import Prefetcher, ThreadedWriter


def _chunks(data: bytes, size: int) -> ChunkReader:
    parts = [data[i:i + size] for i in range(0, len(data), size)]
    return ChunkReader(lambda: parts.pop(0) if parts else b"")


def test_chunk_reader_reads_across_chunks_and_seeks_forward() -> None:
    data = bytes(range(256)) * 40
    reader = _chunks(data, 7)
    assert reader.read(10) == data[:10]
    assert reader.read(0) == b""
    assert reader.seek(100) == 100 and reader.tell() == 100
    assert reader.read(513) == data[100:613]
    reader.seek(610)
    assert reader.read(3) == data[610:613]
    assert reader.read() == data[613:]
    assert reader.read(5) == b"" and reader.tell() == len(data)


def test_chunk_reader_refuses_to_seek_behind_its_chunk() -> None:
    reader = _chunks(b"a" * 100, 10)
    reader.read(35)
    with pytest.raises(tarfile.StreamError, match="seeking backwards is not allowed"):
        reader.seek(20)


def test_chunk_reader_copies_bodies_to_a_file(tmp_path: Path) -> None:
    data = os.urandom(10_000)
    reader = _chunks(data, 999)
    reader.read(1)
    advanced: list[int] = []
    with open(tmp_path / "out", "wb") as out:
        assert reader.copy_to(out.fileno(), 5000, advanced.append) == 5000
        assert reader.copy_to(out.fileno(), 9000) == 4999
    assert (tmp_path / "out").read_bytes() == data[1:]
    assert sum(advanced) == 5000


def test_tarfile_over_tiny_chunks_reads_pax_members() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, body in (("app/" + "long-name-" * 20, b"x" * 1000), ("app/é.txt", b"y" * 512)):
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    with tarfile.TarFile(fileobj=_chunks(buf.getvalue(), 13), mode="r") as tar:  # type: ignore[arg-type]
        members = [(m.name, tar.extractfile(m).read()) for m in tar]  # type: ignore[union-attr]
    assert members == [("app/" + "long-name-" * 20, b"x" * 1000), ("app/é.txt", b"y" * 512)]


def test_threaded_writer_keeps_order_and_copies_views() -> None:
    out = io.BytesIO()
    block = bytearray(b"0123")
    with ThreadedWriter(out, depth=2) as writer:
        for i in range(50):
            block[0] = 65 + i % 26
            writer.write(memoryview(block))
    assert out.getvalue() == b"".join(bytes([65 + i % 26]) + b"123" for i in range(50))


class _FailingSink:
    def __init__(self, after: int) -> None:
        self.after = after

    def write(self, data: bytes) -> int:
        if self.after == 0:
            raise OSError("disk on fire")
        self.after -= 1
        return len(data)


def test_threaded_writer_raises_the_sink_error_in_the_writing_thread() -> None:
    writer = ThreadedWriter(_FailingSink(after=3), depth=1)
    with pytest.raises(OSError, match="disk on fire"):
        for _ in range(100):
            writer.write(b"x")
    writer.abort()
    writer = ThreadedWriter(_FailingSink(after=3), depth=10)
    for _ in range(5):
        writer.write(b"x")
    with pytest.raises(OSError, match="disk on fire"):
        writer.close()


def test_prefetcher_delivers_chunks_then_the_producer_error() -> None:
    def produce(put):  # type: ignore[no-untyped-def]
        put(b"a")
        put(b"b")
        raise ValueError("broken stream")

    with Prefetcher(produce, depth=1) as chunks:
        assert chunks.get() == b"a"
        assert chunks.get() == b"b"
        with pytest.raises(ValueError, match="broken stream"):
            chunks.get()


def test_prefetcher_stays_bounded_and_stops_an_endless_producer() -> None:
    made = []

    def produce(put):  # type: ignore[no-untyped-def]
        while True:
            made.append(1)
            put(b"x" * 1024)

    before = threading.active_count()
    with Prefetcher(produce, depth=3) as chunks:
        for _ in range(5):
            assert chunks.get() == b"x" * 1024
        threading.Event().wait(0.05)
        assert len(made) <= 5 + 3 + 1
    assert threading.active_count() == before
