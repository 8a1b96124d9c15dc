"""Format 2: byte layout, key derivation, nonces, associated data and the v1/v2 choice.

A format-2 object is ``header | chunk records | sealed footer | trailer`` (docs/FORMAT-V2.md is
the specification; every constant and layout here is described there byte by byte). The
writer is :mod:`.seal_v2`, the readers :mod:`.open_v2`, the footer codec :mod:`.footer_v2`.

Format 1 is Tako's: one AES-256-GCM stream over the whole ``.tar.zst`` (:mod:`.crypto`). GCM
holds at most 2^36 - 32 bytes under one key and nonce, so a larger archive must be format 2.
"""

from __future__ import annotations

import base64
import binascii
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import IntegrityError, TakoError
from ..models import ALGORITHM_V2 as ALGORITHM_V2  # re-exported; its home is the models
from ..models import BackupInfo
from .crypto import Sink

FORMAT_V1, FORMAT_V2 = 1, 2

HEADER_MAGIC = b"TAKOCHK2"
TRAILER_MAGIC = b"TAKOIDX2"
SALT_BYTES = 32
TAG_BYTES = 16
HEADER = struct.Struct(">8s32sII")  # magic, salt, chunk_size, flags (0)
TRAILER = struct.Struct(">48sQQQ8s")  # header copy, footer offset, footer length, chunks, magic
HEADER_SIZE = HEADER.size  # 48
TRAILER_SIZE = TRAILER.size  # 80
PREFIX = struct.Struct(">I")  # bit 31: last chunk; bits 0-30: sealed length
PREFIX_SIZE = PREFIX.size
LAST_FLAG = 1 << 31

MIN_CHUNK_SIZE = 4 << 10
MAX_CHUNK_SIZE = 64 << 20
DEFAULT_CHUNK_SIZE = 4 << 20
KEY_INFO = b"tako-backups chunked archive v2 key"
KIND_CHUNK, KIND_FOOTER = 0, 1

V1_CEILING = (1 << 36) - 32  # GCM's limit for one key and nonce; cryptography enforces it
TAR_HEADER_BOUND = 512 + 512 + 8704  # ustar header, PAX header, PAX records (path + link <= 8 KiB)
TAR_END = 2 * 512 + 20 * 512  # end-of-archive blocks and record padding, at most


@dataclass(frozen=True)
class Header:
    """The 48 bytes at the start of the object (and again inside the trailer)."""

    salt: bytes
    chunk_size: int

    def encode(self) -> bytes:
        return HEADER.pack(HEADER_MAGIC, self.salt, self.chunk_size, 0)

    @classmethod
    def decode(cls, data: bytes, what: str) -> Header:
        """Parse and check a header. Raises IntegrityError naming ``what`` when it is not one."""
        if len(data) != HEADER_SIZE:
            raise IntegrityError(f"{what} is not a format-2 archive (its header is cut short).")
        magic, salt, chunk_size, flags = HEADER.unpack(data)
        if magic != HEADER_MAGIC or flags != 0:
            raise IntegrityError(f"{what} is not a format-2 archive (bad header magic or flags).")
        if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
            raise IntegrityError(f"{what} header has an impossible chunk size ({chunk_size}).")
        return cls(salt, chunk_size)


@dataclass(frozen=True)
class Trailer:
    """The last 80 bytes: where the footer is, how many chunks precede it, and the header."""

    header: Header
    footer_offset: int
    footer_length: int
    chunk_count: int

    def encode(self) -> bytes:
        return TRAILER.pack(self.header.encode(), self.footer_offset, self.footer_length,
                            self.chunk_count, TRAILER_MAGIC)

    @classmethod
    def decode(cls, data: bytes, object_size: int, what: str) -> Trailer:
        """Parse a trailer and check it fits an object of ``object_size`` bytes.

        Raises IntegrityError when it is damaged. Its numbers are authenticated only later,
        as the footer's associated data.
        """
        if len(data) != TRAILER_SIZE:
            raise IntegrityError(f"{what} is too short to be a format-2 archive.")
        header, offset, length, chunks, magic = TRAILER.unpack(data)
        if magic != TRAILER_MAGIC:
            raise IntegrityError(f"{what} has no format-2 trailer: it is truncated or damaged.")
        if (chunks < 1 or length < TAG_BYTES or offset < HEADER_SIZE + chunks * (PREFIX_SIZE + TAG_BYTES)
                or offset + length + TRAILER_SIZE != object_size):
            raise IntegrityError(f"{what} has a damaged trailer (footer position or chunk count).")
        return cls(Header.decode(header, what), offset, length, chunks)


