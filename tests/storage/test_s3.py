"""S3Store behaviour beyond the shared contract: errors, retries, secrets, concurrency and memory."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import os
import socket
import threading
import traceback
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ConnectionClosedError, EndpointConnectionError

from tako_backups.errors import BucketNotFound, ConfigError, ObjectNotFound, StorageAuthError, StorageError
from tako_backups.models import StorageBinding
from tako_backups.storage.s3 import S3Store
from tests.support.s3_servers import MotoServer, SeaweedFS

MIB = 1024 * 1024
WRONG_SECRET = "wrong-secret-" + "Zq8" * 10


def record_operations(store: S3Store) -> list[str]:
    """The names of the S3 operations the store's client calls from now on."""
    calls: list[str] = []
    store.client.meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))
    return calls


def full_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)) + repr(exc.args)


# ----- credentials and buckets -----

def test_wrong_secret_is_an_auth_error_without_the_secret(seaweedfs: SeaweedFS,
                                                          seaweed_store: S3Store) -> None:
    seaweed_store.put_bytes("k", b"v")
    bad = S3Store(seaweed_store.bucket, seaweedfs.endpoint, "us-east-1", seaweedfs.access_key, WRONG_SECRET,
                  force_path_style=True, max_retries=0)
    with pytest.raises(StorageAuthError) as info:
        bad.get_bytes("k")
    assert str(info.value) == (
        f"Storage endpoint {seaweedfs.endpoint} refused the credentials (SignatureDoesNotMatch) while trying "
        f"to read 'k': check the access key id and secret for storage bucket '{seaweed_store.bucket}'.")
    assert info.value.__cause__ is None and info.value.__context__ is None
    for secret in (WRONG_SECRET, seaweedfs.secret_key, seaweedfs.access_key):
        assert secret not in full_text(info.value)
    with pytest.raises(StorageAuthError), bad.open_writer("big") as writer:
        writer.write(b"x" * (6 * MIB))
        writer.commit()
    assert seaweed_store.head("big") is None


def test_unknown_access_key_is_an_auth_error(seaweedfs: SeaweedFS, seaweed_store: S3Store) -> None:
    bad = S3Store(seaweed_store.bucket, seaweedfs.endpoint, "us-east-1", "AKIANOSUCHKEY",
                  seaweedfs.secret_key, force_path_style=True, max_retries=0)
    with pytest.raises(StorageAuthError) as info:
        bad.put_bytes("k", b"v")
    assert "(InvalidAccessKeyId) while trying to upload 'k'" in str(info.value)
    assert seaweedfs.secret_key not in full_text(info.value)


def test_missing_bucket_is_bucket_not_found(seaweedfs: SeaweedFS, moto_server: MotoServer) -> None:
    for server, action in ((seaweedfs, "get"), (seaweedfs, "list"), (moto_server, "put")):
        store = S3Store("no-such-bucket-here", server.endpoint, "us-east-1", server.access_key,
                        server.secret_key, force_path_style=True)
        with pytest.raises(BucketNotFound) as info:
            if action == "get":
                store.get_bytes("k")
            elif action == "list":
                list(store.list("a/"))
            else:
                store.put_bytes("k", b"v")
        assert str(info.value) == f"Bucket 'no-such-bucket-here' does not exist at {server.endpoint}."


def test_missing_object_message_names_key_bucket_and_endpoint(seaweed_store: S3Store) -> None:
    with pytest.raises(ObjectNotFound) as info:
        seaweed_store.open_read("_tako/backups/x.json")
    assert str(info.value) == (f"Object '_tako/backups/x.json' does not exist in bucket "
                               f"'{seaweed_store.bucket}' at {seaweed_store.endpoint}.")


