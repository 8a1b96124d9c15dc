"""Open a format-2 object: authenticate chunks and the footer, and read the object front to back.

:class:`ChunkOpener` holds one archive's derived key and turns a sealed chunk into its tar
bytes (AES-GCM with the chunk's number and last flag as associated data, then zstd) or a sealed
footer into a parsed :class:`~.footer_v2.Footer`. Plaintext is handed out only after its tag
verified, so (unlike format 1) nothing unauthenticated ever reaches tar.

:class:`ChunkedStreamReader` stands where ``DecryptingReader`` + a zstd stream reader stand for
format 1: it yields the tar stream chunk by chunk from one sequential read of the object, then
checks the footer, the trailer and (given the manifest) the object's size and SHA-256. Every
failure is an IntegrityError naming the archive and the chunk or part at fault.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Iterator
from typing import BinaryIO

import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import IntegrityError
from ..models import BackupKey
from .chunk_reader import ChunkReader
from .crypto import CHECKSUM_MISMATCH
from .footer_v2 import Footer, parse_footer
from .format_v2 import (
    HEADER_SIZE,
    KIND_CHUNK,
    KIND_FOOTER,
    PREFIX_SIZE,
    TAG_BYTES,
    TRAILER_SIZE,
    Expected,
    Header,
    Trailer,
    chunk_ad,
    decode_prefix,
    derive_key,
    footer_ad,
    max_sealed_length,
    nonce,
)

__all__ = ["ChunkOpener", "ChunkedStreamReader"]

READ_SIZE = 1 << 20


class ChunkOpener:
    """Authenticates and decompresses the chunks and the footer of one archive; thread-safe."""

    def __init__(self, header: Header, key: BackupKey, expect: Expected, name: str) -> None:
        """Derive the archive's key from ``header``. Raises IntegrityError when its salt is not
        the one ``expect`` names."""
        if expect.salt is not None and expect.salt != header.salt:
            raise IntegrityError(f"{name} does not belong to its manifest (the archive's salt is not "
                                 "the manifest's nonce).")
        self.header = header
        self.name = name
        self._expect = expect
        self._key_id = key.id
        self._header_bytes = header.encode()
        self._subkey = derive_key(key.key, header.salt)
        self._aead = AESGCM(self._subkey)

    def check_length(self, index: int, sealed_length: int) -> None:
        """Raise IntegrityError for a sealed length no chunk of this archive can have."""
        if not TAG_BYTES < sealed_length <= max_sealed_length(self.header.chunk_size):
            raise IntegrityError(f"{self.name} chunk {index} has an impossible length "
                                 f"({sealed_length} bytes): the archive is damaged.")

    def open_chunk(self, index: int, last: bool, sealed: bytes, plain_length: int | None) -> bytes:
        """The tar bytes of chunk ``index``; ``plain_length`` None accepts any legal length.

        Raises IntegrityError when the tag does not verify (wrong key, wrong place, tampered)
        or the plaintext does not have the length the format requires.
        """
        try:
            frame = self._aead.decrypt(nonce(KIND_CHUNK, index), sealed,
                                       chunk_ad(self._header_bytes, index, last))
        except InvalidTag:
            raise IntegrityError(
                f"{self.name} chunk {index} failed authentication (AES-GCM tag): wrong key "
                f"'{self._key_id}', or chunks were tampered with, reordered, dropped or cut."
            ) from None
        size = self.header.chunk_size
        try:
            declared = zstandard.frame_content_size(frame)
            if declared > size:
                raise zstandard.ZstdError("frame larger than a chunk")
            plain = zstandard.ZstdDecompressor().decompress(frame, max_output_size=size)
        except zstandard.ZstdError:
            raise IntegrityError(f"{self.name} chunk {index} is not one zstd frame of at most "
                                 f"{size} bytes.") from None
        legal = (len(plain) == size if not last
                 else 0 < len(plain) <= size or (index == 0 and not plain))
        if not legal or (plain_length is not None and len(plain) != plain_length):
            raise IntegrityError(f"{self.name} chunk {index} holds {len(plain)} bytes, which its "
                                 "place in the archive does not allow.")
        return plain

    def open_footer(self, sealed: bytes, chunk_count: int, footer_offset: int) -> Footer:
        """Authenticate and parse the footer. Raises IntegrityError."""
        if len(sealed) < TAG_BYTES:
            raise IntegrityError(f"{self.name} footer is cut short.")
        tag = sealed[-TAG_BYTES:]
        dec = Cipher(algorithms.AES(self._subkey), modes.GCM(nonce(KIND_FOOTER, 0), tag)).decryptor()
        dec.authenticate_additional_data(footer_ad(self._header_bytes, chunk_count, footer_offset))
        try:
            compressed = dec.update(sealed[:-TAG_BYTES]) + dec.finalize()
        except InvalidTag:
            raise IntegrityError(
                f"{self.name} footer failed authentication (AES-GCM tag): wrong key "
                f"'{self._key_id}', or the footer or trailer was tampered with or swapped."
            ) from None
        if self._expect.footer_tag is not None and tag != self._expect.footer_tag:
            raise IntegrityError(f"{self.name} footer is not the one its manifest names (tag differs).")
        return parse_footer(compressed, chunk_count, self.header.chunk_size, self.name)


class ChunkedStreamReader:
    """Reads a format-2 object front to back from ``source`` (anything with ``read(n)``).

    Take the tar stream either chunk by chunk from :meth:`chunks` or file-like from
    :meth:`read`, not both. Each chunk is verified before it is handed out; after the last one
    the reader checks the footer and the trailer, and the object's size and SHA-256 against
    ``expect``. Call :meth:`verify` when the consumer is done: it reads what is left and raises
    the first IntegrityError met (also raised from ``chunks``/``read`` where it happened).
    """

    def __init__(self, source: BinaryIO, key: BackupKey, *, expect: Expected | None = None,
                 name: str = "Archive") -> None:
        self._src = source
        self._key = key
        self._expect = expect or Expected()
        self.name = name
        self._sha = hashlib.sha256()
        self.bytes_read = 0
        self._lengths: array[int] = array("Q")
        self._plain = 0
        self._error: BaseException | None = None
        self.footer: Footer | None = None
        self._gen = self._chunks()
        self._stream = ChunkReader(lambda: next(self._gen, None))

    def chunks(self) -> Iterator[bytes]:
        """The tar stream in verified pieces of one chunk each (empty chunks skipped)."""
        return self._gen

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes of the tar stream (verified); b"" at its end."""
        return self._stream.read(n)

    def verify(self) -> None:
        """Read what the consumer left and check the end. Raises IntegrityError."""
        for _ in self._gen:
            pass
        if self._error is not None:
            raise self._error
        if self.footer is None:  # pragma: no cover - the generator either ends checked or fails
            raise IntegrityError(f"{self.name} was not read to its end.")

    def _chunks(self) -> Iterator[bytes]:
        try:
            header = Header.decode(self._read(HEADER_SIZE, "its header"), self.name)
            opener = ChunkOpener(header, self._key, self._expect, self.name)
            index, last = 0, False
            while not last:
                where = f"the frame of chunk {index}" if index else "its first chunk"
                length, last = decode_prefix(self._read(PREFIX_SIZE, where, at_boundary=index > 0))
                opener.check_length(index, length)
                plain = opener.open_chunk(index, last, self._read(length, f"chunk {index}"), None)
                self._lengths.append(length)
                self._plain += len(plain)
                index += 1
                if plain:
                    yield plain
            self._end(opener, index)
        except BaseException as exc:
            self._error = exc
            raise

    def _read(self, n: int, what: str, at_boundary: bool = False) -> bytes:
        parts, left = [], n
        while left:
            data = self._src.read(min(left, READ_SIZE))
            if not data:
                if at_boundary and left == n:
                    raise IntegrityError(f"{self.name} is truncated: it ends between chunks, before its "
                                         "last chunk.")
                raise IntegrityError(f"{self.name} is truncated: it ends inside {what}.")
            self._take(data)
            parts.append(data)
            left -= len(data)
        return b"".join(parts)

    def _take(self, data: bytes) -> None:
        self.bytes_read += len(data)
        if self._expect.size is not None and self.bytes_read > self._expect.size:
            raise IntegrityError(CHECKSUM_MISMATCH)
        self._sha.update(data)

    def _rest(self) -> bytes:
        """Everything after the last chunk (to the manifest's size, or to the end)."""
        parts = []
        while data := self._src.read(READ_SIZE):
            self._take(data)
            parts.append(data)
        return b"".join(parts)

    def _end(self, opener: ChunkOpener, count: int) -> None:
        footer_offset = self.bytes_read
        rest = self._rest()
        expect = self._expect
        if ((expect.size is not None and self.bytes_read != expect.size)
                or (expect.sha256_hex is not None and self._sha.hexdigest() != expect.sha256_hex)):
            raise IntegrityError(CHECKSUM_MISMATCH)
        if len(rest) < TRAILER_SIZE + TAG_BYTES:
            raise IntegrityError(f"{self.name} is truncated: its footer or trailer is missing.")
        trailer = Trailer.decode(rest[-TRAILER_SIZE:], self.bytes_read, self.name)
        if (trailer.header != opener.header or trailer.footer_offset != footer_offset
                or trailer.chunk_count != count):
            raise IntegrityError(f"{self.name} trailer does not match the archive it ends (header, "
                                 "footer position or chunk count).")
        footer = opener.open_footer(rest[:-TRAILER_SIZE], count, footer_offset)
        if footer.sealed_lengths != self._lengths or footer.plain_size != self._plain:
            raise IntegrityError(f"{self.name} footer does not describe the chunks that were read.")
        self.footer = footer
