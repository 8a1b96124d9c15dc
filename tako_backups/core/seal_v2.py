"""Write a format-2 object: the tar stream cut into chunks, each one zstd frame sealed alone.

:class:`ChunkedSealer` is a sink for the *uncompressed* tar stream. The caller also reports
where each member's header starts (:meth:`ChunkedSealer.member`), which becomes the footer's
member table. While the caller fills the next chunk, full chunks are compressed (one zstd
frame each) on a pool of helper threads, one per core, each with its own single-threaded zstd
context and a whole chunk to itself, and sealed in order (AES-256-GCM under the archive's
HKDF-derived key), hashed (SHA-256 of the whole object) and written to the sink on one more,
so hashing overlaps compression as in format 1. (zstd's own worker threads split a chunk into
jobs and wait for the last one at every chunk's end: 16 % slower on 2 cores, bench/.) At most
one chunk buffer more than there are compressing threads, and one compressed frame per thread,
exist at a time, so memory does not grow with the archive; the footer's member table grows by
some compressed bytes per member (17 on the benchmark tree).
"""

from __future__ import annotations

import base64
import hashlib
import os
import tarfile
import threading
from array import array
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..models import BackupKey, EncryptionInfo
from .archive import ZSTD_IN_CALLER, ZSTD_LEVEL, compressor
from .crypto import Sealed, Sink
from .footer_v2 import FooterWriter
from .format_v2 import (
    ALGORITHM_V2,
    DEFAULT_CHUNK_SIZE,
    FORMAT_V2,
    KIND_CHUNK,
    KIND_FOOTER,
    MAX_CHUNK_SIZE,
    MIN_CHUNK_SIZE,
    SALT_BYTES,
    Header,
    Trailer,
    chunk_ad,
    derive_key,
    encode_prefix,
    footer_ad,
    nonce,
)

__all__ = ["ChunkedSeal", "ChunkedSealer"]

FOOTER_PIECE = 1 << 20
MAX_COMPRESSORS = 4
"""Chunks compressed at once, at most (each holds a chunk, its frame and a zstd context)."""


def compressing_threads() -> int:
    """One per core this process may run on (all cores where the system cannot say, as on
    macOS), at most :data:`MAX_COMPRESSORS`."""
    affinity = getattr(os, "sched_getaffinity", None)
    cores = len(affinity(0)) if affinity is not None else (os.cpu_count() or 1)
    return max(1, min(MAX_COMPRESSORS, cores))


@dataclass(frozen=True)
class ChunkedSeal:
    """What writing a format-2 object learned, for its manifest.

    ``sealed`` holds Tako's manifest fields: algorithm :data:`ALGORITHM_V2`, the key id, the
    salt as ``nonce_base64``, the footer's tag as ``tag_base64``, the object's size and SHA-256.
    :meth:`extras` holds the rest, for the manifest's ``extras``.
    """

    sealed: Sealed
    chunk_size: int
    chunk_count: int
    footer_offset: int
    footer_length: int
    plain_size: int
    members: int

    def extras(self) -> dict[str, int]:
        """``format``, ``chunk_size``, ``chunk_count``, ``footer_offset``, ``footer_length``."""
        return {"format": FORMAT_V2, "chunk_size": self.chunk_size, "chunk_count": self.chunk_count,
                "footer_offset": self.footer_offset, "footer_length": self.footer_length}