def test_repr_and_str_hold_no_secret() -> None:
    store = S3Store("b", "https://s3.example.com", "auto", "AKIAEXAMPLEID", "s3cr3t-value-xyz")
    for text in (repr(store), str(store), repr(store.open_writer("k"))):
        assert "s3cr3t-value-xyz" not in text and "AKIAEXAMPLEID" not in text
    assert repr(store) == "S3Store(bucket='b', endpoint='https://s3.example.com', region='auto')"


# ----- endpoint failures -----

class _Always500(http.server.BaseHTTPRequestHandler):
    hits = 0

    def _fail(self) -> None:
        type(self).hits += 1
        body = b"<Error><Code>InternalError</Code><Message>boom\nsecond line</Message></Error>"
        self.send_response(500)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _fail

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def failing_endpoint() -> Iterator[str]:
    _Always500.hits = 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Always500)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_server_errors_are_retried_then_one_line(failing_endpoint: str) -> None:
    store = S3Store("b", failing_endpoint, "us-east-1", "id", "secret", force_path_style=True, max_retries=2)
    with pytest.raises(StorageError) as info:
        store.get_bytes("k")
    assert _Always500.hits == 3  # the first try and two retries
    assert str(info.value) == (f"Storage request failed while trying to read 'k' at storage endpoint "
                               f"{failing_endpoint}: InternalError (HTTP 500).")
    assert "\n" not in str(info.value)
    assert info.value.__context__ is None


def test_unreachable_endpoint_names_it(unused_port: int) -> None:
    endpoint = f"http://127.0.0.1:{unused_port}"
    store = S3Store("b", endpoint, "us-east-1", "id", "secret", force_path_style=True, max_retries=1)
    with pytest.raises(StorageError) as info:
        store.put_bytes("k", b"v")
    assert str(info.value) == (f"Cannot connect to storage endpoint {endpoint} while trying to upload 'k'; "
                               "check the endpoint URL and that the service is running.")
    with pytest.raises(StorageError) as info:
        store.head("k")
    assert str(info.value).startswith(f"Cannot connect to storage endpoint {endpoint} while trying to "
                                      "check 'k';")
    with pytest.raises(StorageError) as info:
        list(store.list("a/"))
    assert str(info.value).startswith(f"Cannot connect to storage endpoint {endpoint} while trying to "
                                      "list 'a/';")


@pytest.fixture
def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ----- configuration -----

def test_client_configuration() -> None:
    store = S3Store("b", "http://127.0.0.1:9", "auto", "id", "secret", force_path_style=True,
                    max_concurrency=6)
    config = store.client.meta.config
    assert config.retries == {"mode": "standard", "total_max_attempts": 6}
    assert config.signature_version == "s3v4"
    assert config.s3 == {"addressing_style": "path", "payload_signing_enabled": False}
    assert config.request_checksum_calculation == "when_required"
    assert config.response_checksum_validation == "when_required"
    assert config.max_pool_connections >= 8
    assert store.client.meta.region_name == "auto"
    assert store.part_size == 16 * MIB


