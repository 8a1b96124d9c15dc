"""Format 2 round trips: sealing a tar stream, reading it back front to back and by ranges."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest
import zstandard
from Crypto.Cipher import AES
from Crypto.Hash import SHA256
from Crypto.Protocol.KDF import HKDF

from tako_backups.core import layout
from tako_backups.core.archive import write_archive
from tako_backups.core.chunk_reader import ChunkReader
from tako_backups.core.extract import extract_stream
from tako_backups.core.format_v2 import (
    ALGORITHM_V2,
    DEFAULT_CHUNK_SIZE,
    TRAILER_SIZE,
    V1_CEILING,
    CeilingGuard,
    Expected,
    V1CeilingReached,
    archive_size_bound,
    choose_format,
)
from tako_backups.core.ranges_v2 import ChunkedRangeReader
from tako_backups.core.seal_v2 import ChunkedSeal, ChunkedSealer
from tako_backups.core.unseal_v2 import ChunkedStreamReader
from tako_backups.errors import IntegrityError, StorageError
from tako_backups.models import BackupInfo, BackupKey

from .treecmp import describe
from .v2_helpers import make_tar, members_of, ranged, seal, split


def _manifest(obj: bytes, result: ChunkedSeal, backup_id: str = "b1710000000-AbCdEf12") -> BackupInfo:
    prefix = layout.backup_prefix("demo", "production", "server")
    return BackupInfo(
        id=backup_id, app="demo", environment="production", server="server",
        created_at_unix_secs=1710000000, size_bytes=result.sealed.size_bytes,
        sha256_hex=result.sealed.sha256_hex, archive_key=layout.archive_key(prefix, backup_id),
        manifest_key=layout.manifest_key(prefix, backup_id), encryption=result.sealed.encryption,
    )


def _read_all(obj: bytes, key: BackupKey, expect: Expected | None = None, n: int = 5000) -> bytes:
    reader = ChunkedStreamReader(io.BytesIO(obj), key, expect=expect)
    out = b"".join(iter(lambda: reader.read(n), b""))
    reader.verify()
    return out


@pytest.mark.parametrize(("sizes", "chunk_size", "piece"), [
    ([0, 1, 5000, 70_000, 3], 4096, 7919),  # pieces straddle chunks
    ([100_000], 16384, 16384),  # pieces the size of a chunk
    ([1] * 40, 65536, 1 << 20),  # one piece, fewer bytes than a chunk
])
def test_round_trip_front_to_back_and_by_chunks(sizes: list[int], chunk_size: int, piece: int,
                                                key: BackupKey) -> None:
    tar = make_tar(sizes)
    obj, result = seal(tar, key, chunk_size, piece)
    expect = Expected.from_manifest(_manifest(obj, result))
    assert _read_all(obj, key, expect) == tar
    reader = ChunkedStreamReader(io.BytesIO(obj), key, expect=expect)
    chunks = list(reader.chunks())
    reader.verify()
    assert b"".join(chunks) == tar
    assert [len(c) for c in chunks[:-1]] == [chunk_size] * (len(chunks) - 1)
    assert reader.bytes_read == len(obj) == result.sealed.size_bytes
    rr = ChunkedRangeReader.open(ranged(obj), len(obj), key, expect=expect)
    assert rr.chunk_count == result.chunk_count == len(chunks)
    assert b"".join(rr.read_chunk(i) for i in range(rr.chunk_count)) == tar


def test_stream_ending_exactly_at_a_chunk_boundary(key: BackupKey) -> None:
    tar = make_tar([3000, 4000])
    assert len(tar) % 10240 == 0
    obj, result = seal(tar, key, chunk_size=10240)
    assert result.chunk_count == len(tar) // 10240 and result.plain_size == len(tar)
    assert _read_all(obj, key) == tar


def test_empty_stream_is_one_empty_last_chunk(key: BackupKey) -> None:
    obj, result = seal(b"", key, marks=False)
    assert result.chunk_count == 1 and result.plain_size == 0 and result.members == 0
    assert _read_all(obj, key) == b""
    rr = ChunkedRangeReader.open(ranged(obj), len(obj), key)
    assert rr.read_chunk(0) == b"" and list(rr.members()) == []


def test_a_real_archive_stream_restores_the_tree(dataset: Path, tmp_path: Path, key: BackupKey) -> None:
    """write_archive's own tar stream (its zstd undone) sealed in format 2 and extracted again."""
    plain = io.BytesIO()
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    unzstd = zstandard.ZstdDecompressor().stream_writer(plain, closefd=False)
    write_archive(dataset, unzstd, scratch)
    unzstd.flush()
    tar = plain.getvalue()
    obj, result = seal(tar, key, chunk_size=64 << 10, piece=1 << 20)
    assert result.members == len(members_of(tar)) and result.chunk_count > 10
    info = _manifest(obj, result)
    reader = ChunkedStreamReader(io.BytesIO(obj), key, expect=Expected.from_manifest(info),
                                 name=f"Backup {info.id}")
    tree = tmp_path / "tree"
    tree.mkdir()
    extract_stream(ChunkReader(lambda: next(reader.chunks(), None)), tree)  # type: ignore[arg-type]
    reader.verify()
    skip = ("tako/channels.sqlite", "app/app.db-wal", "app/app.db-shm",
            "tako/workflows.sqlite-wal", "tako/workflows.sqlite-shm")
    assert describe(tree) == describe(dataset, skip=skip)


