"""The S3 object store (AWS S3, Cloudflare R2, SeaweedFS, MinIO, ...). The only boto3/botocore user.

botocore is imported lazily inside :class:`S3Store`, so importing this module stays cheap. Every
failure leaves as a one-line :class:`~tako_backups.errors.StorageError` (or a subclass) built from
names only: no credential, no chained botocore traceback.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from ..errors import ConfigError, ObjectNotFound, StorageError
from .base import ObjectInfo, PendingUpload
from .endpoints import check_endpoint, is_ip_host
from .s3_multipart import MIN_PART_SIZE, S3Writer
from .s3_requests import S3Requests

if TYPE_CHECKING:
    from ..models import StorageBinding

__all__ = ["DEFAULT_CONCURRENCY", "DEFAULT_PART_SIZE", "MIN_PART_SIZE", "S3Store"]

DEFAULT_PART_SIZE = 16 * 1024 * 1024
# One part in flight while the next one fills: on a 2-core server the store, not the client, is
# the limit, and a 1 GB backup took as long as with two or four in flight (bench/, issue 14)
# while holding 32 MiB of parts instead of 48 MiB (or 80 MiB).
DEFAULT_CONCURRENCY = 1
MAX_PRESIGN_SECONDS = 7 * 24 * 3600

_session_lock = threading.Lock()
_session: Any = None


def _create_client(**kw: Any) -> Any:
    """A botocore S3 client from one shared session (it caches the service model; sessions are not
    thread-safe, so creation is serialized). Credentials go to the client, never to the session."""
    global _session
    with _session_lock:
        if _session is None:
            _session = s3_only_session()
        return _session.create_client("s3", **kw)


def s3_only_session() -> Any:
    """A botocore session whose data loader keeps S3's entries of botocore's endpoint table and
    drops the other services' (:class:`S3EndpointsOnly`): the table is kept for the process's
    life, and the part an S3 client never reads held 4 MB of tako-server's memory."""
    import botocore.loaders
    import botocore.session

    session = botocore.session.Session()
    loader = botocore.loaders.create_loader(session.get_config_variable("data_path"))
    loader.file_loader = S3EndpointsOnly(loader.file_loader)
    session.register_component("data_loader", loader)
    return session