@pytest.mark.parametrize(("endpoint", "region"), [
    ("https://s3.eu-west-1.amazonaws.com", "eu-west-1"),
    ("https://s3.cn-north-1.amazonaws.com.cn", "cn-north-1"),
    ("https://s3.us-gov-west-1.amazonaws.com", "us-gov-west-1"),
    ("https://acct.r2.cloudflarestorage.com", "auto"),
])
def test_clients_read_only_s3s_endpoint_entries_and_sign_as_stock_botocore(endpoint: str,
                                                                          region: str) -> None:
    """The session keeps S3's part of botocore's endpoint table (4 MB less in tako-server); a
    client made from it resolves partitions and signs exactly as one from a stock session."""
    from urllib.parse import parse_qs, urlsplit

    import botocore.session

    from tako_backups.storage import s3

    endpoints = s3.s3_only_session().get_component("data_loader").load_data("endpoints")
    assert {name for p in endpoints["partitions"] for name in p["services"]} == {"s3"}
    assert len(endpoints["partitions"]) >= 3

    ours = S3Store("b", endpoint, region, "AKIDEXAMPLE", "secret").client
    stock = botocore.session.Session().create_client(
        "s3", endpoint_url=endpoint, region_name=region, config=ours.meta.config,
        aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret")
    assert ours.meta.partition == stock.meta.partition
    assert ours.meta.endpoint_url == stock.meta.endpoint_url

    def presigned(client: Any) -> tuple[str, dict[str, list[str]]]:
        url = urlsplit(client.generate_presigned_url("get_object", Params={"Bucket": "b", "Key": "k"},
                                                     ExpiresIn=60))
        query = {k: v for k, v in parse_qs(url.query).items() if k not in ("X-Amz-Date", "X-Amz-Signature")}
        return url.netloc + url.path, query

    assert presigned(ours) == presigned(stock)


def test_bad_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError) as info:
        S3Store("b", "https://s3.example.com", "auto", "id", "secret", part_size=MIB)
    assert str(info.value) == "S3 part size 1048576 is below the minimum of 5242880 bytes (5 MiB)."
    with pytest.raises(ConfigError) as info:
        S3Store("b", "http://s3.example.com", "auto", "id", "secret")
    assert "must use https://" in str(info.value)
    with pytest.raises(ConfigError) as info:
        S3Store(" ", "https://s3.example.com", "auto", "id", "secret")
    assert str(info.value) == "Storage bucket name is empty; set the bucket in the storage settings."
    with pytest.raises(ConfigError) as info:
        S3Store("b", "https://s3.example.com", "auto", "id", "secret").presigned_get_url("k", 0)
    assert str(info.value) == "Download link lifetime must be between 1 and 604800 seconds, not 0."


def test_from_binding_with_region_auto_works_against_seaweedfs(seaweedfs: SeaweedFS,
                                                              seaweed_store: S3Store) -> None:
    binding = StorageBinding(bucket=seaweed_store.bucket, endpoint=seaweedfs.endpoint + "/", region="auto",
                             access_key_id=seaweedfs.access_key, secret_access_key=seaweedfs.secret_key,
                             force_path_style=True)
    store = S3Store.from_binding(binding, part_size=5 * MIB)
    assert (store.bucket, store.endpoint, store.region, store.part_size) == (
        seaweed_store.bucket, seaweedfs.endpoint, "auto", 5 * MIB)
    store.put_bytes("auto.txt", b"region auto")
    assert seaweed_store.get_bytes("auto.txt") == b"region auto"


# ----- the writer -----

def test_small_objects_take_one_put_and_large_ones_a_multipart_upload(seaweedfs: SeaweedFS,
                                                                      make_store: Callable[..., Any]) -> None:
    store = make_store("seaweedfs", part_size=5 * MIB)
    calls = record_operations(store)
    with store.open_writer("small") as writer:
        writer.write(b"a" * (5 * MIB - 1))
        writer.commit()
    assert calls == ["PutObject"]
    calls.clear()
    with store.open_writer("large") as writer:
        writer.write(os.urandom(11 * MIB))
        writer.commit()
    assert calls == ["CreateMultipartUpload", "UploadPart", "UploadPart", "UploadPart",
                     "CompleteMultipartUpload"]
    etag = seaweedfs.client().head_object(Bucket=store.bucket, Key="large")["ETag"]
    assert etag.strip('"').endswith("-3")


def test_bodies_go_up_unsigned_as_tako_sends_them(make_store: Callable[..., Any]) -> None:
    """Parts and single PUTs carry UNSIGNED-PAYLOAD (no SHA-256 pass over each body before it is
    sent), which SeaweedFS, with authentication on, accepts; the object comes back whole."""
    store = make_store("seaweedfs", part_size=5 * MIB)
    sent: list[tuple[str, bytes]] = []
    store.client.meta.events.register(
        "before-send.s3", lambda request, **_: sent.append(
            (request.method, request.headers.get("X-Amz-Content-SHA256", b""))))
    body = os.urandom(11 * MIB)
    with store.open_writer("unsigned") as writer:
        writer.write(body)
        writer.commit()
    store.put_bytes("unsigned.json", b"{}")
    puts = [payload for method, payload in sent if method == "PUT"]
    assert len(puts) == 4  # three parts and the JSON
    assert set(puts) == {b"UNSIGNED-PAYLOAD"}
    assert hashlib.sha256(store.get_bytes("unsigned")).digest() == hashlib.sha256(body).digest()
    assert store.get_bytes("unsigned.json") == b"{}"


