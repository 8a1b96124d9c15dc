"""One AES-256-GCM stream over the compressed archive, with SHA-256 of the ciphertext.

The object on the bucket is the raw ciphertext (same length as the plaintext); the 16-byte tag
and the nonce live in the manifest. Decrypted bytes are not trustworthy until
:meth:`DecryptingReader.verify` has checked size, SHA-256 and the tag.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ..errors import IntegrityError
from ..models import BackupInfo, BackupKey, EncryptionInfo
from ..primitives.streams import Sink

NONCE_BYTES = 12
CHECKSUM_MISMATCH = "Downloaded backup checksum did not match manifest."


@dataclass(frozen=True)
class Sealed:
    """What the encryption pass learned: the manifest's crypto fields, size and digest."""

    encryption: EncryptionInfo
    size_bytes: int
    sha256_hex: str


class EncryptingWriter:
    """A file-like sink: plaintext in, ciphertext out to ``sink``, hashed and counted."""

    def __init__(self, sink: Sink, key: BackupKey, nonce: bytes | None = None) -> None:
        self._sink = sink
        self._key_id = key.id
        self._nonce = os.urandom(NONCE_BYTES) if nonce is None else nonce
        self._enc = Cipher(algorithms.AES(key.key), modes.GCM(self._nonce)).encryptor()
        self._sha = hashlib.sha256()
        self._size = 0

    def write(self, data: bytes | memoryview) -> int:
        if not data:
            return 0
        out = self._enc.update(data)
        self._sha.update(out)
        self._size += len(out)
        self._sink.write(out)
        return len(data)

    def flush(self) -> None:
        pass

    def finish(self) -> Sealed:
        """End the stream; returns the tag, nonce, size and SHA-256 of the ciphertext."""
        tail = self._enc.finalize()
        if tail:
            self._sha.update(tail)
            self._size += len(tail)
            self._sink.write(tail)
        info = EncryptionInfo(
            key_id=self._key_id,
            nonce_base64=base64.b64encode(self._nonce).decode(),
            tag_base64=base64.b64encode(self._enc.tag).decode(),
        )
        return Sealed(info, self._size, self._sha.hexdigest())


class DecryptingReader:
    """A file-like source: reads ciphertext from ``source``, returns plaintext.

    Counts and hashes the ciphertext as it passes. Call :meth:`verify` after reading to EOF;
    it raises IntegrityError when the size, SHA-256 or the GCM tag do not match the manifest.
    """

    def __init__(self, source: BinaryIO, info: BackupInfo, key: BackupKey) -> None:
        self._src = source
        self._info = info
        try:
            nonce = base64.b64decode(info.encryption.nonce_base64, validate=True)
            self._tag = base64.b64decode(info.encryption.tag_base64, validate=True)
        except ValueError:
            raise IntegrityError(f"Backup {info.id} manifest has a malformed nonce or tag.") from None
        if len(nonce) != NONCE_BYTES or len(self._tag) != 16:
            raise IntegrityError(f"Backup {info.id} manifest has a malformed nonce or tag.")
        self._dec = Cipher(algorithms.AES(key.key), modes.GCM(nonce)).decryptor()
        self._sha = hashlib.sha256()
        self._size = 0
        self._eof = False

    @property
    def bytes_read(self) -> int:
        """Ciphertext bytes read from the source so far."""
        return self._size

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if self._eof:
            return b""
        data = self._src.read(n if n and n > 0 else 1 << 20)
        if not data:
            self._eof = True
            return b""
        self._size += len(data)
        if self._size > self._info.size_bytes:
            raise IntegrityError(CHECKSUM_MISMATCH)
        self._sha.update(data)
        return self._dec.update(data)

    def drain(self) -> None:
        """Read (and discard) whatever the consumer left, so every byte is hashed."""
        while self.read(1 << 20):
            pass

    def verify(self) -> None:
        """Check size and SHA-256 against the manifest, then the GCM tag."""
        self.drain()
        if self._size != self._info.size_bytes or self._sha.hexdigest() != self._info.sha256_hex:
            raise IntegrityError(CHECKSUM_MISMATCH)
        try:
            self._dec.finalize_with_tag(self._tag)
        except InvalidTag:
            raise IntegrityError(
                f"Backup {self._info.id} failed authentication (AES-GCM tag): wrong key "
                f"'{self._info.encryption.key_id}' or tampered data."
            ) from None
