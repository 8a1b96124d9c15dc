"""Archives built the way Tako's server builds them with the Rust ``tar`` crate (0.4.46,
``Builder::new``, ``follow_symlinks(false)``): GNU headers, ``././@LongLink`` records (type ``L``
for names, ``K`` for link targets) over 100 bytes, the full ``st_mode`` with its file-type bits in
the mode field, numeric owners without user/group names, symlinks stored as they are (absolute
targets too), old-GNU sparse entries (type ``S``) for files with holes, two zero blocks at the end,
one zstd frame at level 3, and a compact JSON manifest and index."""

from __future__ import annotations

import json
import stat
import tarfile
from dataclasses import dataclass, field

import zstandard

from tako_backups.core import layout
from tako_backups.models import BackupInfo, BackupKey
from tako_backups.storage.memory import MemoryStore
from tests.core.archive_helpers import store_plaintext

BLOCK = 512
UID, GID, MTIME = 1001, 1001, 1_717_000_000


def _fix_checksum(block: bytearray) -> None:
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)


def _with_st_mode(header: bytes, st_mode: int) -> bytes:
    """``header`` (one or more blocks, the member's own last) with the tar crate's mode field:
    the full ``st_mode`` in octal, file-type bits included."""
    last = bytearray(header[-BLOCK:])
    last[100:108] = b"%07o\0" % st_mode
    _fix_checksum(last)
    return header[:-BLOCK] + bytes(last)


def gnu_entry(name: str, kind: bytes, st_mode: int, data: bytes = b"", linkname: str = "") -> bytes:
    """One member as the tar crate writes it: header (with long-name records) and padded data."""
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, linkname, len(data)
    info.uid, info.gid, info.mtime, info.uname, info.gname = UID, GID, MTIME, "", ""
    header = _with_st_mode(info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape"), st_mode)
    return header + data + bytes(-len(data) % BLOCK)


def sparse_entry(name: str, segments: list[tuple[int, bytes]], real_size: int, st_mode: int) -> bytes:
    """An old-GNU sparse member (type ``S``): the data segments' map in the header (4 slots) and
    extension blocks (21 slots each), then the segments' bytes back to back."""
    data = b"".join(chunk for _, chunk in segments)
    info = tarfile.TarInfo(name)
    info.type, info.size = tarfile.GNUTYPE_SPARSE, len(data)
    info.uid, info.gid, info.mtime, info.uname, info.gname = UID, GID, MTIME, "", ""
    header = bytearray(info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")[-BLOCK:])
    slots = [b"%011o\0%011o\0" % (offset, len(chunk)) for offset, chunk in segments]
    header[386:386 + 24 * min(4, len(slots))] = b"".join(slots[:4])
    header[482] = 1 if len(slots) > 4 else 0
    header[483:495] = b"%011o\0" % real_size
    header = bytearray(_with_st_mode(bytes(header), st_mode))
    blocks = [bytes(header)]
    rest = slots[4:]
    while rest:
        ext = bytearray(BLOCK)
        ext[0:24 * min(21, len(rest))] = b"".join(rest[:21])
        rest = rest[21:]
        ext[504] = 1 if rest else 0
        blocks.append(bytes(ext))
    return b"".join(blocks) + data + bytes(-len(data) % BLOCK)


@dataclass
class TakoTar:
    """A tar stream assembled entry by entry; :meth:`finish` adds the two zero blocks."""

    parts: list[bytes] = field(default_factory=list)

    def folder(self, name: str, mode: int = 0o755) -> TakoTar:
        self.parts.append(gnu_entry(name, tarfile.DIRTYPE, stat.S_IFDIR | mode))
        return self

    def file(self, name: str, data: bytes, mode: int = 0o644) -> TakoTar:
        self.parts.append(gnu_entry(name, tarfile.REGTYPE, stat.S_IFREG | mode, data))
        return self

    def symlink(self, name: str, target: str) -> TakoTar:
        self.parts.append(gnu_entry(name, tarfile.SYMTYPE, stat.S_IFLNK | 0o777, linkname=target))
        return self

    def sparse(self, name: str, segments: list[tuple[int, bytes]], real_size: int,
               mode: int = 0o644) -> TakoTar:
        self.parts.append(sparse_entry(name, segments, real_size, stat.S_IFREG | mode))
        return self

    def finish(self) -> bytes:
        return b"".join(self.parts) + bytes(2 * BLOCK)


def compact(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def store_tako_backup(store: MemoryStore, tar: bytes, key: BackupKey, *, server: str = "la",
                      backup_id: str = "b1717000000-TaKoRs01") -> BackupInfo:
    """Compress ``tar`` as one level-3 zstd frame (no content size, as a streaming encoder writes
    it), encrypt and store it with Tako's compact manifest and index for ``demo/production``."""
    frame = zstandard.ZstdCompressor(level=3, write_content_size=False).compress(tar)
    info = store_plaintext(store, frame, key, compress=False, backup_id=backup_id, server=server)
    prefix = layout.backup_prefix("demo", "production", server)
    store.put_bytes(info.manifest_key, compact(info.to_dict()))
    store.put_bytes(layout.index_key(prefix), compact({"version": 1, "backups": [info.to_dict()]}))
    return info