def test_parts_upload_concurrently_within_the_limit(make_store: Callable[..., Any]) -> None:
    store = make_store("seaweedfs", part_size=5 * MIB, max_concurrency=3)
    lock, state = threading.Lock(), {"now": 0, "most": 0}

    def started(**_: Any) -> None:
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])

    def finished(**_: Any) -> None:
        with lock:
            state["now"] -= 1

    store.client.meta.events.register("before-send.s3.UploadPart", started)
    store.client.meta.events.register("after-call.s3.UploadPart", finished)
    data = os.urandom(MIB)
    with store.open_writer("parallel") as writer:
        for _ in range(40):
            writer.write(data)
        writer.commit()
    assert 2 <= state["most"] <= 3
    assert store.head("parallel") is not None and store.head("parallel").size == 40 * MIB


def test_a_failed_part_aborts_the_upload(make_store: Callable[..., Any]) -> None:
    store = make_store("seaweedfs", part_size=5 * MIB, max_concurrency=2)

    def fail_part_two(params: dict[str, Any], **_: Any) -> None:
        if params.get("PartNumber") == 2:
            raise EndpointConnectionError(endpoint_url=store.endpoint)

    store.client.meta.events.register("before-parameter-build.s3.UploadPart", fail_part_two)
    writer = store.open_writer("broken")
    with pytest.raises(StorageError) as info, writer:
        for _ in range(5):
            writer.write(os.urandom(3 * MIB))
        writer.commit()
    assert str(info.value) == (f"Cannot connect to storage endpoint {store.endpoint} while trying to upload "
                               "part 2 of 'broken'; check the endpoint URL and that the service is running.")
    assert store.head("broken") is None
    assert store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []) == []


def test_writer_memory_stays_bounded(make_store: Callable[..., Any]) -> None:
    part, concurrency = 5 * MIB, 4
    store = make_store("seaweedfs", part_size=part, max_concurrency=concurrency)
    block = bytearray(os.urandom(MIB))
    digest = hashlib.sha256()
    tracemalloc.start()
    try:
        with store.open_writer("stream-64m") as writer:
            for i in range(64):
                block[:8] = i.to_bytes(8, "big")
                digest.update(block)
                writer.write(memoryview(block))
            size = writer.commit()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert size == 64 * MIB
    assert part < peak < (concurrency + 2) * part + 4 * MIB
    check = hashlib.sha256()
    with store.open_read("stream-64m") as reader:
        while chunk := reader.read(MIB):
            check.update(chunk)
    assert check.hexdigest() == digest.hexdigest()


