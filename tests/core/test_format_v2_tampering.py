"""Format 2 refuses every tampering: reordered, dropped, duplicated or cut chunks, flipped bytes,
swapped footers, edited trailers, the wrong key and a manifest from another backup."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import replace

import pytest

from tako_backups.core.crypto import CHECKSUM_MISMATCH
from tako_backups.core.format_v2 import HEADER_SIZE, TRAILER_SIZE, Expected
from tako_backups.core.ranges_v2 import ChunkedRangeReader
from tako_backups.core.seal_v2 import ChunkedSeal
from tako_backups.core.unseal_v2 import ChunkedStreamReader
from tako_backups.errors import IntegrityError
from tako_backups.models import BackupKey

from .v2_helpers import make_tar, ranged, seal, split

NAME = "Backup b1710000000-AbCdEf12"
Reader = Callable[[bytes, BackupKey, "Expected | None"], bytes]
Sealed = tuple[bytes, ChunkedSeal]


def read_stream(obj: bytes, key: BackupKey, expect: Expected | None = None) -> bytes:
    reader = ChunkedStreamReader(io.BytesIO(obj), key, expect=expect, name=NAME)
    data = b"".join(reader.chunks())
    reader.verify()
    return data


def read_ranges(obj: bytes, key: BackupKey, expect: Expected | None = None) -> bytes:
    rr = ChunkedRangeReader.open(ranged(obj), len(obj), key, expect=expect, name=NAME)
    return b"".join(rr.read_chunk(i) for i in range(rr.chunk_count))


def refused(read, obj: bytes, key: BackupKey, expect: Expected | None = None) -> str:
    with pytest.raises(IntegrityError) as err:
        read(obj, key, expect)
    message = str(err.value)
    assert "\n" not in message and message.endswith(".")
    assert message == CHECKSUM_MISMATCH or message.startswith(NAME)
    return message


BOTH = pytest.mark.parametrize("read", [read_stream, read_ranges], ids=["stream", "ranges"])


@pytest.fixture
def tar() -> bytes:
    return make_tar([3000, 9000, 2000, 6000])  # random data: 5 chunks of 4 KiB


@pytest.fixture
def sealed(tar: bytes, key: BackupKey) -> Sealed:
    obj, result = seal(tar, key)
    assert result.chunk_count >= 5
    assert read_stream(obj, key) == tar and read_ranges(obj, key) == tar
    return obj, result


@BOTH
def test_reordered_chunks(read: Reader, sealed: Sealed, key: BackupKey) -> None:
    parts = split(sealed[0])
    recs = parts.records[:]
    recs[1], recs[2] = recs[2], recs[1]
    assert "chunk 1" in refused(read, parts.join(recs), key)


@BOTH
@pytest.mark.parametrize("fix_trailer", [False, True])
def test_dropped_chunk(read: Reader, sealed: Sealed, key: BackupKey, fix_trailer: bool) -> None:
    parts = split(sealed[0])
    recs = parts.records[:1] + parts.records[2:]
    refused(read, parts.join(recs, trailer=parts.trailer_for(recs) if fix_trailer else None), key)


@BOTH
@pytest.mark.parametrize("fix_trailer", [False, True])
def test_duplicated_chunk(read: Reader, sealed: Sealed, key: BackupKey, fix_trailer: bool) -> None:
    parts = split(sealed[0])
    recs = parts.records[:2] + parts.records[1:]
    refused(read, parts.join(recs, trailer=parts.trailer_for(recs) if fix_trailer else None), key)


@BOTH
def test_dropped_last_chunk_with_footer_and_trailer_kept(read: Reader, sealed: Sealed,
                                                         key: BackupKey) -> None:
    parts = split(sealed[0])
    recs = parts.records[:-1]
    refused(read, parts.join(recs, trailer=parts.trailer_for(recs)), key)


def test_truncated_inside_a_chunk(sealed: Sealed, key: BackupKey) -> None:
    obj = sealed[0]
    parts = split(obj)
    cut = HEADER_SIZE + len(parts.records[0]) + len(parts.records[1]) + 100
    assert "ends inside chunk 2" in refused(read_stream, obj[:cut], key)
    assert "trailer" in refused(read_ranges, obj[:cut], key)


def test_truncated_at_a_chunk_boundary(sealed: Sealed, key: BackupKey) -> None:
    parts = split(sealed[0])
    for keep in range(1, len(parts.records)):
        obj = parts.header + b"".join(parts.records[:keep])
        assert "ends between chunks, before its last chunk" in refused(read_stream, obj, key)
        refused(read_ranges, obj, key)
    obj = parts.header + b"".join(parts.records)  # every chunk, no footer, no trailer
    assert "footer or trailer is missing" in refused(read_stream, obj, key)
    refused(read_ranges, obj, key)


def test_last_flag_moved(sealed: Sealed, key: BackupKey) -> None:
    """Marking chunk 2 as the last one (to drop the rest) breaks its tag, and the footer's."""
    parts = split(sealed[0])
    recs = parts.records[:]
    recs[2] = bytes([recs[2][0] | 0x80]) + recs[2][1:]
    obj = parts.join(recs[:3], trailer=parts.trailer_for(recs[:3]))
    assert "chunk 2 failed authentication" in refused(read_stream, obj, key)
    assert "footer failed authentication" in refused(read_ranges, obj, key)


