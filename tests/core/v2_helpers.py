"""Make format-2 objects from tar streams, and take them apart the way an attacker would."""

from __future__ import annotations

import io
import os
import struct
import tarfile
from collections.abc import Callable
from dataclasses import dataclass

from tako_backups.core.format_v2 import HEADER_SIZE, PREFIX_SIZE, TRAILER_SIZE, decode_prefix
from tako_backups.core.seal_v2 import ChunkedSeal, ChunkedSealer
from tako_backups.models import BackupKey


def make_tar(sizes: list[int], compressible: bool = False, prefix: str = "app/f",
             names: list[str] | None = None) -> bytes:
    """A PAX tar with ``app/`` and ``tako/`` and one file per size (random or repetitive data),
    named ``{prefix}{i}`` or from ``names``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for top in ("app", "tako"):
            info = tarfile.TarInfo(top)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for i, size in enumerate(sizes):
            data = (b"%d tako " % i) * (size // 7 + 1) if compressible else os.urandom(size)
            info = tarfile.TarInfo(names[i] if names else f"{prefix}{i}")
            info.size, info.mtime = size, 1_700_000_000 + i
            tar.addfile(info, io.BytesIO(data[:size]))
    return buf.getvalue()


def members_of(tar: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(tar), mode="r:") as t:
        return t.getmembers()


def seal(tar: bytes, key: BackupKey, chunk_size: int = 4096, piece: int = 7919,
         marks: bool = True) -> tuple[bytes, ChunkedSeal]:
    """Seal ``tar`` (written in pieces of ``piece`` bytes, members marked from tarfile)."""
    out = io.BytesIO()
    with ChunkedSealer(out, key, chunk_size=chunk_size) as sealer:
        if marks:
            for info in members_of(tar):
                sealer.tar_member(info, info.offset)
        for at in range(0, len(tar), piece):
            sealer.write(tar[at:at + piece])
        result = sealer.finish()
    return out.getvalue(), result


@dataclass(frozen=True)
class Parts:
    """An object cut at its record boundaries."""

    header: bytes
    records: list[bytes]  # prefix + sealed chunk each
    footer: bytes
    trailer: bytes

    def join(self, records: list[bytes] | None = None, footer: bytes | None = None,
             trailer: bytes | None = None) -> bytes:
        recs = self.records if records is None else records
        return (self.header + b"".join(recs) + (self.footer if footer is None else footer)
                + (self.trailer if trailer is None else trailer))

    def trailer_for(self, records: list[bytes], footer: bytes | None = None) -> bytes:
        """This trailer with the footer offset and length fixed up for other records/footer."""
        footer = self.footer if footer is None else footer
        head = self.trailer[:48]
        offset = HEADER_SIZE + sum(len(r) for r in records)
        return head + struct.pack(">QQQ", offset, len(footer), len(records)) + self.trailer[-8:]


def split(obj: bytes) -> Parts:
    at, records = HEADER_SIZE, []
    while True:
        length, last = decode_prefix(obj[at:at + PREFIX_SIZE])
        records.append(obj[at:at + PREFIX_SIZE + length])
        at += PREFIX_SIZE + length
        if last:
            break
    return Parts(obj[:HEADER_SIZE], records, obj[at:-TRAILER_SIZE], obj[-TRAILER_SIZE:])


def ranged(obj: bytes) -> Callable[[int, int], bytes]:
    """A read_range over ``obj`` that, like a server, returns what exists of the range."""
    return lambda offset, length: obj[offset:offset + length]
