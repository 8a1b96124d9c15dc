"""An in-memory object store for unit tests. Same contract as the S3 store."""

from __future__ import annotations

import io
import threading
import time
import uuid
from collections.abc import Iterator
from typing import BinaryIO
from urllib.parse import quote

from ..errors import ListDenied, ObjectNotFound, StorageError
from .base import ObjectInfo, PendingUpload


class MemoryWriter:
    def __init__(self, store: MemoryStore, key: str) -> None:
        self._store, self._key = store, key
        self._parts: list[bytes] = []
        self._done = False
        self.upload = PendingUpload(key, uuid.uuid4().hex, time.time())
        store._track(self)

    def write(self, data: bytes | memoryview) -> int:
        if self._done:
            raise StorageError(f"Upload of '{self._key}' is already finished.")
        self._parts.append(bytes(data))
        return len(data)

    def commit(self) -> int:
        if self._done:
            raise StorageError(f"Upload of '{self._key}' is already finished.")
        self._done = True
        data = b"".join(self._parts)
        self._parts = []
        self._store._forget(self)
        self._store.put_bytes(self._key, data)
        return len(data)

    def abort(self) -> None:
        self._done = True
        self._parts = []
        self._store._forget(self)

    def __enter__(self) -> MemoryWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._done:
            self.abort()


class MemoryStore:
    """Objects in a dict. ``fail_puts``/``fail_deletes`` (key suffixes) let tests inject storage
    failures; ``deny_list``/``deny_list_uploads`` make it refuse listings as a bucket does to
    object-only credentials. ``content_types`` records the Content-Type of each ``put_bytes``."""

    def __init__(self, *, deny_list: bool = False, deny_list_uploads: bool = False) -> None:
        self.objects: dict[str, bytes] = {}
        self.content_types: dict[str, str | None] = {}
        self._lock = threading.Lock()
        self.fail_puts: set[str] = set()
        self.fail_deletes: set[str] = set()
        self.deny_list = deny_list
        self.deny_list_uploads = deny_list_uploads
        self._writers: dict[str, MemoryWriter] = {}
        self.expected_sizes: dict[str, int | None] = {}  # what each upload was told to expect

    def open_writer(self, key: str, expected_size: int | None = None) -> MemoryWriter:
        self.expected_sizes[key] = expected_size
        return MemoryWriter(self, key)

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        if any(key.endswith(s) for s in self.fail_puts):
            raise StorageError(f"Upload of '{key}' failed (injected).")
        with self._lock:
            self.objects[key] = bytes(data)
            self.content_types[key] = content_type

    def open_read(self, key: str) -> BinaryIO:
        return io.BytesIO(self.get_bytes(key))

    def get_bytes(self, key: str) -> bytes:
        with self._lock:
            if key not in self.objects:
                raise ObjectNotFound(f"Object '{key}' does not exist.")
            return self.objects[key]

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise ValueError("A ranged read needs an offset and a length of at least 0.")
        return self.get_bytes(key)[offset:offset + length]

    def head(self, key: str) -> ObjectInfo | None:
        with self._lock:
            data = self.objects.get(key)
        return None if data is None else ObjectInfo(key, len(data))

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        if self.deny_list:
            raise ListDenied(f"Listing '{prefix}' is denied (memory store).")
        with self._lock:
            items = sorted((k, len(v)) for k, v in self.objects.items() if k.startswith(prefix))
        return iter([ObjectInfo(k, n) for k, n in items])

    def list_folders(self, prefix: str) -> Iterator[str]:
        if self.deny_list:
            raise ListDenied(f"Listing '{prefix}' is denied (memory store).")
        with self._lock:
            keys = [k[len(prefix):] for k in self.objects if k.startswith(prefix)]
        return iter(sorted({prefix + k.split("/", 1)[0] + "/" for k in keys if "/" in k}))

    def delete(self, key: str) -> None:
        if any(key.endswith(s) for s in self.fail_deletes):
            raise StorageError(f"Delete of '{key}' failed (injected).")
        with self._lock:
            self.objects.pop(key, None)
            self.content_types.pop(key, None)

    def list_uploads(self, prefix: str) -> Iterator[PendingUpload]:
        """Writers opened and not yet committed or aborted (the memory store's unfinished uploads)."""
        if self.deny_list_uploads:
            raise ListDenied(f"Listing the unfinished uploads under '{prefix}' is denied (memory store).")
        with self._lock:
            uploads = [w.upload for w in self._writers.values() if w.upload.key.startswith(prefix)]
        return iter(sorted(uploads, key=lambda u: (u.key, u.started_at)))

    def abort_upload(self, upload: PendingUpload) -> None:
        with self._lock:
            writer = self._writers.get(upload.upload_id)
        if writer is not None:
            writer.abort()

    def _track(self, writer: MemoryWriter) -> None:
        with self._lock:
            self._writers[writer.upload.upload_id] = writer

    def _forget(self, writer: MemoryWriter) -> None:
        with self._lock:
            self._writers.pop(writer.upload.upload_id, None)

    def presigned_get_url(self, key: str, expires_in: int) -> str:
        return f"memory://{quote(key)}?expires_in={expires_in}"
