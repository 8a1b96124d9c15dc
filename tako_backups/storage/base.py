"""The object-store protocol every backend implements, and its contract.

Every backend passes the same contract suite (``tests/storage/test_contract.py``). Keys are
full object keys (``_tako/backups/...``); there is no bucket argument: a store is bound to one
bucket when it is made.

Errors: a missing object raises :class:`~tako_backups.errors.ObjectNotFound`; rejected
credentials raise :class:`~tako_backups.errors.StorageAuthError`, and a listing refused to
credentials that may only read, write and delete objects its subclass
:class:`~tako_backups.errors.ListDenied`; a missing bucket raises
:class:`~tako_backups.errors.BucketNotFound`; anything else that still fails after the
backend's retries raises :class:`~tako_backups.errors.StorageError`. Messages never contain
credentials.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int


@dataclass(frozen=True)
class PendingUpload:
    """An unfinished multipart upload: what a crashed or failed writer can leave behind."""

    key: str
    upload_id: str
    started_at: float  # unix seconds, by the store's clock


class ObjectWriter(Protocol):
    """A streaming upload. Nothing is visible under the key until :meth:`commit` returns.

    Memory stays bounded by the backend's part size times its in-flight parts, whatever the
    object's size. Use as a context manager: leaving the block without ``commit`` (or with an
    exception) aborts the upload and leaves no object and no dangling multipart parts.
    """

    def write(self, data: bytes | memoryview) -> int:
        """Buffer and upload ``data``; returns ``len(data)``."""

    def commit(self) -> int:
        """Finish the upload and make the object visible; returns its size in bytes."""

    def abort(self) -> None:
        """Drop the upload; safe to call more than once and after a failure."""

    def __enter__(self) -> ObjectWriter: ...

    def __exit__(self, exc_type: object, *rest: object) -> None: ...


class ObjectStore(Protocol):
    """A bucket (or a part of one) that holds objects by key."""

    def open_writer(self, key: str, expected_size: int | None = None) -> ObjectWriter:
        """Start a streaming (multipart) upload to ``key``. ``expected_size`` is what the object
        should not exceed (a bound, not a promise): the S3 upload sizes its parts from it so that
        S3's 10 000 parts suffice (see :func:`.s3_multipart.part_size_for`)."""

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        """Store a small object (manifest, index) in one request, replacing any old one; sent
        with a ``Content-Type`` header when ``content_type`` is given."""

    def open_read(self, key: str) -> BinaryIO:
        """Open the object for streaming reads. Raises ObjectNotFound when it is missing."""

    def get_bytes(self, key: str) -> bytes:
        """Read a small object whole. Raises ObjectNotFound when it is missing."""

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        """The object's bytes ``[offset, offset + length)`` in one request (a ranged GET):
        fewer when the object ends before, none when ``offset`` is at or past its end or
        ``length`` is 0. Raises ObjectNotFound when it is missing, ValueError for a negative
        ``offset`` or ``length``."""

    def head(self, key: str) -> ObjectInfo | None:
        """The object's size, or None when it is missing."""

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``, in key order. Raises ListDenied when
        the credentials may not list (least-privilege credentials still read, write and delete)."""

    def list_folders(self, prefix: str) -> Iterator[str]:
        """The distinct ``{prefix}{name}/`` that keys under ``prefix`` continue with (S3's common
        prefixes for the delimiter ``/``), in key order. Raises ListDenied like :meth:`list`."""

    def delete(self, key: str) -> None:
        """Remove the object; removing a missing object is not an error."""

    def list_uploads(self, prefix: str) -> Iterator[PendingUpload]:
        """Unfinished multipart uploads whose key starts with ``prefix`` (their parts cost storage
        but no object is visible). Raises ListDenied when the credentials may not list them."""

    def abort_upload(self, upload: PendingUpload) -> None:
        """Abort ``upload`` and drop its parts; an upload that no longer exists is not an error."""

    def presigned_get_url(self, key: str, expires_in: int) -> str:
        """A URL that downloads the object with a plain GET for ``expires_in`` seconds."""