def test_manifest_fields(key: BackupKey) -> None:
    obj, result = seal(make_tar([10_000]), key)
    enc = result.sealed.encryption
    parts = split(obj)
    assert enc.algorithm == ALGORITHM_V2 and enc.key_id == key.id
    assert base64.b64decode(enc.nonce_base64) == parts.header[8:40]
    assert base64.b64decode(enc.tag_base64) == parts.footer[-16:]
    assert result.sealed.size_bytes == len(obj)
    assert result.sealed.sha256_hex == hashlib.sha256(obj).hexdigest()
    assert result.extras() == {"format": 2, "chunk_size": 4096, "chunk_count": len(parts.records),
                               "footer_offset": len(obj) - TRAILER_SIZE - len(parts.footer),
                               "footer_length": len(parts.footer)}
    assert _manifest(obj, result).to_dict()["encryption"]["algorithm"] == ALGORITHM_V2


def test_every_archive_has_its_own_salt(key: BackupKey) -> None:
    tar = make_tar([5000], compressible=True)
    (a, ra), (b, rb) = seal(tar, key), seal(tar, key)
    assert ra.sealed.encryption.nonce_base64 != rb.sealed.encryption.nonce_base64
    assert split(a).records[0] != split(b).records[0]


def test_an_independent_reader_following_the_spec(key: BackupKey) -> None:
    """pycryptodome and plain zstd/json, step by step as docs/FORMAT-V2.md says."""
    tar = make_tar([9000, 20, 30_000])
    obj, _ = seal(tar, key, chunk_size=8192)
    assert obj[:8] == b"TAKOCHK2" and obj[-8:] == b"TAKOIDX2"
    salt, chunk_size = obj[8:40], int.from_bytes(obj[40:44], "big")
    assert chunk_size == 8192 and obj[44:48] == bytes(4)
    subkey = HKDF(key.key, 32, salt, SHA256, context=b"tako-backups chunked archive v2 key")
    at, index, plain, last, lengths = 48, 0, b"", False, []
    while not last:
        word = int.from_bytes(obj[at:at + 4], "big")
        last, length = bool(word >> 31), word & 0x7FFFFFFF
        body = obj[at + 4:at + 4 + length]
        aes = AES.new(subkey, AES.MODE_GCM, nonce=bytes(4) + index.to_bytes(8, "big"))
        aes.update(obj[:48] + b"\x00" + index.to_bytes(8, "big") + bytes([last]))
        plain += zstandard.ZstdDecompressor().decompress(aes.decrypt_and_verify(body[:-16], body[-16:]))
        lengths.append(length)
        at, index = at + 4 + length, index + 1
    assert plain == tar
    trailer = obj[-80:]
    assert trailer[:48] == obj[:48]
    f_off, f_len, count = (int.from_bytes(trailer[48 + 8 * i:56 + 8 * i], "big") for i in range(3))
    assert (f_off, count) == (at, index) and f_off + f_len + 80 == len(obj)
    aes = AES.new(subkey, AES.MODE_GCM, nonce=(1).to_bytes(4, "big") + bytes(8))
    aes.update(obj[:48] + b"\x01" + count.to_bytes(8, "big") + f_off.to_bytes(8, "big"))
    sealed = obj[f_off:f_off + f_len]
    text = zstandard.ZstdDecompressor().decompressobj().decompress(
        aes.decrypt_and_verify(sealed[:-16], sealed[-16:]))
    lines = [json.loads(line) for line in text.decode("ascii").splitlines()]
    members = members_of(tar)
    assert [line for line in lines if line[0] == "m"] == [
        ["m", m.name, m.type.decode(), m.size, m.mtime, m.offset] for m in members]
    assert [line for line in lines if line[0] == "c"] == [["c", n] for n in lengths]
    assert lines[-1] == ["end", count, len(tar), len(members)]


