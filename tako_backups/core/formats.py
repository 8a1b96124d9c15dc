"""The one home of the archive-format choice: which format a backup is written in, how each is
written, and how any archive a manifest names is opened as its verified tar stream.

Format 1 is Tako's (one AES-256-GCM stream over one zstd frame, :mod:`.crypto`); format 2 is ours
(chunked, seekable, docs/FORMAT-V2.md: :mod:`.seal_v2`, :mod:`.unseal_v2`). The manifest's
``encryption.algorithm`` says which one an archive is; every command that reads an archive
(restore, preview, download + verify, drill, extract, reencrypt) goes through
:func:`open_tar_stream` or :func:`reseal`, so both formats are read everywhere and an unknown
algorithm is refused the same way everywhere.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO, Protocol, cast

import zstandard

from ..errors import FormatError
from ..models import ALGORITHM, ALGORITHM_V2, BackupInfo, BackupKey
from ..primitives.streams import Piece, Sink
from ..progress import NO_PROGRESS, Progress
from . import format_v2
from .archive import ZSTD_THREADS, ArchiveStats, write_archive
from .crypto import DecryptingReader, EncryptingWriter, Sealed
from .format_v2 import CeilingGuard, Expected
from .member_checks import TOP_LEVEL
from .pipes import ThreadedWriter
from .seal_v2 import ChunkedSeal, ChunkedSealer
from .unseal_v2 import ChunkedStreamReader

__all__ = ["FormatPlan", "Resealed", "TarStream", "measure_tree", "open_tar_stream", "plan_format",
           "reseal", "unsupported", "write_v1", "write_v2"]

CHUNK = 1 << 20
QUEUE_DEPTH = 2  # chunks of 1 MiB between two threads: deeper queues bought no speed (issue 14)
MAX_WINDOW = 128 << 20  # zstd frames needing a larger window are refused (Tako writes 2 MiB)


def is_format_2(info: BackupInfo) -> bool:
    """Whether the manifest ``info`` names a format-2 (chunked, seekable) archive: the one test
    of the format that every reader uses."""
    return info.encryption.algorithm == ALGORITHM_V2


def unsupported(info: BackupInfo) -> FormatError:
    """Tako's refusal of an archive whose algorithm it does not know."""
    return FormatError(f"Unsupported backup encryption algorithm: {info.encryption.algorithm}")


# ----- writing -----

@dataclass(frozen=True)
class FormatPlan:
    """The format a backup starts in, the archive-size bound it was chosen from (also the
    upload's size estimate) and the format-1 ceiling in force."""

    format: int
    bound: int
    ceiling: int


def measure_tree(data_root: Path) -> tuple[int, int]:
    """(bytes, entries) under ``data_root``'s ``app/`` and ``tako/``: an upper bound of what a
    backup archives, from one walk that only lists folders (no file is opened, no link followed).

    Every entry counts (also ``-wal``/``-shm`` files, which the archive leaves out but whose
    pages a SQLite snapshot may hold), so the figures never fall short of the archive's.
    Entries that vanish meanwhile are skipped.
    """
    data, members = 0, 0
    folders = [str(data_root / top) for top in TOP_LEVEL if _is_real_dir(data_root / top)]
    while folders:
        try:
            with os.scandir(folders.pop()) as listing:
                entries = list(listing)
        except OSError:
            continue
        members += 1
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                folders.append(entry.path)
            else:
                members += 1
                if stat.S_ISREG(st.st_mode):
                    data += st.st_size
    return data, members


def _is_real_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def plan_format(data_root: Path, requested: int | None = None) -> FormatPlan:
    """Format 1 unless ``requested`` is 2 or the data could pass format 1's ceiling (see
    :func:`.format_v2.choose_format`). The ceiling is read here and only here, from
    ``format_v2.V1_CEILING`` (tests lower it to send small data down the format-2 path)."""
    ceiling = format_v2.V1_CEILING
    data, members = measure_tree(data_root)
    chosen = format_v2.choose_format(data, members, requested, ceiling)
    return FormatPlan(chosen, format_v2.archive_size_bound(data, members), ceiling)


def write_v1(data_root: Path, sink: Sink, scratch: Path, key: BackupKey,
             progress: Progress = NO_PROGRESS, *, ceiling: int | None = None,
             zstd_workers: int = ZSTD_THREADS) -> tuple[ArchiveStats, Sealed]:
    """Archive ``data_root`` (tar + zstd), encrypt and hash it into ``sink`` (format 1).

    Reading files and tar run on this thread, zstd on its own ``zstd_workers`` (see
    :func:`.archive.compressor`), and AES-GCM + SHA-256 +
    ``sink.write`` on one more thread, joined by a queue of at most 4 chunks of 1 MiB. With
    ``ceiling``, raises V1CeilingReached before the archive would pass it. Raises SnapshotError,
    OSError, or what ``sink.write`` raises (StorageError).
    """
    enc = EncryptingWriter(sink, key)
    inner: Sink = enc if ceiling is None else CeilingGuard(enc, ceiling)
    with ThreadedWriter(inner, depth=QUEUE_DEPTH, name="tako-seal") as sealer:
        stats = write_archive(data_root, sealer, scratch, progress, zstd_workers=zstd_workers)
    return stats, enc.finish()


def write_v2(data_root: Path, sink: Sink, scratch: Path, key: BackupKey,
             progress: Progress = NO_PROGRESS) -> tuple[ArchiveStats, ChunkedSeal]:
    """Archive ``data_root`` as a format-2 object into ``sink``: the tar stream (this thread)
    is cut into chunks (``format_v2.DEFAULT_CHUNK_SIZE``, read at each call: tests lower it)
    compressed and sealed on the sealer's threads. Raises what :func:`write_v1` raises (never
    V1CeilingReached)."""
    with ChunkedSealer(sink, key, chunk_size=format_v2.DEFAULT_CHUNK_SIZE) as sealer:
        stats = write_archive(data_root, sealer, scratch, progress, members=sealer.tar_member)
        return stats, sealer.finish()


