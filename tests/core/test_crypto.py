from __future__ import annotations

import base64
import hashlib
import io
import os

import pytest
from Crypto.Cipher import AES

from tako_backups.core.crypto import CHECKSUM_MISMATCH, DecryptingReader, EncryptingWriter
from tako_backups.errors import IntegrityError
from tako_backups.models import BackupKey
from tako_backups.storage.memory import MemoryStore

from .archive_helpers import store_plaintext


def _encrypt(key: BackupKey, data: bytes, chunk: int = 7919) -> tuple[bytes, object]:
    out = io.BytesIO()
    enc = EncryptingWriter(out, key)
    for i in range(0, len(data), chunk):
        enc.write(data[i:i + chunk])
    return out.getvalue(), enc.finish()


def test_stream_matches_an_independent_aes_gcm(key: BackupKey) -> None:
    data = os.urandom(200_000)
    ct, sealed = _encrypt(key, data)
    nonce = base64.b64decode(sealed.encryption.nonce_base64)
    tag = base64.b64decode(sealed.encryption.tag_base64)
    assert len(nonce) == 12 and len(tag) == 16 and len(ct) == len(data)
    assert sealed.size_bytes == len(ct)
    assert sealed.sha256_hex == hashlib.sha256(ct).hexdigest()
    peer = AES.new(key.key, AES.MODE_GCM, nonce=nonce)
    assert peer.decrypt_and_verify(ct, tag) == data
    assert sealed.encryption.key_id == key.id and sealed.encryption.algorithm == "aes-256-gcm"


def test_each_backup_gets_a_fresh_nonce(key: BackupKey) -> None:
    _, a = _encrypt(key, b"same")
    _, b = _encrypt(key, b"same")
    assert a.encryption.nonce_base64 != b.encryption.nonce_base64


def test_decrypting_reader_round_trip_and_verify(key: BackupKey) -> None:
    store = MemoryStore()
    info = store_plaintext(store, b"hello" * 1000, key, compress=False)
    reader = DecryptingReader(store.open_read(info.archive_key), info, key)
    out = b"".join(iter(lambda: reader.read(333), b""))
    reader.verify()
    assert out == b"hello" * 1000


def test_flipped_byte_fails_checksum(key: BackupKey) -> None:
    store = MemoryStore()
    info = store_plaintext(store, b"hello" * 1000, key, compress=False)
    data = bytearray(store.objects[info.archive_key])
    data[10] ^= 1
    reader = DecryptingReader(io.BytesIO(bytes(data)), info, key)
    with pytest.raises(IntegrityError, match=CHECKSUM_MISMATCH):
        reader.verify()


def test_wrong_key_fails_the_tag(key: BackupKey, other_key: BackupKey) -> None:
    store = MemoryStore()
    info = store_plaintext(store, b"hello" * 1000, key, compress=False)
    wrong = BackupKey(key.id, other_key.key)
    reader = DecryptingReader(store.open_read(info.archive_key), info, wrong)
    with pytest.raises(IntegrityError, match="failed authentication"):
        reader.verify()


def test_longer_object_is_stopped_early(key: BackupKey) -> None:
    store = MemoryStore()
    info = store_plaintext(store, b"abc" * 100, key, compress=False)
    reader = DecryptingReader(io.BytesIO(store.objects[info.archive_key] + b"extra"), info, key)
    with pytest.raises(IntegrityError, match=CHECKSUM_MISMATCH):
        reader.verify()
