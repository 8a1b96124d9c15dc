"""How S3Store reaches objects as Tako does: virtual-hosted or path-style addressing, JSON objects
with their content type, and credentials that may not list (a refused list is ListDenied, told
apart from rejected credentials)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tako_backups.errors import ConfigError, ListDenied, ObjectNotFound, StorageAuthError
from tako_backups.storage.memory import MemoryStore
from tako_backups.storage.s3 import S3Store
from tests.forward_proxy import ForwardProxy
from tests.support.s3_servers import SeaweedFS

MIB = 1024 * 1024
KEY = "_tako/backups/demo/production/la/index.json"


@pytest.fixture
def limited_bucket(seaweedfs: SeaweedFS) -> Iterator[str]:
    yield from seaweedfs.leased_bucket("lim-")


def limited_store(seaweedfs: SeaweedFS, bucket: str, **kw: Any) -> S3Store:
    return S3Store(bucket, seaweedfs.endpoint, "us-east-1", seaweedfs.limited_access_key,
                   seaweedfs.limited_secret_key, force_path_style=True, max_retries=0, **kw)


# ----- least-privilege credentials -----

def test_limited_credentials_read_write_delete_and_upload_in_parts_but_not_list(
        seaweedfs: SeaweedFS, limited_bucket: str) -> None:
    store = limited_store(seaweedfs, limited_bucket, part_size=5 * MIB)
    store.put_bytes("_tako/a/one.json", b"{}", "application/json")
    assert store.get_bytes("_tako/a/one.json") == b"{}"
    big = os.urandom(11 * MIB)
    with store.open_writer("_tako/a/big.bin") as writer:
        writer.write(big)
        writer.commit()
    assert store.head("_tako/a/big.bin").size == len(big)  # type: ignore[union-attr]
    with store.open_read("_tako/a/big.bin") as body:
        assert body.read() == big
    with pytest.raises(ListDenied) as info:
        list(store.list("_tako/a/"))
    assert str(info.value) == (
        f"Storage endpoint {seaweedfs.endpoint} refused to list '_tako/a/' in bucket '{limited_bucket}' "
        "(AccessDenied): these credentials may not list the bucket.")
    assert info.value.__cause__ is None and info.value.__context__ is None
    with pytest.raises(ListDenied):
        list(store.list_folders("_tako/"))
    assert list(store.list_uploads("_tako/a/")) == []  # SeaweedFS lets Write list unfinished uploads
    store.delete("_tako/a/one.json")
    store.delete("_tako/a/big.bin")
    keys = [o["Key"] for o in seaweedfs.client().list_objects_v2(Bucket=limited_bucket).get("Contents", [])]
    assert keys == []


def test_a_refused_listing_is_not_confused_with_rejected_credentials(seaweedfs: SeaweedFS,
                                                                   limited_bucket: str) -> None:
    wrong = S3Store(limited_bucket, seaweedfs.endpoint, "us-east-1", seaweedfs.limited_access_key,
                    "wrong-" + seaweedfs.limited_secret_key, force_path_style=True, max_retries=0)
    with pytest.raises(StorageAuthError) as info:
        list(wrong.list("_tako/"))
    assert not isinstance(info.value, ListDenied)
    assert "(SignatureDoesNotMatch) while trying to list '_tako/'" in str(info.value)
    other = seaweedfs.lease_bucket()  # the limited identity has no rights at all here
    try:
        outside = limited_store(seaweedfs, other)
        with pytest.raises(StorageAuthError) as denied_put:
            outside.put_bytes("k", b"v")
        assert not isinstance(denied_put.value, ListDenied)
        with pytest.raises(StorageAuthError) as denied_get:
            outside.get_bytes("k")
        assert not isinstance(denied_get.value, ListDenied)
    finally:
        seaweedfs.release_bucket(other)


def test_the_memory_store_refuses_listings_when_told() -> None:
    store = MemoryStore(deny_list=True, deny_list_uploads=True)
    store.put_bytes("a/b", b"x")
    assert store.get_bytes("a/b") == b"x"
    with pytest.raises(ListDenied):
        list(store.list("a/"))
    with pytest.raises(ListDenied):
        list(store.list_uploads("a/"))
    with pytest.raises(ListDenied):
        list(store.list_folders("a/"))


# ----- JSON objects -----

def test_json_objects_carry_their_content_type(seaweedfs: SeaweedFS, seaweed_store: S3Store) -> None:
    seaweed_store.put_bytes(KEY, b'{"version":1,"backups":[]}', "application/json")
    seaweed_store.put_bytes("_tako/plain", b"x")
    client = seaweedfs.client()
    assert client.head_object(Bucket=seaweed_store.bucket, Key=KEY)["ContentType"] == "application/json"
    assert client.head_object(Bucket=seaweed_store.bucket, Key="_tako/plain").get("ContentType") != \
        "application/json"
    memory = MemoryStore()
    memory.put_bytes(KEY, b"{}", "application/json")
    memory.put_bytes("_tako/plain", b"x")
    assert memory.content_types == {KEY: "application/json", "_tako/plain": None}


# ----- addressing -----

def test_default_addressing_is_virtual_hosted_and_force_path_style_is_path(
        seaweedfs: SeaweedFS, limited_bucket: str) -> None:
    port = seaweedfs.ports[3]
    with ForwardProxy(seaweedfs.endpoint) as proxy:
        for path_style in (False, True):
            store = S3Store(limited_bucket, seaweedfs.virtual_host_endpoint, "us-east-1",
                            seaweedfs.limited_access_key, seaweedfs.limited_secret_key,
                            force_path_style=path_style, max_retries=0, proxies={"http": proxy.url})
            store.put_bytes(KEY, b"{}", "application/json")
            assert store.get_bytes(KEY) == b"{}"
            store.delete(KEY)
            with pytest.raises(ObjectNotFound):
                store.get_bytes(KEY)
        seen = proxy.requests()
    virtual, path = seen[:4], seen[4:]
    assert [r.method for r in virtual] == ["PUT", "GET", "DELETE", "GET"]
    for request in virtual:
        assert request.host == f"{limited_bucket}.localhost:{port}"
        assert request.url == f"http://{limited_bucket}.localhost:{port}/{KEY}"
    assert [r.method for r in path] == ["PUT", "GET", "DELETE", "GET"]
    for request in path:
        assert request.host == f"localhost:{port}"
        assert request.url == f"http://localhost:{port}/{limited_bucket}/{KEY}"
    assert virtual[0].content_type == path[0].content_type == "application/json"


def test_client_addressing_settings() -> None:
    endpoint = "https://s3.example.com/base"
    virtual = S3Store("tako-bucket", endpoint, "auto", "id", "secret")
    assert virtual.client.meta.config.s3 == {"addressing_style": "virtual", "payload_signing_enabled": False}
    path = S3Store("tako-bucket", endpoint, "auto", "id", "secret", force_path_style=True)
    assert path.client.meta.config.s3 == {"addressing_style": "path", "payload_signing_enabled": False}
    assert virtual.presigned_get_url("_tako/x", 60).startswith("https://tako-bucket.s3.example.com/base/_tako/x?")
    assert path.presigned_get_url("_tako/x", 60).startswith("https://s3.example.com/base/tako-bucket/_tako/x?")
    # A name that cannot be a host label (Tako's requests to it would fail) goes path style.
    odd = S3Store("Odd_Bucket", "https://s3.example.com", "auto", "id", "secret")
    assert odd.presigned_get_url("_tako/x", 60).startswith("https://s3.example.com/Odd_Bucket/_tako/x?")


def test_an_ip_endpoint_needs_path_style() -> None:
    for endpoint in ("http://127.0.0.1:8333", "https://[::1]:9000", "https://10.0.0.5"):
        with pytest.raises(ConfigError) as info:
            S3Store("b", endpoint, "auto", "id", "secret")
        assert str(info.value) == (
            f"Storage endpoint {endpoint} is an IP address, which has no host name to put bucket 'b' in "
            "front of (virtual-hosted addressing, the default); set force_path_style = true for this "
            "storage.")
        S3Store("b", endpoint, "auto", "id", "secret", force_path_style=True)
