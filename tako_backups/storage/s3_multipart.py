"""The streaming S3 upload: buffer a part, send parts on a small thread pool, complete in order.

No botocore here: requests go through :class:`~.s3_requests.S3Requests`, which maps failures to
StorageErrors. One part fills while at most ``max_concurrency`` are in flight; each is a buffer in
memory (:class:`MemoryPart`) or, with a spool folder, an unnamed file there (:class:`SpooledPart`,
what tako-server uses: the process then holds none of them).

Part sizes (S3 and R2: at most 10 000 parts, each 5 MiB to 5 GiB but the last, objects up to
5 TiB; parts of one upload may differ in size). A stream's size is not known in advance, so the
writer is told a bound (``expected_size``: the backup's :func:`~..core.format_v2.archive_size_bound`,
or the source's size for a copy or re-encryption) and:

1. starts with :func:`part_size_for`: the configured size (16 MiB), or larger so that
   :data:`PLANNED_PARTS` (8 900) parts hold the bound, rounded up to a MiB;
2. if the bytes sent ever pass the bound (files that grew while archived; without a bound, once
   :data:`PLANNED_PARTS` parts of the first size are sent), grows the parts still to come so
   that the parts left (at least :data:`RESERVE_PARTS`, 1 100) hold up to 5 TiB in all
   (:func:`grown_part_size`, at most 5 GiB each).

So 10 000 parts always reach 5 TiB, and the space the parts take follows the bound: 16 MiB parts
up to 139 GiB, 590 MiB at 5 TiB (times ``max_concurrency + 1``), in memory or in the spool folder.
docs/FORMAT-V2.md, "Limits", has the figures.
"""

from __future__ import annotations

import tempfile
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import IO

from ..errors import ObjectNotFound, StorageError
from .s3_requests import S3Requests

MIB = 1 << 20
MIN_PART_SIZE = 5 * MIB
MAX_PART_SIZE = 5 << 30
MAX_PARTS = 10_000
MAX_OBJECT_SIZE = 5 << 40
RESERVE_PARTS = 1_100  # enough parts of at most 5 GiB to reach 5 TiB from wherever the bound was passed
PLANNED_PARTS = MAX_PARTS - RESERVE_PARTS


