"""Headers are read in bounded memory: extended headers (PAX, GNU long names) over 1 MiB, chains
of them, global PAX headers piling up and over-long sparse maps are refused before they are read;
headers within the limits still restore."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

import tako_backups.core.extract as extract_module
from tako_backups.core.chunk_reader import ChunkReader
from tako_backups.core.extract import extract_stream
from tako_backups.core.tar_headers import EXTENDED_LIMIT, HEADER_BLOCKS, SPARSE_MAP_LIMIT
from tako_backups.errors import FormatError, UnsafeArchiveError

BLOCK = 512
REFUSE = "; refusing to restore."


def header(name: str, kind: bytes = tarfile.REGTYPE, size: int = 0, fmt: int = tarfile.USTAR_FORMAT,
           **pax: str) -> bytes:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.mode = kind, size, 0o755 if kind == tarfile.DIRTYPE else 0o644
    if pax:
        info.pax_headers = pax
    return info.tobuf(fmt if not pax else tarfile.PAX_FORMAT)


def padded(data: bytes) -> bytes:
    return data + bytes(-len(data) % BLOCK)


def record(key: str, value: str) -> bytes:
    """One PAX record ``"<length> key=value\\n"``."""
    body = f" {key}={value}\n".encode()
    n = len(body) + 1
    while len(str(n).encode()) + len(body) != n:
        n += 1
    return str(n).encode() + body


def extended(kind: bytes, data: bytes, declared: int | None = None) -> bytes:
    """An extended header of type ``kind`` holding ``data`` (declaring ``declared`` bytes)."""
    name = "././@LongLink" if kind in (b"L", b"K") else "PaxHeader/x"
    return header(name, kind, len(data) if declared is None else declared) + padded(data)


def archive(*parts: bytes) -> bytes:
    tops = header("app", tarfile.DIRTYPE) + header("tako", tarfile.DIRTYPE)
    return tops + b"".join(parts) + bytes(2 * BLOCK)


def run(tmp_path: Path, data: bytes) -> Path:
    dest = tmp_path / "tree"
    dest.mkdir()
    extract_stream(io.BytesIO(data), dest)
    return dest


def refusal(tmp_path: Path, data: bytes) -> str:
    with pytest.raises(UnsafeArchiveError) as refused:
        run(tmp_path, data)
    return str(refused.value)


@pytest.mark.parametrize("kind", [b"x", b"L", b"K", b"g"])
def test_an_extended_header_declaring_over_1_mib_is_refused_unread(tmp_path: Path, kind: bytes) -> None:
    declared = EXTENDED_LIMIT + 1
    message = refusal(tmp_path, archive(extended(kind, b"", declared)))
    assert message == (f"The archive header at byte 1024 declares {declared} bytes of extended header "
                       f"data (PAX or GNU long name); an entry may have at most 1 MiB{REFUSE}")


def test_extended_headers_within_the_limit_restore(tmp_path: Path) -> None:
    long_name = "app/" + "/".join(["n" * 200] * 5) + "/file"
    comment = record("comment", "c" * (EXTENDED_LIMIT - 64))
    data = archive(
        extended(b"L", long_name.encode() + b"\0"), header("ignored", size=4) + padded(b"long"),
        extended(b"x", comment + record("path", "app/with-comment")), header("x", size=3) + padded(b"pax"),
        extended(b"g", record("comment", "global")), header("app/after-global", size=2) + padded(b"ok"),
    )
    tree = run(tmp_path, data)
    assert (tree / long_name).read_bytes() == b"long"
    assert (tree / "app" / "with-comment").read_bytes() == b"pax"
    assert (tree / "app" / "after-global").read_bytes() == b"ok"


def test_a_chain_of_extended_headers_over_the_limit_is_refused(tmp_path: Path) -> None:
    """Each header is under 1 MiB; together they are over it."""
    half = record("comment", "c" * (600 << 10))
    first = extended(b"x", half)
    message = refusal(tmp_path, archive(first, extended(b"x", half), header("app/f", size=1) + padded(b"f")))
    assert message == (f"The archive header at byte {1024 + len(first)} declares {len(half)} bytes of "
                       "extended header data (PAX or GNU long name); an entry may have at most 1 MiB"
                       + REFUSE)


def test_global_pax_headers_may_not_pile_up(tmp_path: Path) -> None:
    parts = []
    for i in range(4):
        parts.append(extended(b"g", record(f"key{i}", "v" * (400 << 10))))
        parts.append(header(f"app/f{i}", size=1) + padded(b"f"))
    message = refusal(tmp_path, archive(*parts))
    assert message.startswith("The archive's global PAX headers (at byte ")
    assert message.endswith(f") take more than 1 MiB{REFUSE}")


def sparse_header(name: str, extension_blocks: int, real_size: int) -> bytes:
    """An old-GNU sparse header with one data segment in the header and ``extension_blocks``
    extension blocks of 21 one-byte segments each."""
    info = tarfile.TarInfo(name)
    info.type, info.size, info.mode = tarfile.GNUTYPE_SPARSE, 1 + 21 * extension_blocks, 0o644
    block = bytearray(info.tobuf(tarfile.GNU_FORMAT))
    block[386:410] = b"%011o\0%011o\0" % (0, 1)
    block[482] = 1 if extension_blocks else 0
    block[483:495] = b"%011o\0" % real_size
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    blocks = [bytes(block)]
    offset = 10
    for n in range(extension_blocks):
        ext = bytearray(BLOCK)
        for slot in range(21):
            ext[slot * 24:slot * 24 + 24] = b"%011o\0%011o\0" % (offset, 1)
            offset += 10
        ext[504] = 1 if n + 1 < extension_blocks else 0
        blocks.append(bytes(ext))
    return b"".join(blocks)


def test_a_sparse_map_within_its_limit_restores(tmp_path: Path) -> None:
    blocks = 100
    segments = 1 + 21 * blocks
    data = archive(sparse_header("app/holes", blocks, 10 * segments) + padded(b"d" * segments))
    content = (run(tmp_path, data) / "app" / "holes").read_bytes()
    assert len(content) == 10 * segments
    assert content[::10] == b"d" * segments and content.count(0) == 9 * segments


def test_a_sparse_file_takes_only_its_data_from_the_free_space(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """1 GiB with 2,101 bytes of data restores on a disk with 1 MiB free; the holes stay holes."""
    monkeypatch.setattr(extract_module, "free_bytes", lambda path: 1 << 20)
    blocks = 100
    segments = 1 + 21 * blocks
    data = archive(sparse_header("app/holes", blocks, 1 << 30) + padded(b"d" * segments))
    holes = run(tmp_path, data) / "app" / "holes"
    assert holes.stat().st_size == 1 << 30 and holes.stat().st_blocks * 512 < 1 << 20


@pytest.mark.parametrize(("offsets", "real_size"), [([0, 5, 3], 100), ([0, 10, 20], 20)],
                         ids=["backwards", "past-the-end"])
def test_an_invalid_sparse_map_is_refused(tmp_path: Path, offsets: list[int], real_size: int) -> None:
    info = tarfile.TarInfo("app/holes")
    info.type, info.size, info.mode = tarfile.GNUTYPE_SPARSE, len(offsets), 0o644
    block = bytearray(info.tobuf(tarfile.GNU_FORMAT))
    block[386:386 + 24 * len(offsets)] = b"".join(b"%011o\0%011o\0" % (o, 1) for o in offsets)
    block[483:495] = b"%011o\0" % real_size
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    message = refusal(tmp_path, archive(bytes(block) + padded(b"x" * len(offsets))))
    assert message == f"Archive entry 'app/holes' has an invalid sparse map{REFUSE}"


def test_a_sparse_map_over_its_limit_is_refused(tmp_path: Path) -> None:
    blocks = (EXTENDED_LIMIT + HEADER_BLOCKS + SPARSE_MAP_LIMIT) // BLOCK
    message = refusal(tmp_path, archive(sparse_header("app/holes", blocks, 10 * (1 + 21 * blocks))))
    assert message == (f"The headers of the archive entry at byte 1024 (PAX, GNU long names or sparse "
                       f"map) are larger than an entry may have{REFUSE}")


def test_a_sparse_map_cut_short_is_a_format_error(tmp_path: Path) -> None:
    cut = archive(sparse_header("app/holes", 3, 1000))[:1024 + 2 * BLOCK]
    with pytest.raises(FormatError, match=r"^Backup archive is not a valid tar stream \("):
        run(tmp_path, cut)


# ----- the reader underneath -----

def chunks(data: bytes, size: int) -> ChunkReader:
    parts = [data[i:i + size] for i in range(0, len(data), size)]
    return ChunkReader(lambda: parts.pop(0) if parts else b"")


def test_peek_shows_bytes_across_chunks_without_consuming_them() -> None:
    data = bytes(range(256)) * 8
    reader = chunks(data, 100)
    assert reader.read(90) == data[:90]
    assert reader.peek(512) == data[90:602]
    assert reader.tell() == 90
    assert reader.read(600) == data[90:690]
    reader.seek(1500)
    assert reader.peek(1000) == data[1500:] and reader.read() == data[1500:]
    assert reader.peek(10) == b""


def test_read_budget_refuses_before_reading_and_nests() -> None:
    reader = chunks(b"a" * 5000, 64)

    class Over(Exception):
        pass

    with reader.read_budget(1000, Over):
        assert reader.read(600) == b"a" * 600
        with reader.read_budget(10, Over):  # the outer budget stays
            assert reader.read(300) == b"a" * 300
        assert reader.budget_left == 100
        with pytest.raises(Over):
            reader.read(101)
        assert reader.tell() == 900
        reader.extend_budget(500)
        assert reader.read(550) == b"a" * 550
        with pytest.raises(Over):
            reader.read()
    assert reader.budget_left is None
    assert reader.read(2000) == b"a" * 2000