# ----- reading -----

class TarStream(Protocol):
    """An archive being read: its tar bytes in pieces, and the check of the whole.

    ``chunks`` yields the tar stream; ``bytes_read`` counts the object's bytes read so far;
    ``verify`` reads what is left and raises IntegrityError unless the size, SHA-256 and every
    tag match the manifest. Format 1 hands out tar bytes before its tag is checked (at the end),
    format 2 only after each chunk's tag verified: in both cases nothing may be trusted (moved
    into place) before ``verify`` returned.
    """

    @property
    def bytes_read(self) -> int: ...

    def chunks(self) -> Iterator[Piece]: ...

    def verify(self) -> None: ...


class _V1Stream:
    def __init__(self, source: BinaryIO, info: BackupInfo, key: BackupKey) -> None:
        self._reader = DecryptingReader(source, info, key)
        self._id = info.id
        self._verdict: BaseException | bool = False  # True once verified, else the error met

    @property
    def bytes_read(self) -> int:
        return self._reader.bytes_read

    def chunks(self) -> Iterator[bytes]:
        dctx = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW)
        try:
            with dctx.stream_reader(cast(IO[bytes], self._reader), read_size=CHUNK, closefd=False) as plain:
                while chunk := plain.read(CHUNK):
                    yield chunk
        except zstandard.ZstdError:
            self.verify()  # tampering is named as such, before "not zstd"
            raise FormatError(f"Backup {self._id} is not a valid zstd stream.") from None

    def verify(self) -> None:
        """The reader's check, once: a second call repeats its outcome."""
        if isinstance(self._verdict, BaseException):
            raise self._verdict
        if not self._verdict:
            try:
                self._reader.verify()
            except BaseException as exc:
                self._verdict = exc
                raise
            self._verdict = True


class _V2Stream:
    def __init__(self, source: BinaryIO, info: BackupInfo, key: BackupKey) -> None:
        self.reader = ChunkedStreamReader(source, key, expect=Expected.from_manifest(info),
                                          name=f"Backup {info.id}")

    @property
    def bytes_read(self) -> int:
        return self.reader.bytes_read

    def chunks(self) -> Iterator[Piece]:
        """The verified chunks in pieces of at most :data:`CHUNK` (views of the chunk): a queue of
        pieces then holds part of one chunk, not whole chunks of 4 MiB (6 MB less at a restore's
        peak)."""
        for chunk in self.reader.chunks():
            view = memoryview(chunk)
            for at in range(0, len(view), CHUNK):
                yield view[at:at + CHUNK]

    def verify(self) -> None:
        self.reader.verify()


def open_tar_stream(source: BinaryIO, info: BackupInfo, key: BackupKey) -> TarStream:
    """The archive ``info`` names, read from ``source`` (its object), as a tar stream to verify.

    Raises FormatError (Tako's text) for an algorithm that is neither format's, IntegrityError
    for a format-2 manifest whose nonce or tag is malformed; reading raises IntegrityError,
    FormatError and what ``source`` raises.
    """
    algorithm = info.encryption.algorithm
    if algorithm == ALGORITHM:
        return _V1Stream(source, info, key)
    if is_format_2(info):
        return _V2Stream(source, info, key)
    raise unsupported(info)


@dataclass(frozen=True)
class Resealed:
    """An archive written again under another key: the manifest's crypto fields, size and
    digest, and for format 2 the layout extras (:meth:`.seal_v2.ChunkedSeal.extras`)."""

    sealed: Sealed
    layout: dict[str, int] | None = None


def reseal(source: BinaryIO, info: BackupInfo, old_key: BackupKey, sink: Sink, new_key: BackupKey,
           progress: Progress = NO_PROGRESS) -> Resealed:
    """Write ``info``'s archive (read from ``source``) to ``sink`` under ``new_key``, in the
    archive's own format; returns only after the old archive verified (the caller commits then).

    Format 1: the compressed stream is decrypted and encrypted again (not decompressed). Format
    2: the verified tar stream is sealed again as a new format-2 object (new salt, so a new
    per-object key) with the default chunk size, and the member table of the old footer. ``progress``
    advances by the bytes of the old object. Raises IntegrityError, FormatError, what ``source``
    and ``sink`` raise.
    """
    algorithm = info.encryption.algorithm
    if algorithm == ALGORITHM:
        reader = DecryptingReader(source, info, old_key)
        enc = EncryptingWriter(sink, new_key)
        while chunk := reader.read(CHUNK):
            enc.write(chunk)
            progress.advance(len(chunk))
        reader.verify()
        return Resealed(enc.finish())
    if algorithm != ALGORITHM_V2:
        raise unsupported(info)
    stream = _V2Stream(source, info, old_key)
    with ChunkedSealer(sink, new_key, chunk_size=format_v2.DEFAULT_CHUNK_SIZE) as sealer:
        done = 0
        for piece in stream.chunks():
            sealer.write(piece)
            progress.advance(stream.bytes_read - done)
            done = stream.bytes_read
        stream.verify()
        progress.advance(stream.bytes_read - done)
        footer = stream.reader.footer
        assert footer is not None  # verify() returned: the footer was read and checked
        for m in footer.members():
            sealer.member(m.name, offset=m.offset, kind=m.kind, size=m.size, mtime=m.mtime)
        result = sealer.finish()
    return Resealed(result.sealed, result.extras())