def _mib_ceil(n: int) -> int:
    return -(-n // MIB) * MIB


def part_size_for(expected_size: int | None, base: int) -> int:
    """The first part size of an upload of at most ``expected_size`` bytes (None: unknown):
    ``base``, or the MiB-rounded size that lets :data:`PLANNED_PARTS` parts hold it; at most
    :data:`MAX_PART_SIZE`."""
    if expected_size is None:
        return base
    return min(MAX_PART_SIZE, max(base, _mib_ceil(-(-expected_size // PLANNED_PARTS))))


def next_part_size(current: int, sent: int, next_part: int, bound: int) -> int:
    """The part size after ``sent`` bytes went up in ``next_part - 1`` parts of an upload
    bounded by ``bound``: ``current`` until the bound is passed, then :func:`grown_part_size`."""
    return current if sent < bound else grown_part_size(current, sent, next_part)


def grown_part_size(current: int, sent: int, next_part: int) -> int:
    """The part size for part ``next_part`` onwards once ``sent`` bytes passed the upload's
    bound: large enough that the parts left hold up to :data:`MAX_OBJECT_SIZE` in all (never
    smaller than ``current``, at most :data:`MAX_PART_SIZE`)."""
    left = MAX_PARTS - next_part + 1
    if left <= 0:
        return current
    return min(MAX_PART_SIZE, max(current, _mib_ceil(-(-(MAX_OBJECT_SIZE - sent) // left))))


class MemoryPart:
    """One part in one buffer of its final size, allocated whole (never grown step by step), so
    the allocator hands it back to the system once the part is sent."""

    def __init__(self, size: int) -> None:
        self._buf = bytearray(size)
        self.size = 0

    def write(self, data: memoryview) -> None:
        self._buf[self.size:self.size + len(data)] = data
        self.size += len(data)

    def body(self) -> bytearray:
        del self._buf[self.size:]
        return self._buf

    def close(self) -> None:
        self._buf = bytearray()


class SpooledPart:
    """One part kept in an unnamed file of ``directory`` instead of memory (as restic keeps its
    packs in temporary files): the bytes sit in the page cache, which the kernel can write out and
    reclaim under pressure, where a buffer would pin the same memory in the process. Its body is
    the open file, which botocore reads (and rewinds to retry) a block at a time. The file has no
    name, so it is gone when closed or when the process dies."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        try:
            self._file: IO[bytes] = tempfile.TemporaryFile(dir=directory)
        except OSError as exc:
            raise self._failure(exc) from None
        self.size = 0

    def write(self, data: memoryview) -> None:
        try:
            self._file.write(data)
        except OSError as exc:
            raise self._failure(exc) from None
        self.size += len(data)

    def _failure(self, exc: OSError) -> StorageError:
        return StorageError(f"Cannot keep an upload's part in {self._directory}: {exc.strerror or exc}; "
                            "free space there (or make the folder) and try again.")

    def body(self) -> IO[bytes]:
        self._file.flush()
        self._file.seek(0)
        return self._file

    def close(self) -> None:
        self._file.close()


Part = MemoryPart | SpooledPart


class S3Writer:
    """An :class:`~.base.ObjectWriter` for S3. Small objects go up in one PUT at commit; larger
    ones as a multipart upload whose parts upload while the caller keeps writing.

    With ``spool_dir`` the parts wait in unnamed files there (:class:`SpooledPart`), so the
    process holds none of them; without, each part is one buffer in memory."""

    def __init__(self, requests: S3Requests, key: str, part_size: int, max_concurrency: int,
                 expected_size: int | None = None, spool_dir: Path | None = None) -> None:
        self._requests, self._key = requests, key
        self._spool_dir = spool_dir
        self._part_size = part_size_for(expected_size, part_size)
        self._bound = expected_size if expected_size is not None else self._part_size * PLANNED_PARTS
        self._sent = 0
        self._max_concurrency = max_concurrency
        self._part: Part | None = None  # the part being filled
        self._size = 0
        self._upload_id: str | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._in_flight: set[Future[None]] = set()
        self._etags: dict[int, str] = {}
        self._next_part = 1
        self._state = "open"

    def __repr__(self) -> str:
        return f"S3Writer(key={self._key!r}, state={self._state!r}, size={self._size})"

    def write(self, data: bytes | memoryview) -> int:
        """Buffer ``data``; every full part starts uploading. Returns the byte count.

        Raises StorageError when an earlier part failed or the upload is already finished.
        """
        self._check_open()
        view = memoryview(data).cast("B")
        total, pos = len(view), 0
        try:
            while pos < total:
                size = self._part_size  # grows only between parts (see _send)
                part = self._part
                if part is None:
                    part = self._part = self._new_part(size)
                n = min(total - pos, size - part.size)
                part.write(view[pos:pos + n])
                pos += n
                if part.size == size:
                    self._part = None
                    self._send(part)
        except BaseException:
            self._state = "failed"
            raise
        self._size += total
        return total

    def commit(self) -> int:
        """Send what is buffered, wait for every part and complete the upload; returns the size.

        On failure the upload is aborted (nothing visible, no parts left) and StorageError raised.
        """
        self._check_open()
        try:
            if self._upload_id is None:
                part = self._take_part()
                try:
                    self._requests.call("put_object", f"upload '{self._key}'", self._key,
                                         Key=self._key, Body=b"" if part is None else part.body())
                finally:
                    if part is not None:
                        part.close()
            else:
                part = self._take_part()
                if part is not None and part.size:
                    self._send(part)
                self._wait_until(0)
                parts = [{"PartNumber": n, "ETag": self._etags[n]} for n in sorted(self._etags)]
                self._requests.call(
                    "complete_multipart_upload", f"finish the upload of '{self._key}'", self._key,
                    Key=self._key, UploadId=self._upload_id, MultipartUpload={"Parts": parts})
        except BaseException:
            self._state = "failed"
            self._abort_quietly()
            raise
        self._state = "committed"
        self._upload_id = None
        self._shutdown()
        return self._size

    def abort(self) -> None:
        """Drop the upload and its parts. No-op after commit or a previous abort.

        Raises StorageError when the store refuses to abort the multipart upload.
        """
        if self._state in ("committed", "aborted"):
            return
        self._state = "aborted"
        part = self._take_part()
        if part is not None:
            part.close()
        for future in self._in_flight:
            future.cancel()
        self._shutdown()
        self._in_flight = set()
        upload_id, self._upload_id = self._upload_id, None
        if upload_id is not None:
            try:
                self._requests.call("abort_multipart_upload", f"abort the upload of '{self._key}'",
                                     self._key, Key=self._key, UploadId=upload_id)
            except ObjectNotFound:
                pass

    def __enter__(self) -> S3Writer:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.abort()
        else:
            self._abort_quietly()

    def _new_part(self, size: int) -> Part:
        return MemoryPart(size) if self._spool_dir is None else SpooledPart(self._spool_dir)

    def _take_part(self) -> Part | None:
        """The part being filled (None when none is); the next write starts a new one."""
        part, self._part = self._part, None
        return part

    def _abort_quietly(self) -> None:
        try:
            self.abort()
        except StorageError:
            pass

    def _check_open(self) -> None:
        if self._state != "open":
            raise StorageError(f"Upload of '{self._key}' is already {self._state}; start a new one.")

    def _send(self, part: Part) -> None:
        if self._upload_id is None:
            resp = self._requests.call("create_multipart_upload", f"start the upload of '{self._key}'",
                                        self._key, Key=self._key)
            self._upload_id = resp["UploadId"]
            self._pool = ThreadPoolExecutor(self._max_concurrency, thread_name_prefix="tako-s3-part")
        if self._next_part > MAX_PARTS:
            raise StorageError(f"Upload of '{self._key}' needs more than {MAX_PARTS} parts; "
                               "use a larger part size.")
        self._wait_until(self._max_concurrency - 1)
        number, self._next_part = self._next_part, self._next_part + 1
        assert self._pool is not None
        future = self._pool.submit(self._upload_part, number, part)
        future.add_done_callback(lambda _: part.close())  # sent, failed or cancelled
        self._in_flight.add(future)
        self._sent += part.size
        self._part_size = next_part_size(self._part_size, self._sent, self._next_part, self._bound)

    @property
    def part_size(self) -> int:
        """The size of the parts now being cut (see the module docstring)."""
        return self._part_size

    def _upload_part(self, number: int, part: Part) -> None:
        resp = self._requests.call(
            "upload_part", f"upload part {number} of '{self._key}'", self._key,
            Key=self._key, UploadId=self._upload_id, PartNumber=number, Body=part.body())
        self._etags[number] = resp["ETag"]

    def _wait_until(self, limit: int) -> None:
        """Wait until at most ``limit`` parts are in flight; raise the first part failure seen."""
        done = {f for f in self._in_flight if f.done()}
        while True:
            self._in_flight -= done
            for future in done:
                future.result()
            if len(self._in_flight) <= limit:
                return
            done, _ = wait(self._in_flight, return_when=FIRST_COMPLETED)

    def _shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