class S3EndpointsOnly:
    """A botocore file loader (``exists``, ``load_file``) that hands out ``endpoints`` with only
    the ``s3`` service in each partition, and every other file as it is. A table of another shape
    is handed out whole."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def exists(self, file_path: str) -> bool:
        return bool(self._inner.exists(file_path))

    def load_file(self, file_path: str) -> Any:
        data = self._inner.load_file(file_path)
        if Path(file_path).name != "endpoints" or not isinstance(data, dict):
            return data
        partitions = data.get("partitions")
        if not isinstance(partitions, list) or not all(
                isinstance(p, dict) and isinstance(p.get("services"), dict) for p in partitions):
            return data
        return {**data, "partitions": [{**p, "services": {name: entry for name, entry in p["services"].items()
                                                          if name == "s3"}} for p in partitions]}


class S3Store:
    """One bucket of an S3-compatible service. Implements :class:`~.base.ObjectStore`.

    Retries are botocore's standard mode: ``max_retries`` retries after the first try (botocore's
    ``max_attempts`` setting counts retries), with jittered exponential backoff. What still fails
    maps to ObjectNotFound, BucketNotFound, StorageAuthError or StorageError.
    """

    def __init__(
        self,
        bucket: str,
        endpoint: str,
        region: str,
        access_key_id: str,
        secret_access_key: str,
        *,
        force_path_style: bool = False,
        part_size: int = DEFAULT_PART_SIZE,
        max_concurrency: int = DEFAULT_CONCURRENCY,
        max_retries: int = 5,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        proxies: dict[str, str] | None = None,
        spool_dir: Path | None = None,
    ) -> None:
        """Bind a client to ``bucket`` at ``endpoint``. Makes no request.

        Addressing is Tako's: virtual-hosted (``{bucket}.{endpoint host}``) unless
        ``force_path_style`` (``{endpoint}/{bucket}``). ``proxies`` (botocore's setting, e.g.
        ``{"http": "http://127.0.0.1:3128"}``) is for tests; by default botocore follows the
        ``HTTP(S)_PROXY`` variables. ``spool_dir`` (an existing private folder) keeps the parts of
        an upload in unnamed files there instead of memory (:class:`~.s3_multipart.SpooledPart`).

        Raises ConfigError for an endpoint that is not https (or http on loopback), an IP-address
        endpoint without ``force_path_style`` (no bucket host name can be formed), an empty
        bucket, a part size below 5 MiB, a concurrency below 1 or a negative retry count.
        """
        if not bucket.strip():
            raise ConfigError("Storage bucket name is empty; set the bucket in the storage settings.")
        if part_size < MIN_PART_SIZE:
            raise ConfigError(f"S3 part size {part_size} is below the minimum of {MIN_PART_SIZE} bytes "
                              "(5 MiB).")
        if max_concurrency < 1 or max_retries < 0:
            raise ConfigError("S3 upload concurrency must be at least 1 and the retry count at least 0.")
        self.bucket = bucket
        self.endpoint = check_endpoint(endpoint)
        if not force_path_style and is_ip_host(self.endpoint):
            raise ConfigError(f"Storage endpoint {self.endpoint} is an IP address, which has no host name to "
                              f"put bucket '{bucket}' in front of (virtual-hosted addressing, the default); "
                              "set force_path_style = true for this storage.")
        self.region = region.strip() or "us-east-1"
        self.force_path_style = force_path_style
        self.part_size = part_size
        self.max_concurrency = max_concurrency
        self.spool_dir = spool_dir

        from botocore.config import Config

        config = Config(
            region_name=self.region,
            signature_version="s3v4",
            retries={"mode": "standard", "max_attempts": max_retries},
            # UNSIGNED-PAYLOAD, as Tako signs: no SHA-256 pass over every part before it is sent
            # (about 0.45 CPU-s per 512 MB). TLS protects the body in flight; the manifest's
            # SHA-256 and the GCM tag check it on every restore.
            s3={"addressing_style": "path" if force_path_style else "virtual",
                "payload_signing_enabled": False},
            proxies=proxies,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_pool_connections=max(10, max_concurrency + 2),
            tcp_keepalive=True,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            user_agent_extra="tako-backups",
        )
        failure = ""
        try:
            client = _create_client(
                endpoint_url=self.endpoint, region_name=self.region, config=config,
                aws_access_key_id=access_key_id, aws_secret_access_key=secret_access_key,
            )
        except Exception as exc:
            failure = type(exc).__name__
        if failure:
            raise ConfigError(f"Cannot set up the S3 client for {self.endpoint} "
                              f"(region '{self.region}'): {failure}.")
        self.requests = S3Requests(client, bucket, self.endpoint)

    @property
    def client(self) -> Any:
        """The botocore S3 client (for event hooks in tests and tuning)."""
        return self.requests.client

    @classmethod
    def from_binding(cls, binding: StorageBinding, **kw: Any) -> S3Store:
        """An S3Store for a backup's storage settings; ``kw`` passes tuning (part_size, ...).

        Raises ConfigError as the constructor does.
        """
        return cls(binding.bucket, binding.endpoint, binding.region, binding.access_key_id,
                   binding.secret_access_key, force_path_style=binding.force_path_style, **kw)

    def __repr__(self) -> str:
        return f"S3Store(bucket={self.bucket!r}, endpoint={self.endpoint!r}, region={self.region!r})"

    __str__ = __repr__

    # ----- the ObjectStore protocol -----

    def open_writer(self, key: str, expected_size: int | None = None) -> S3Writer:
        """Start a streaming upload: parts of ``part_size`` (larger for a large
        ``expected_size``: see :mod:`.s3_multipart`) go up ``max_concurrency`` at a time.

        The parts (``part_size * (max_concurrency + 1)`` bytes at most) are held in memory, or in
        ``spool_dir`` when the store has one. Raises StorageError (or a subclass) from
        write/commit when a request fails.
        """
        return S3Writer(self.requests, key, self.part_size, self.max_concurrency, expected_size,
                        self.spool_dir)

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        """One PUT of ``data`` to ``key`` (with a ``Content-Type`` header when ``content_type`` is
        given), replacing any old object. Raises StorageError."""
        extra = {} if content_type is None else {"ContentType": content_type}
        self.requests.call("put_object", f"upload '{key}'", key, Key=key, Body=bytes(data), **extra)

    def open_read(self, key: str) -> BinaryIO:
        """Stream ``key``. Raises ObjectNotFound, BucketNotFound, StorageAuthError, StorageError;
        reading the stream raises StorageError when the connection fails."""
        resp = self.requests.call("get_object", f"read '{key}'", key, Key=key)
        return cast(BinaryIO, _S3Reader(resp["Body"], self.requests, key))

    def get_bytes(self, key: str) -> bytes:
        """The whole object. Raises as :meth:`open_read`."""
        with self.open_read(key) as reader:
            return reader.read()

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        """One GET with ``Range: bytes=offset-(offset+length-1)``. A range that starts at or past
        the end (HTTP 416) is no bytes, as the protocol says. Raises as :meth:`open_read`."""
        if offset < 0 or length < 0:
            raise ValueError("A ranged read needs an offset and a length of at least 0.")
        if length == 0:
            return b""
        action = f"read '{key}' (bytes {offset}-{offset + length - 1})"
        try:
            resp = self.requests.call("get_object", action, key, Key=key,
                                      Range=f"bytes={offset}-{offset + length - 1}")
        except StorageError as exc:
            if _unsatisfiable(exc) and self.head(key) is not None:
                return b""
            raise
        with _S3Reader(resp["Body"], self.requests, key) as body:
            return body.read()[:length]

    def head(self, key: str) -> ObjectInfo | None:
        """The object's size, or None when it (or, as S3 cannot tell apart, its bucket) is missing.

        Raises StorageAuthError or StorageError.
        """
        try:
            resp = self.requests.call("head_object", f"check '{key}'", key, Key=key)
        except ObjectNotFound:
            return None
        return ObjectInfo(key, int(resp["ContentLength"]))

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Objects under ``prefix`` in key order, fetched page by page as the iterator advances.

        Raises ListDenied (credentials that may not list), BucketNotFound, StorageAuthError or
        StorageError while iterating.
        """
        paginator = self.requests.client.get_paginator("list_objects_v2")
        pages = iter(paginator.paginate(Bucket=self.bucket, Prefix=prefix))
        while True:
            page = self.requests.run(f"list '{prefix}'", None, lambda: next(pages, None), listing=True)
            if page is None:
                return
            for item in page.get("Contents", ()):
                yield ObjectInfo(item["Key"], int(item["Size"]))

    def list_folders(self, prefix: str) -> Iterator[str]:
        """The common prefixes under ``prefix`` for the delimiter ``/``, page by page.

        Raises ListDenied, BucketNotFound, StorageAuthError or StorageError while iterating.
        """
        paginator = self.requests.client.get_paginator("list_objects_v2")
        pages = iter(paginator.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/"))
        while True:
            page = self.requests.run(f"list '{prefix}'", None, lambda: next(pages, None), listing=True)
            if page is None:
                return
            for item in page.get("CommonPrefixes", ()):
                yield item["Prefix"]

    def delete(self, key: str) -> None:
        """Remove ``key``; a missing object is fine. Raises StorageAuthError or StorageError."""
        try:
            self.requests.call("delete_object", f"delete '{key}'", key, Key=key)
        except ObjectNotFound:
            pass

    def list_uploads(self, prefix: str) -> Iterator[PendingUpload]:
        """Unfinished multipart uploads under ``prefix``, page by page as the iterator advances.

        Raises ListDenied (credentials that may not list), BucketNotFound, StorageAuthError or
        StorageError while iterating.
        """
        paginator = self.requests.client.get_paginator("list_multipart_uploads")
        pages = iter(paginator.paginate(Bucket=self.bucket, Prefix=prefix))
        while True:
            page = self.requests.run(f"list unfinished uploads under '{prefix}'", None,
                                     lambda: next(pages, None), listing=True)
            if page is None:
                return
            for item in page.get("Uploads", ()):
                yield PendingUpload(item["Key"], item["UploadId"], item["Initiated"].timestamp())

    def abort_upload(self, upload: PendingUpload) -> None:
        """Abort ``upload``; one that is already gone is fine. Raises StorageAuthError or StorageError."""
        try:
            self.requests.call("abort_multipart_upload", f"abort the upload of '{upload.key}'", upload.key,
                          Key=upload.key, UploadId=upload.upload_id)
        except ObjectNotFound:
            pass

    def presigned_get_url(self, key: str, expires_in: int) -> str:
        """A SigV4 presigned GET URL for ``key``, valid ``expires_in`` seconds (1 s to 7 days).

        Makes no request. Raises ConfigError for a lifetime out of range, StorageError otherwise.
        """
        if not 1 <= expires_in <= MAX_PRESIGN_SECONDS:
            raise ConfigError(f"Download link lifetime must be between 1 and {MAX_PRESIGN_SECONDS} seconds, "
                              f"not {expires_in}.")
        return cast(str, self.requests.run(f"sign a download link for '{key}'", key, lambda: (
            self.requests.client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_in))))

def _unsatisfiable(exc: StorageError) -> bool:
    """Whether the store refused a range for starting past the object's end (HTTP 416)."""
    return "InvalidRange" in str(exc) or "416" in str(exc)


class _S3Reader(io.RawIOBase):
    """A GET response body as a readable stream whose failures are StorageErrors."""

    def __init__(self, body: Any, requests: S3Requests, key: str) -> None:
        super().__init__()
        self._body, self._requests, self._key = body, requests, key

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        self._check_open()
        amount = None if size is None or size < 0 else size
        return cast(bytes, self._requests.run(f"read '{self._key}'", self._key,
                                                     lambda: self._body.read(amount)))

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer: Any) -> int:
        self._check_open()
        return cast(int, self._requests.run(f"read '{self._key}'", self._key,
                                                   lambda: self._body.readinto(buffer)))

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file.")