def open_spool_files(spool: Path) -> list[str]:
    """This process's open files in ``spool`` (unnamed ones show as ``spool/#123 (deleted)``)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith(str(spool) + "/"):
                found.append(target)
    return found


def test_spooled_parts_wait_in_unnamed_files_not_in_memory(make_store: Callable[..., Any],
                                                           tmp_path: Path) -> None:
    store = make_store("seaweedfs", part_size=5 * MIB, spool_dir=tmp_path)
    seen: list[tuple[list[str], int]] = []
    store.client.meta.events.register(
        "before-send.s3.UploadPart",
        lambda **_: seen.append((os.listdir(tmp_path), len(open_spool_files(tmp_path)))))
    block = bytearray(os.urandom(MIB))
    digest = hashlib.sha256()
    tracemalloc.start()
    try:
        with store.open_writer("spooled-32m") as writer:
            for i in range(32):
                block[:8] = i.to_bytes(8, "big")
                digest.update(block)
                writer.write(memoryview(block))
            writer.commit()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(seen) == 7  # 6 parts of 5 MiB and the last of 2 MiB, each sent from its file
    assert all(names == [] and 1 <= files <= 2 for names, files in seen)  # no name, ever
    assert peak < 5 * MIB  # no part was ever held in memory (one part in memory is 5 MiB)
    assert open_spool_files(tmp_path) == [] and os.listdir(tmp_path) == []
    assert hashlib.sha256(store.get_bytes("spooled-32m")).hexdigest() == digest.hexdigest()


def test_a_spooled_part_is_sent_again_whole_after_a_broken_send(make_store: Callable[..., Any],
                                                                tmp_path: Path) -> None:
    store = make_store("seaweedfs", part_size=5 * MIB, spool_dir=tmp_path)
    broken: list[int] = []

    def break_part_two_once(request: Any, **_: Any) -> None:
        if "partNumber=2" in request.url and not broken:
            broken.append(len(request.body.read(100_000)))  # part of the body went out
            raise ConnectionClosedError(endpoint_url=store.endpoint)

    store.client.meta.events.register("before-send.s3.UploadPart", break_part_two_once)
    data = os.urandom(12 * MIB)
    with store.open_writer("retried") as writer:
        writer.write(data)
        writer.commit()
    assert broken == [100_000]
    assert hashlib.sha256(store.get_bytes("retried")).digest() == hashlib.sha256(data).digest()
    assert open_spool_files(tmp_path) == []


def test_a_spool_folder_that_cannot_take_a_part_is_a_one_line_storage_error(
        make_store: Callable[..., Any], tmp_path: Path) -> None:
    missing = tmp_path / "gone"
    store = make_store("seaweedfs", part_size=5 * MIB, spool_dir=missing)
    with pytest.raises(StorageError) as info, store.open_writer("nowhere") as writer:
        writer.write(b"x")
    assert str(info.value) == (f"Cannot keep an upload's part in {missing}: No such file or directory; "
                               "free space there (or make the folder) and try again.")
    assert store.head("nowhere") is None


def test_an_aborted_spooled_upload_closes_its_files(make_store: Callable[..., Any], tmp_path: Path) -> None:
    store = make_store("seaweedfs", part_size=5 * MIB, max_concurrency=2, spool_dir=tmp_path)
    writer = store.open_writer("dropped")
    writer.write(os.urandom(12 * MIB))
    assert open_spool_files(tmp_path)  # the part being filled, at least
    writer.abort()
    assert open_spool_files(tmp_path) == [] and os.listdir(tmp_path) == []
    assert store.head("dropped") is None


def test_a_broken_download_stream_is_a_storage_error() -> None:
    from botocore.exceptions import ReadTimeoutError, ResponseStreamingError

    from tako_backups.storage.s3 import _S3Reader

    class BrokenBody:
        def __init__(self, exc: Exception) -> None:
            self.exc, self.closed = exc, False

        def read(self, amount: int | None = None) -> bytes:
            raise self.exc

        def readinto(self, buffer: Any) -> int:
            raise self.exc

        def close(self) -> None:
            self.closed = True

    store = S3Store("b", "https://s3.example.com", "auto", "id", "secret")
    for exc in (ReadTimeoutError(endpoint_url="https://s3.example.com/b/k"),
                ResponseStreamingError(error="connection reset")):
        body = BrokenBody(exc)
        with _S3Reader(body, store.requests, "_tako/a.enc") as reader, pytest.raises(StorageError) as info:
            reader.read(1024)
        assert str(info.value) == ("The connection to storage endpoint https://s3.example.com broke while "
                                   f"trying to read '_tako/a.enc' ({type(exc).__name__}).")
        assert info.value.__context__ is None
        assert body.closed
