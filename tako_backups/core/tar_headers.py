"""Tar headers read in bounded memory.

:mod:`tarfile` reads an extended header (PAX ``x``/``g``, GNU long name ``L``/long link ``K``)
whole into memory, however large its header says it is: a 4 GiB declared header in a small zstd
frame would take 4 GiB. :class:`BoundedTarInfo` peeks at each header block first and refuses an
extended header that would take the entry's headers past :data:`EXTENDED_LIMIT`, and bounds every
read the header parsing makes (sparse maps, chains of headers) with the reader's budget. Only
public :mod:`tarfile` API is used: ``TarFile(tarinfo=BoundedTarInfo)`` calls the documented
classmethod :meth:`~tarfile.TarInfo.fromtarfile` for each header, extended ones included.
"""

from __future__ import annotations

import tarfile
from collections.abc import Mapping
from typing import Any

from ..errors import UnsafeArchiveError
from .chunk_reader import ChunkReader
from .member_checks import REFUSE

__all__ = ["EXTENDED_LIMIT", "BoundedTarInfo", "open_tar"]

BLOCK = tarfile.BLOCKSIZE
EXTENDED_LIMIT = 1 << 20  # the extended headers (PAX, GNU long names) of one entry, in all
HEADER_BLOCKS = 64 * BLOCK  # the header blocks of one entry's chain (normally 1 to 4)
SPARSE_MAP_LIMIT = 4 << 20  # old GNU sparse extension blocks: about 170,000 data segments
GLOBAL_LIMIT = 1 << 20  # PAX global headers, which stay for the rest of the archive
EXTENDED_TYPES = frozenset({b"x", b"g", b"X", b"L", b"K"})
SPARSE_TYPE = b"S"
_TYPE = slice(156, 157)


class BoundedTarInfo(tarfile.TarInfo):
    """A :class:`tarfile.TarInfo` whose reading refuses headers over the limits above with
    UnsafeArchiveError. The archive must be read from a :class:`ChunkReader`."""

    @classmethod
    def fromtarfile(cls, tar: tarfile.TarFile) -> Any:
        reader = tar.fileobj
        if not isinstance(reader, ChunkReader):
            raise TypeError("BoundedTarInfo reads archives from a ChunkReader only")
        start = reader.tell()
        with reader.read_budget(EXTENDED_LIMIT + HEADER_BLOCKS, lambda: _too_long(start)):
            _check_next_header(reader, tar)
            try:
                member = super().fromtarfile(tar)
            except IndexError:  # tarfile indexes a sparse extension block cut short
                raise tarfile.ReadError("unexpected end of data") from None
        if tar.pax_headers and _size(tar.pax_headers) > GLOBAL_LIMIT:
            raise UnsafeArchiveError(
                f"The archive's global PAX headers (at byte {start}) take more than 1 MiB{REFUSE}")
        return member


def open_tar(reader: ChunkReader) -> tarfile.TarFile:
    """A :class:`tarfile.TarFile` reading ``reader`` with :class:`BoundedTarInfo` headers.

    Raises tarfile.TarError for a stream that is not tar, UnsafeArchiveError for a first header
    over the limits.
    """
    return tarfile.TarFile(fileobj=reader, mode="r", tarinfo=BoundedTarInfo)  # type: ignore[arg-type]


def _check_next_header(reader: ChunkReader, tar: tarfile.TarFile) -> None:
    """Refuse the header block ahead when it declares more than 1 MiB of extended data, or more
    than the entry's earlier extended headers left of the budget."""
    block = reader.peek(BLOCK)
    kind = block[_TYPE]
    if kind == SPARSE_TYPE:
        reader.extend_budget(SPARSE_MAP_LIMIT)
        return
    if kind not in EXTENDED_TYPES:
        return
    try:
        size = tarfile.TarInfo.frombuf(block, tar.encoding, tar.errors).size
    except tarfile.HeaderError:
        return  # fromtarfile raises the right error for a bad block
    left = reader.budget_left
    assert left is not None
    if size > EXTENDED_LIMIT or BLOCK + size + (-size % BLOCK) > left - BLOCK:
        raise UnsafeArchiveError(
            f"The archive header at byte {reader.tell()} declares {size} bytes of extended header "
            f"data (PAX or GNU long name); an entry may have at most 1 MiB{REFUSE}")


def _too_long(start: int) -> UnsafeArchiveError:
    return UnsafeArchiveError(
        f"The headers of the archive entry at byte {start} (PAX, GNU long names or sparse map) "
        f"are larger than an entry may have{REFUSE}")


def _size(headers: Mapping[str, str]) -> int:
    return sum(len(k) + len(v) for k, v in headers.items())
