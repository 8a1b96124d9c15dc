"""Hostile archives made by hand: tar members an attacker would write, and zstd "bombs" built
straight from RLE blocks (a few hundred KB that decompress to gigabytes, made in milliseconds)."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterable
from typing import Union

from tako_backups.models import BackupInfo, BackupKey
from tako_backups.storage.memory import MemoryStore
from tests.core.archive_helpers import store_plaintext

BLOCK = 1 << 17  # the largest zstd block
Part = Union[bytes, tuple[int, int]]  # noqa: UP007 - raw bytes, or (byte value, count) repeated


def zstd_frame(parts: Iterable[Part], window_log: int = 17) -> bytes:
    """One zstd frame (no checksum, a window of ``2**window_log`` bytes: 128 KiB unless told) of
    raw and RLE blocks, in order."""
    blocks: list[bytes] = []
    for part in parts:
        if isinstance(part, bytes):
            for i in range(0, len(part), BLOCK):
                chunk = part[i:i + BLOCK]
                blocks.append((len(chunk) << 3).to_bytes(3, "little") + chunk)
        else:
            value, count = part
            while count > 0:
                n = min(count, BLOCK)
                blocks.append(((n << 3) | (1 << 1)).to_bytes(3, "little") + bytes([value]))
                count -= n
    if not blocks:
        blocks.append((0).to_bytes(3, "little"))
    last = bytearray(blocks[-1])
    last[0] |= 1
    blocks[-1] = bytes(last)
    return b"\x28\xb5\x2f\xfd" + bytes([0x00, (window_log - 10) << 3]) + b"".join(blocks)


def header(name: str, size: int = 0, kind: bytes = tarfile.REGTYPE, **attrs: object) -> bytes:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.mode = kind, size, 0o644 if kind == tarfile.REGTYPE else 0o755
    for k, v in attrs.items():
        setattr(info, k, v)
    return info.tobuf(format=tarfile.PAX_FORMAT)


def zero_member(name: str, size: int) -> list[Part]:
    """A regular member of ``size`` zero bytes, padded to the tar block."""
    return [header(name, size), (0, size + (-size % 512))]


def bomb(members: Iterable[tuple[str, int]], *, truncate_at: int | None = None) -> bytes:
    """A Tako-shaped archive (app/, tako/, then ``members`` of zeros) as one zstd frame.

    ``truncate_at``: end the plaintext after that many bytes of the first member's data (a header
    that claims more than the stream holds).
    """
    parts: list[Part] = [header("app", kind=tarfile.DIRTYPE), header("tako", kind=tarfile.DIRTYPE)]
    for name, size in members:
        if truncate_at is not None:
            parts += [header(name, size), (0x61, truncate_at)]
            return zstd_frame(parts)
        parts += zero_member(name, size)
    parts.append((0, 1024))
    return zstd_frame(parts)


def member(tar: tarfile.TarFile, name: str, data: bytes = b"x", kind: bytes = tarfile.REGTYPE,
           linkname: str = "", pax: dict[str, str] | None = None, **attrs: object) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    info.mode = 0o644
    if pax:
        info.pax_headers = pax
    for k, v in attrs.items():
        setattr(info, k, v)
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def store_archive(store: MemoryStore, compressed: bytes, key: BackupKey, *, server: str = "la",
                  backup_id: str = "b1710000000-HoStIlE1") -> BackupInfo:
    """Encrypt an already compressed archive, store it with its manifest and an index entry for
    app ``demo/production`` on ``server``."""
    return store_plaintext(store, compressed, key, compress=False, backup_id=backup_id, server=server)
