"""The ObjectStore contract, run over every backend: memory, moto and a real SeaweedFS."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tako_backups.errors import ObjectNotFound, StorageError
from tako_backups.storage.base import ObjectInfo
from tako_backups.storage.s3 import S3Store
from tests.support.s3_servers import STORE_KINDS

MIB = 1024 * 1024
PART = 5 * MIB


SPOOLED = "+spool"


@pytest.fixture(params=[*STORE_KINDS, *(kind + SPOOLED for kind in STORE_KINDS if kind != "memory")])
def small_part_store(request: pytest.FixtureRequest, make_store: Callable[..., Any],
                     tmp_path: Path) -> Any:
    """A fresh store whose S3 part size is the 5 MiB minimum, so 12 MiB makes three parts; the
    ``+spool`` kinds keep their parts in files of a spool folder (as tako-server's stores do)."""
    kind = request.param.removesuffix(SPOOLED)
    if kind == "memory":
        return make_store(kind)
    spool = {"spool_dir": tmp_path} if request.param.endswith(SPOOLED) else {}
    return make_store(kind, part_size=PART, max_concurrency=2, **spool)


def pending_uploads(store: Any) -> list[str]:
    """Keys with an unfinished multipart upload (S3 only; the memory store has no such thing)."""
    if not isinstance(store, S3Store):
        return []
    resp = store.client.list_multipart_uploads(Bucket=store.bucket)
    return [u["Key"] for u in resp.get("Uploads", [])]


def test_put_and_get_bytes_round_trip_exactly(store: Any) -> None:
    data = bytes(range(256)) * 40 + b"\x00\r\n"
    store.put_bytes("_tako/backups/app/manifest.json", data)
    assert store.get_bytes("_tako/backups/app/manifest.json") == data
    assert store.head("_tako/backups/app/manifest.json") == ObjectInfo("_tako/backups/app/manifest.json",
                                                                       len(data))


def test_put_replaces_the_old_object(store: Any) -> None:
    store.put_bytes("index.json", b"old and longer contents")
    store.put_bytes("index.json", b"new")
    assert store.get_bytes("index.json") == b"new"
    assert store.head("index.json") == ObjectInfo("index.json", 3)


def test_streaming_writer_uploads_many_parts_in_order(small_part_store: Any) -> None:
    store = small_part_store
    chunks = [os.urandom(n) for n in (1, 1000, PART - 1, PART, 17, PART + 1, 3 * MIB // 2)]
    digest = hashlib.sha256()
    with store.open_writer("big.bin") as writer:
        for i, chunk in enumerate(chunks):
            assert writer.write(memoryview(chunk) if i % 2 else chunk) == len(chunk)
            digest.update(chunk)
        size = writer.commit()
    total = sum(map(len, chunks))
    assert total > 12 * MIB
    assert size == total
    assert store.head("big.bin") == ObjectInfo("big.bin", total)
    assert hashlib.sha256(store.get_bytes("big.bin")).hexdigest() == digest.hexdigest()
    assert pending_uploads(store) == []


def test_one_write_larger_than_several_parts(small_part_store: Any) -> None:
    data = os.urandom(12 * MIB + 12345)
    with small_part_store.open_writer("one-write.bin") as writer:
        writer.write(memoryview(data))
        assert writer.commit() == len(data)
    got = small_part_store.get_bytes("one-write.bin")
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()


def test_nothing_is_visible_before_commit(small_part_store: Any) -> None:
    store = small_part_store
    with store.open_writer("pending.bin") as writer:
        writer.write(os.urandom(PART + 10))
        assert store.head("pending.bin") is None
        assert list(store.list("")) == []
        writer.commit()
    assert store.head("pending.bin") == ObjectInfo("pending.bin", PART + 10)


def test_abort_leaves_no_object_and_no_parts(small_part_store: Any) -> None:
    store = small_part_store
    writer = store.open_writer("aborted.bin")
    writer.write(os.urandom(2 * PART + 5))
    writer.abort()
    writer.abort()
    assert store.head("aborted.bin") is None
    assert list(store.list("")) == []
    assert pending_uploads(store) == []
    with pytest.raises(StorageError):
        writer.write(b"more")


def test_leaving_the_block_without_commit_aborts(small_part_store: Any) -> None:
    store = small_part_store
    with store.open_writer("forgotten.bin") as writer:
        writer.write(os.urandom(PART + 1))
    assert store.head("forgotten.bin") is None
    assert pending_uploads(store) == []


def test_an_exception_in_the_block_aborts_and_propagates(small_part_store: Any) -> None:
    store = small_part_store
    with pytest.raises(KeyError, match="boom"), store.open_writer("failed.bin") as writer:
        writer.write(os.urandom(PART * 2))
        raise KeyError("boom")
    assert store.head("failed.bin") is None
    assert pending_uploads(store) == []


def test_a_small_writer_object_and_commit_only_once(store: Any) -> None:
    with store.open_writer("small.txt") as writer:
        writer.write(b"hello ")
        writer.write(memoryview(b"world"))
        assert writer.commit() == 11
        with pytest.raises(StorageError):
            writer.commit()
    assert store.get_bytes("small.txt") == b"hello world"


def test_empty_objects(store: Any) -> None:
    with store.open_writer("empty-stream") as writer:
        assert writer.commit() == 0
    store.put_bytes("empty-put", b"")
    assert store.get_bytes("empty-stream") == b""
    assert store.get_bytes("empty-put") == b""
    assert store.head("empty-stream") == ObjectInfo("empty-stream", 0)


def test_head_of_a_missing_object_is_none(store: Any) -> None:
    store.put_bytes("present", b"x")
    assert store.head("absent") is None


def test_reading_a_missing_object_raises_object_not_found(store: Any) -> None:
    with pytest.raises(ObjectNotFound) as info:
        store.get_bytes("_tako/missing.json")
    assert str(info.value).startswith("Object '_tako/missing.json' does not exist")
    with pytest.raises(ObjectNotFound):
        store.open_read("_tako/missing.json")


def test_open_read_streams_in_chunks(store: Any) -> None:
    data = os.urandom(300_000)
    store.put_bytes("stream.bin", data)
    pieces = []
    with store.open_read("stream.bin") as reader:
        while chunk := reader.read(65_536):
            assert len(chunk) <= 65_536
            pieces.append(chunk)
    assert len(pieces) >= 5
    assert b"".join(pieces) == data


def test_read_range_returns_exactly_the_range_and_less_at_the_end(store: Any) -> None:
    data = os.urandom(100_000)
    store.put_bytes("_tako/backups/app/x.enc", data)
    assert store.read_range("_tako/backups/app/x.enc", 0, 10) == data[:10]
    assert store.read_range("_tako/backups/app/x.enc", 65_537, 1000) == data[65_537:66_537]
    assert store.read_range("_tako/backups/app/x.enc", 99_990, 100) == data[99_990:]
    assert store.read_range("_tako/backups/app/x.enc", 100_000, 16) == b""
    assert store.read_range("_tako/backups/app/x.enc", 5, 0) == b""
    with pytest.raises(ObjectNotFound):
        store.read_range("_tako/backups/app/missing.enc", 0, 10)
    with pytest.raises(ValueError):
        store.read_range("_tako/backups/app/x.enc", -1, 10)


def test_list_by_prefix_in_key_order_without_siblings(store: Any) -> None:
    keys = {"a/2": b"22", "a/10": b"1010", "a/1": b"1", "a/b/c": b"", "ab/x": b"x", "a": b"aa",
            "a/\u00fcber": b"u", "b/1": b"b"}
    for key, data in keys.items():
        store.put_bytes(key, data)
    assert list(store.list("a/")) == [ObjectInfo("a/1", 1), ObjectInfo("a/10", 4), ObjectInfo("a/2", 2),
                                      ObjectInfo("a/b/c", 0), ObjectInfo("a/\u00fcber", 1)]
    assert [o.key for o in store.list("")] == sorted(keys)
    assert list(store.list("nothing/")) == []


def test_list_folders_gives_the_next_segments_once_each(store: Any) -> None:
    if isinstance(store, S3Store):  # pages of 2, so folders come from several pages
        store.client.meta.events.register(
            "before-parameter-build.s3.ListObjectsV2", lambda params, **_: params.update(MaxKeys=2))
    for key in ("e/la/index.json", "e/la/b1.json", "e/ny-2/index.json", "e/x", "e/z/y/index.json",
                "e/a/1", "e/a/2", "e/a/3", "f/la/index.json", "ex/la/1"):
        store.put_bytes(key, b"1")
    assert list(store.list_folders("e/")) == ["e/a/", "e/la/", "e/ny-2/", "e/z/"]
    assert list(store.list_folders("e/z/")) == ["e/z/y/"]
    assert list(store.list_folders("none/")) == []


def test_list_pages_through_more_than_one_page(store: Any) -> None:
    if isinstance(store, S3Store):
        store.client.meta.events.register(
            "before-parameter-build.s3.ListObjectsV2", lambda params, **_: params.update(MaxKeys=3))
    keys = [f"p/{i:02d}" for i in range(8)]
    for key in reversed(keys):
        store.put_bytes(key, key.encode())
    assert [o.key for o in store.list("p/")] == keys


def test_delete_removes_and_missing_is_fine(store: Any) -> None:
    store.put_bytes("doomed", b"x")
    store.put_bytes("kept", b"y")
    store.delete("doomed")
    store.delete("doomed")
    store.delete("never-was")
    assert store.head("doomed") is None
    assert [o.key for o in store.list("")] == ["kept"]


def test_presigned_url_downloads_the_object_with_plain_get(s3_store: S3Store) -> None:
    data = os.urandom(70_000)
    key = "_tako/backups/app/2026 backup \u00e9.tar.zst.enc"
    s3_store.put_bytes(key, data)
    url = s3_store.presigned_get_url(key, 300)
    assert url.startswith(f"{s3_store.endpoint}/{s3_store.bucket}/")
    assert "X-Amz-Expires=300" in url
    resp = httpx.get(url, timeout=10)
    assert resp.status_code == 200
    assert resp.content == data


def test_unfinished_uploads_are_listed_by_prefix_and_can_be_aborted(small_part_store: Any,
                                                                   request: pytest.FixtureRequest) -> None:
    store = small_part_store
    before = time.time()
    writer = store.open_writer("_tako/backups/a/pending.bin")
    writer.write(os.urandom(PART + 1))  # S3: the first part is on its way, the upload exists
    other = store.open_writer("_tako/backups/b/other.bin")
    other.write(os.urandom(PART + 1))
    pending = list(store.list_uploads("_tako/backups/a/"))
    assert [u.key for u in pending] == ["_tako/backups/a/pending.bin"]
    assert pending[0].started_at <= time.time() + 1
    if not request.node.callspec.params["small_part_store"].startswith("moto"):  # moto: a fixed 2010 date
        assert pending[0].started_at >= before - 2
    store.abort_upload(pending[0])
    store.abort_upload(pending[0])  # already gone: fine
    assert list(store.list_uploads("_tako/backups/a/")) == []
    with pytest.raises(StorageError):
        writer.commit()
    assert store.head("_tako/backups/a/pending.bin") is None
    assert [u.key for u in store.list_uploads("")] == ["_tako/backups/b/other.bin"]
    other.abort()
    assert list(store.list_uploads("")) == []
    assert pending_uploads(store) == []