def test_members_list_names_offsets_and_spans(key: BackupKey) -> None:
    tar = make_tar([100, 0, 9000], prefix="app/" + "long-name/" * 12)  # PAX headers
    obj, _ = seal(tar, key)
    rr = ChunkedRangeReader.open(ranged(obj), len(obj), key)
    listed, infos = list(rr.members()), members_of(tar)
    assert [(m.name, m.kind, m.size, m.mtime, m.offset) for m in listed] == [
        (i.name, i.type.decode(), i.size, i.mtime, i.offset) for i in infos]
    assert [m.end for m in listed] == [i.offset for i in infos[1:]] + [len(tar)]
    assert all(m.offset < m.end for m in listed)


def test_names_that_are_not_utf8_survive_the_footer(key: BackupKey) -> None:
    name = b"app/caf\xe9-\xff".decode("utf-8", "surrogateescape")
    out = io.BytesIO()
    with ChunkedSealer(out, key) as sealer:
        sealer.member(name, offset=0, kind="0", size=0, mtime=1.5)
        sealer.write(bytes(10240))
        sealer.finish()
    rr = ChunkedRangeReader.open(ranged(out.getvalue()), len(out.getvalue()), key)
    assert [(m.name, m.mtime) for m in rr.members()] == [(name, 1.5)]


def test_one_member_costs_only_its_chunks(key: BackupKey) -> None:
    tar = make_tar([50_000] * 60)  # about 3 MB of random data in 47 chunks of 64 KiB
    obj, result = seal(tar, key, chunk_size=64 << 10, piece=1 << 20)
    rr = ChunkedRangeReader.open(ranged(obj), len(obj), key, expect=Expected.from_manifest(
        _manifest(obj, result)))
    assert rr.requests == 1 and rr.bytes_fetched == 64 << 10  # trailer and footer: the last 64 KiB
    member = next(m for m in rr.members() if m.name == "app/f41")
    wanted = member.chunks(rr.chunk_size)
    assert len(wanted) == 2  # this member straddles a chunk boundary
    records = split(obj).records
    before = rr.bytes_fetched
    with tarfile.TarFile(fileobj=rr.stream_from(member.offset), mode="r") as tf:  # type: ignore[arg-type]
        info = tf.next()
        assert info is not None and info.name == member.name
        body = tf.extractfile(info)
        assert body is not None
        data = body.read()
    want = members_of(tar)[member_index(tar, "app/f41")]
    assert data == tar[want.offset_data:want.offset_data + want.size]
    assert rr.requests == 1 + len(wanted)
    assert rr.bytes_fetched - before == sum(len(records[i]) for i in wanted)
    assert rr.bytes_fetched < len(obj) // 10


def member_index(tar: bytes, name: str) -> int:
    return [m.name for m in members_of(tar)].index(name)


def test_footer_position_from_the_manifest_saves_a_read(key: BackupKey) -> None:
    names = [f"app/{os.urandom(20).hex()}" for _ in range(3000)]
    tar = make_tar([0] * 3000, names=names)  # random names: a footer of over 64 KiB
    obj, result = seal(tar, key, chunk_size=1 << 20)
    assert result.footer_length > 64 << 10
    assert ChunkedRangeReader.open(ranged(obj), len(obj), key).requests == 2
    hinted = ChunkedRangeReader.open(ranged(obj), len(obj), key,
                                     footer_at=(result.footer_offset, result.footer_length))
    assert hinted.requests == 1 and hinted.bytes_fetched == result.footer_length + TRAILER_SIZE
    assert sum(1 for _ in hinted.members()) == 3002