def test_every_flipped_byte_is_refused(key: BackupKey) -> None:
    """Each bit position of a small object, one at a time: header, every chunk's frame and body,
    the footer and each trailer field. The range reader never reads the header (it uses the
    authenticated copy in the trailer), so a flip there cannot change what it returns."""
    tar = make_tar([1500, 700], compressible=True)
    obj, _ = seal(tar, key)
    assert len(split(obj).records) >= 3 and len(obj) < 2000
    for at in range(len(obj)):
        bad = bytearray(obj)
        bad[at] ^= 1 << (at % 8)
        refused(read_stream, bytes(bad), key)
        if at < HEADER_SIZE:
            assert read_ranges(bytes(bad), key) == tar
        else:
            refused(read_ranges, bytes(bad), key)


@BOTH
def test_appended_bytes(read: Reader, sealed: Sealed, key: BackupKey) -> None:
    refused(read, sealed[0] + b"\0" * 7, key)


def test_footer_and_trailer_of_another_archive(tar: bytes, sealed: Sealed, key: BackupKey) -> None:
    """Same data, same key, same layout: only the salt differs, and that is enough."""
    obj, result = sealed
    other = split(seal(tar, key)[0])
    parts = split(obj)
    assert [len(r) for r in parts.records] == [len(r) for r in other.records]
    spliced = parts.join(footer=other.footer, trailer=other.trailer)
    assert "trailer does not match" in refused(read_stream, spliced, key)
    assert "chunk 0 failed authentication" in refused(read_ranges, spliced, key)
    assert "salt" in refused(read_ranges, spliced, key, _expect(result))
    assert refused(read_stream, spliced, key, _expect(result)) == CHECKSUM_MISMATCH
    for read in (read_stream, read_ranges):  # only the footer swapped
        assert "footer failed authentication" in refused(read, parts.join(footer=other.footer), key)


@BOTH
def test_footer_of_an_archive_with_other_data(read: Reader, sealed: Sealed, key: BackupKey) -> None:
    parts = split(sealed[0])
    other = split(seal(make_tar([10, 20]), key)[0])
    assert "footer" in refused(read, parts.join(footer=other.footer,
                                                trailer=parts.trailer_for(parts.records, other.footer)), key)


@pytest.mark.parametrize(("field", "delta"), [(48, 1), (48, -1), (56, 1), (56, -1), (64, 1), (64, -1)])
@BOTH
def test_edited_trailer_numbers(read: Reader, sealed: Sealed, key: BackupKey, field: int, delta: int) -> None:
    obj = bytearray(sealed[0])
    at = len(obj) - TRAILER_SIZE + field
    value = int.from_bytes(obj[at:at + 8], "big") + delta
    obj[at:at + 8] = value.to_bytes(8, "big")
    refused(read, bytes(obj), key)


def test_wrong_key(sealed: Sealed, other_key: BackupKey) -> None:
    assert "chunk 0 failed authentication (AES-GCM tag): wrong key 'backup-key-fedcba9876543210'" \
        in refused(read_stream, sealed[0], other_key)
    assert "footer failed authentication (AES-GCM tag): wrong key" \
        in refused(read_ranges, sealed[0], other_key)


def test_object_of_another_backup_under_this_manifest(tar: bytes, sealed: Sealed, key: BackupKey) -> None:
    obj, result = sealed
    expect = _expect(result)
    other, _ = seal(tar, key)
    assert read_stream(obj, key, expect) == tar and read_ranges(obj, key, expect) == tar
    for read in (read_stream, read_ranges):  # refused at the header, before reading any chunk
        assert "does not belong to its manifest" in refused(read, other, key, expect)


def test_footer_tag_must_be_the_manifests(sealed: Sealed, key: BackupKey) -> None:
    expect = replace(_expect(sealed[1]), footer_tag=os.urandom(16))
    assert "tag differs" in refused(read_ranges, sealed[0], key, expect)
    assert "tag differs" in refused(read_stream, sealed[0], key, expect)


def test_size_and_checksum_against_the_manifest(sealed: Sealed, key: BackupKey) -> None:
    expect = _expect(sealed[1])
    size = sealed[1].sealed.size_bytes
    assert refused(read_stream, sealed[0], key, replace(expect, sha256_hex="0" * 64)) == CHECKSUM_MISMATCH
    assert refused(read_stream, sealed[0], key, replace(expect, size=size - 1)) == CHECKSUM_MISMATCH
    assert refused(read_ranges, sealed[0], key, replace(expect, size=size + 1)) == CHECKSUM_MISMATCH


def _expect(result: ChunkedSeal) -> Expected:
    import base64

    enc = result.sealed.encryption
    return Expected(result.sealed.size_bytes, result.sealed.sha256_hex,
                    base64.b64decode(enc.nonce_base64), base64.b64decode(enc.tag_base64))