class ChunkedSealer:
    """A sink: uncompressed tar bytes in, a sealed format-2 object out to ``sink``.

    Use as a context manager (leaving it stops the helper threads) and call :meth:`finish`
    inside it. ``write`` and ``finish`` raise whatever ``sink.write`` raised on a helper
    thread (StorageError, OSError).
    """

    def __init__(self, sink: Sink, key: BackupKey, *, chunk_size: int = DEFAULT_CHUNK_SIZE,
                 level: int = ZSTD_LEVEL) -> None:
        if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"Chunk size {chunk_size} is outside {MIN_CHUNK_SIZE}..{MAX_CHUNK_SIZE}.")
        self._sink = sink
        self._key_id = key.id
        salt = os.urandom(SALT_BYTES)
        self._header = Header(salt, chunk_size)
        self._header_bytes = self._header.encode()
        self._subkey = derive_key(key.key, salt)
        self._aead = AESGCM(self._subkey)
        self._chunk_size = chunk_size
        threads = compressing_threads()
        self._depth = threads  # chunks being compressed or sealed while the next one fills
        self._level = level
        self._contexts = threading.local()  # one zstd context per compressing thread
        self._footer = FooterWriter()
        self._lengths: array[int] = array("Q")
        self._sha = hashlib.sha256()
        self._size = 0
        self._plain = 0
        self._index = 0
        self._buf = bytearray(chunk_size)
        self._fill = 0
        self._zstd_pool = ThreadPoolExecutor(threads, thread_name_prefix="tako-zstd-v2")
        self._seal_pool = ThreadPoolExecutor(1, thread_name_prefix="tako-seal-v2")
        self._jobs: deque[Future[bytearray]] = deque()
        self._done = False

    def write(self, data: bytes | memoryview) -> int:
        """Take the next tar bytes; returns their length."""
        view = memoryview(data).cast("B")
        pos, total = 0, len(view)
        while pos < total:
            if self._fill == self._chunk_size:
                self._submit(last=False)
            n = min(total - pos, self._chunk_size - self._fill)
            self._buf[self._fill:self._fill + n] = view[pos:pos + n]
            self._fill += n
            pos += n
        self._plain += total
        return total

    def member(self, name: str, *, offset: int, kind: str, size: int, mtime: float) -> None:
        """Record a member whose first header block starts at tar offset ``offset``.

        Call in tar order, before or after its bytes were written. Raises ValueError when
        offsets do not increase.
        """
        self._footer.member(name, kind, size, mtime, offset)

    def tar_member(self, info: tarfile.TarInfo, offset: int) -> None:
        """:meth:`member` from a TarInfo about to be written at tar offset ``offset``."""
        self.member(info.name, offset=offset, kind=info.type.decode("ascii"), size=info.size,
                    mtime=info.mtime)

    def finish(self) -> ChunkedSeal:
        """Seal the last chunk, then write the footer and the trailer.

        Raises ValueError when a recorded member starts past the end of the tar stream, and
        what ``sink.write`` raised.
        """
        self._submit(last=True)
        while self._jobs:
            self._jobs.popleft().result()
        self._zstd_pool.shutdown(wait=True)
        self._seal_pool.shutdown(wait=True)
        self._done = True
        pieces = self._footer.finish(self._lengths, self._plain)
        footer_offset = self._size
        count = len(self._lengths)
        enc = Cipher(algorithms.AES(self._subkey), modes.GCM(nonce(KIND_FOOTER, 0))).encryptor()
        enc.authenticate_additional_data(footer_ad(self._header_bytes, count, footer_offset))
        for piece in pieces:
            for at in range(0, len(piece), FOOTER_PIECE):
                self._emit(enc.update(piece[at:at + FOOTER_PIECE]))
        self._emit(enc.finalize())
        tag = enc.tag
        self._emit(tag)
        footer_length = self._size - footer_offset
        self._emit(Trailer(self._header, footer_offset, footer_length, count).encode())
        info = EncryptionInfo(key_id=self._key_id, nonce_base64=base64.b64encode(self._header.salt).decode(),
                              tag_base64=base64.b64encode(tag).decode(), algorithm=ALGORITHM_V2)
        sealed = Sealed(info, self._size, self._sha.hexdigest())
        return ChunkedSeal(sealed, self._chunk_size, count, footer_offset, footer_length,
                           self._plain, self._footer.members)

    def close(self) -> None:
        """Stop the helper threads, dropping chunks not yet sealed. Never raises."""
        if not self._done:
            self._done = True
            self._zstd_pool.shutdown(wait=True, cancel_futures=True)
            self._seal_pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> ChunkedSealer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _submit(self, last: bool) -> None:
        """Hand the current buffer to the helper threads and take a free one."""
        frame = self._zstd_pool.submit(self._compress, self._buf, self._fill)
        job = self._seal_pool.submit(self._seal, frame, self._buf, self._index, last)
        self._jobs.append(job)
        self._index += 1
        if last:
            return
        if len(self._jobs) > self._depth:
            self._buf = self._jobs.popleft().result()
        else:
            self._buf = bytearray(self._chunk_size)
        self._fill = 0

    def _compress(self, buf: bytearray, length: int) -> bytes:
        """One zstd frame of the chunk (on a compressing thread, with that thread's context)."""
        zstd = getattr(self._contexts, "zstd", None)
        if zstd is None:
            zstd = self._contexts.zstd = compressor(self._level, ZSTD_IN_CALLER)
        return zstd.compress(memoryview(buf)[:length])

    def _seal(self, frame_job: Future[bytes], buf: bytearray, index: int, last: bool) -> bytearray:
        """Seal, hash and write chunk ``index`` once compressed (on the sealing thread); returns
        its buffer for reuse."""
        frame = frame_job.result()
        ad = chunk_ad(self._header_bytes, index, last)
        sealed = self._aead.encrypt(nonce(KIND_CHUNK, index), frame, ad)
        if index == 0:
            self._emit(self._header_bytes)
        self._emit(encode_prefix(len(sealed), last))
        self._emit(sealed)
        self._lengths.append(len(sealed))
        return buf

    def _emit(self, data: bytes) -> None:
        self._sha.update(data)
        self._size += len(data)
        self._sink.write(data)