def test_chunks_can_be_read_from_several_threads(key: BackupKey) -> None:
    from concurrent.futures import ThreadPoolExecutor

    tar = make_tar([40_000] * 8)
    obj, result = seal(tar, key)
    rr = ChunkedRangeReader.open(ranged(obj), len(obj), key)
    opened = rr.bytes_fetched
    with ThreadPoolExecutor(4) as pool:
        chunks = list(pool.map(rr.read_chunk, range(rr.chunk_count)))
    assert b"".join(chunks) == tar
    assert rr.requests == 1 + result.chunk_count
    assert rr.bytes_fetched - opened == sum(len(r) for r in split(obj).records)


def test_chunks_compress_on_single_threaded_contexts_one_per_thread_and_stay_in_order(
        key: BackupKey, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks that compress fast (repetitive) and slow (random) alternate, so later chunks finish
    before earlier ones on the compressing threads: the object still holds them in order."""
    import threading

    import tako_backups.core.seal_v2 as seal_v2
    from tako_backups.core.archive import ZSTD_IN_CALLER, compressor

    made: list[tuple[str, int]] = []

    def recording(level: int, workers: int) -> zstandard.ZstdCompressor:
        made.append((threading.current_thread().name, workers))
        return compressor(level, workers)

    monkeypatch.setattr(seal_v2, "compressor", recording)
    monkeypatch.setattr(seal_v2, "compressing_threads", lambda: 3)
    chunk = 64 << 10
    tar = make_tar([chunk * 4] * 6 + [chunk * 3], compressible=False)
    tar = b"".join((tar[at:at + chunk] if (at // chunk) % 2 else bytes(chunk)[:len(tar[at:at + chunk])])
                   for at in range(0, len(tar), chunk))  # random and zero chunks alternate
    obj, result = seal(tar, key, chunk_size=chunk, piece=chunk // 3, marks=False)
    assert result.chunk_count == -(-len(tar) // chunk) > 8
    assert _read_all(obj, key, Expected.from_manifest(_manifest(obj, result))) == tar
    assert made and all(workers == ZSTD_IN_CALLER for _, workers in made)
    names = [name for name, _ in made]
    assert len(names) == len(set(names)) <= 3  # one context per compressing thread, reused
    assert all(name.startswith("tako-zstd-v2") for name in names)


def test_compressing_threads_follow_the_cores_this_process_may_use(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import tako_backups.core.seal_v2 as seal_v2

    for cores, threads in (({0}, 1), ({0, 1}, 2), (set(range(64)), seal_v2.MAX_COMPRESSORS)):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid, cores=cores: cores, raising=False)
        assert seal_v2.compressing_threads() == threads
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)  # macOS has no affinity
    for count, threads in ((None, 1), (3, 3), (12, seal_v2.MAX_COMPRESSORS)):
        monkeypatch.setattr(os, "cpu_count", lambda count=count: count)
        assert seal_v2.compressing_threads() == threads


def test_a_restore_reads_format_2_in_pieces_of_at_most_one_mib(key: BackupKey) -> None:
    """The tar stream handed to extraction comes in pieces of <= 1 MiB, not whole 4 MiB chunks,
    so the queue between the threads holds part of one chunk (a restore's peak memory)."""
    from tako_backups.core import formats

    tar = make_tar([3 << 20, 5 << 20, 100])
    obj, result = seal(tar, key, chunk_size=DEFAULT_CHUNK_SIZE, piece=1 << 20)
    stream = formats.open_tar_stream(io.BytesIO(obj), _manifest(obj, result), key)
    pieces = [bytes(p) for p in stream.chunks()]
    stream.verify()
    assert b"".join(pieces) == tar
    assert max(len(p) for p in pieces) == formats.CHUNK == 1 << 20
    size = DEFAULT_CHUNK_SIZE
    assert len(pieces) == sum(-(-len(tar[at:at + size]) // formats.CHUNK) for at in range(0, len(tar), size))


def test_footer_position_must_match_the_trailer(key: BackupKey) -> None:
    obj, result = seal(make_tar([5000]), key)
    with pytest.raises(IntegrityError, match="trailer does not match its manifest"):
        ChunkedRangeReader.open(ranged(obj), len(obj), key,
                                footer_at=(result.footer_offset - 1, result.footer_length + 1))
    rr = ChunkedRangeReader.open(ranged(obj), len(obj), key)
    with pytest.raises(IndexError):
        rr.stream_from(result.plain_size + 1)
    with pytest.raises(IndexError):
        rr.read_chunk(result.chunk_count)


def test_sealer_refuses_impossible_marks_and_chunk_sizes(key: BackupKey) -> None:
    with pytest.raises(ValueError, match="Chunk size"):
        ChunkedSealer(io.BytesIO(), key, chunk_size=1000)
    with ChunkedSealer(io.BytesIO(), key) as sealer:
        sealer.member("app/a", offset=512, kind="0", size=1, mtime=0)
        with pytest.raises(ValueError, match="offsets must increase"):
            sealer.member("app/b", offset=512, kind="0", size=1, mtime=0)
        sealer.write(bytes(512))
        with pytest.raises(ValueError, match="past the tar stream"):
            sealer.finish()


class _FailingSink:
    def __init__(self, after: int) -> None:
        self.left = after

    def write(self, data: bytes | memoryview) -> int:
        self.left -= len(data)
        if self.left < 0:
            raise StorageError("upload failed")
        return len(data)


def test_a_failing_sink_stops_the_writer(key: BackupKey) -> None:
    import threading

    before = threading.active_count()
    with pytest.raises(StorageError, match="upload failed"):
        with ChunkedSealer(_FailingSink(20_000), key, chunk_size=4096) as sealer:
            for _ in range(100):
                sealer.write(bytes(range(256)) * 64)
            sealer.finish()
    assert threading.active_count() == before


def test_choose_format_and_the_ceiling_guard() -> None:
    assert choose_format(10 << 30, 1000) == 1
    assert choose_format(10 << 30, 1000, requested=2) == 2
    assert choose_format(V1_CEILING, 0) == 2  # zstd may add to data that does not compress
    assert choose_format(1 << 20, 10, ceiling=1 << 20) == 2  # a test-sized ceiling
    assert archive_size_bound(0, 0) >= 10240
    assert archive_size_bound(1 << 20, 10) > (1 << 20) + 10 * 1024
    out = io.BytesIO()
    guard = CeilingGuard(out, ceiling=100)
    guard.write(b"x" * 60)
    with pytest.raises(V1CeilingReached, match="format 2"):
        guard.write(b"x" * 41)
    assert out.getvalue() == b"x" * 60 and guard.written == 60


def test_expected_from_a_manifest_checks_its_fields(key: BackupKey) -> None:
    obj, result = seal(make_tar([10]), key)
    info = _manifest(obj, result)
    assert Expected.from_manifest(info).salt == split(obj).header[8:40]
    from dataclasses import replace

    for enc in (replace(info.encryption, algorithm="aes-256-gcm"),
                replace(info.encryption, nonce_base64="AAAA"),
                replace(info.encryption, tag_base64="not base64!")):
        with pytest.raises(IntegrityError, match="manifest"):
            Expected.from_manifest(replace(info, encryption=enc))


PEAK_RSS = """
import os, resource, sys, threading
from tako_backups.core.seal_v2 import ChunkedSealer
from tako_backups.core.unseal_v2 import ChunkedStreamReader
from tako_backups.core.pipes import limit_heap_growth
from tako_backups.models import BackupKey

limit_heap_growth()  # as tako-server does: without it, glibc's per-thread arenas grow under load
mb = int(sys.argv[1])
key = BackupKey("backup-key-0123456789abcdef", os.urandom(32))
block = os.urandom(1 << 20)
r, w = os.pipe()

def produce():
    with os.fdopen(w, "wb", buffering=0) as out, ChunkedSealer(out, key) as sealer:
        for i in range(mb):
            sealer.member(f"app/f{i}", offset=i << 20, kind="0", size=(1 << 20) - 512, mtime=0)
            sealer.write(block)
        sealer.finish()

thread = threading.Thread(target=produce)
thread.start()
total = 0
with os.fdopen(r, "rb") as src:
    reader = ChunkedStreamReader(src, key)
    for chunk in reader.chunks():
        total += len(chunk)
    reader.verify()
thread.join()
assert total == mb << 20
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


@pytest.mark.slow
def test_memory_does_not_grow_with_the_stream() -> None:
    """Seal 32 MB and 640 MB through a pipe into the stream reader: same peak RSS, and far less
    than the stream (the absolute bound is loose: glibc arenas grow with CPU contention)."""
    import subprocess
    import sys

    def peak_kib(mb: int) -> int:
        done = subprocess.run([sys.executable, "-c", PEAK_RSS, str(mb)], capture_output=True,
                              text=True, check=True)
        return int(done.stdout)

    small, large = peak_kib(32), peak_kib(640)
    assert large - small < 16 << 10, (small, large)
    assert large < 320 << 10, large