def derive_key(backup_key: bytes, salt: bytes) -> bytes:
    """The archive's own AES-256 key: HKDF-SHA256(backup key, salt, KEY_INFO)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=KEY_INFO).derive(backup_key)


def nonce(kind: int, counter: int) -> bytes:
    """12 bytes: the kind (0 chunk, 1 footer) as u32, then the counter as u64, big-endian."""
    return struct.pack(">IQ", kind, counter)


def chunk_ad(header: bytes, index: int, last: bool) -> bytes:
    """Associated data of chunk ``index``: header, kind 0, index (u64), last flag (u8)."""
    return header + struct.pack(">BQB", KIND_CHUNK, index, int(last))


def footer_ad(header: bytes, chunk_count: int, footer_offset: int) -> bytes:
    """Associated data of the footer: header, kind 1, chunk count (u64), footer offset (u64)."""
    return header + struct.pack(">BQQ", KIND_FOOTER, chunk_count, footer_offset)


def encode_prefix(sealed_length: int, last: bool) -> bytes:
    return PREFIX.pack(sealed_length | (LAST_FLAG if last else 0))


def decode_prefix(data: bytes) -> tuple[int, bool]:
    (word,) = PREFIX.unpack(data)
    return word & (LAST_FLAG - 1), bool(word & LAST_FLAG)


def max_sealed_length(chunk_size: int) -> int:
    """The largest sealed chunk a ``chunk_size`` chunk can make: zstd's compress bound + tag."""
    return chunk_size + (chunk_size >> 8) + 64 + TAG_BYTES


def chunk_count_for(plain_size: int, chunk_size: int) -> int:
    """Chunks for ``plain_size`` bytes: every chunk but the last is full; at least one."""
    return max(1, -(-plain_size // chunk_size))


@dataclass(frozen=True)
class Expected:
    """What the manifest says about an object, checked by the readers (None: not checked)."""

    size: int | None = None
    sha256_hex: str | None = None
    salt: bytes | None = None
    footer_tag: bytes | None = None

    @classmethod
    def from_manifest(cls, info: BackupInfo) -> Expected:
        """Size, SHA-256, salt (``nonce_base64``) and footer tag (``tag_base64``) of ``info``.

        Raises IntegrityError when the nonce or tag is malformed or the algorithm is not v2.
        """
        what = f"Backup {info.id} manifest"
        if info.encryption.algorithm != ALGORITHM_V2:
            raise IntegrityError(f"{what} does not describe a format-2 archive.")
        try:
            salt = base64.b64decode(info.encryption.nonce_base64, validate=True)
            tag = base64.b64decode(info.encryption.tag_base64, validate=True)
        except (binascii.Error, ValueError):
            raise IntegrityError(f"{what} has a malformed nonce or tag.") from None
        if len(salt) != SALT_BYTES or len(tag) != TAG_BYTES:
            raise IntegrityError(f"{what} has a malformed nonce or tag.")
        return cls(info.size_bytes, info.sha256_hex, salt, tag)


class V1CeilingReached(TakoError):
    """A format-1 archive grew past what one AES-GCM stream can hold; write format 2 instead."""


def archive_size_bound(data_bytes: int, members: int) -> int:
    """The most a tar.zst of ``members`` entries holding ``data_bytes`` can weigh.

    Each member costs at most its body padded to 512 bytes plus :data:`TAR_HEADER_BOUND` of
    headers; zstd adds at most 1/256 of its input plus a little per frame.
    """
    tar = data_bytes + members * (TAR_HEADER_BOUND + 511) + TAR_END
    return tar + (tar >> 8) + 4096


def choose_format(data_bytes: int, members: int, requested: int | None = None,
                  ceiling: int = V1_CEILING) -> int:
    """Format 1 (Tako's) unless asked for 2 or the archive could pass ``ceiling`` bytes.

    The bound assumes the data does not compress at all, so a format-1 archive chosen here
    passes the ceiling only when files grow while they are archived (see :class:`CeilingGuard`).
    """
    if requested == FORMAT_V2 or archive_size_bound(data_bytes, members) > ceiling:
        return FORMAT_V2
    return FORMAT_V1


class CeilingGuard:
    """A sink that passes writes to ``sink`` until they would pass ``ceiling`` bytes in all.

    Wrap a format-1 encryptor's input with it; on :class:`V1CeilingReached` abort the upload and
    start again in format 2. ``write`` raises V1CeilingReached before writing anything past it.
    """

    def __init__(self, sink: Sink, ceiling: int = V1_CEILING) -> None:
        self._sink = sink
        self._ceiling = ceiling
        self.written = 0

    def write(self, data: bytes | memoryview) -> int:
        if self.written + len(data) > self._ceiling:
            raise V1CeilingReached(
                "The archive grew past the 64 GiB one AES-GCM stream can hold; "
                "it must be written in format 2."
            )
        self.written += len(data)
        return self._sink.write(data)

