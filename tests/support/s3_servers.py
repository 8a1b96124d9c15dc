"""Real S3 servers for tests, on 127.0.0.1 only: SeaweedFS (`weed mini`) and moto.

SeaweedFS is started by the demo's launcher (``tako_backups.demo.seaweed.spawn_weed``): bound to
127.0.0.1 with telemetry off (it is on by default), random free ports for each of its servers (each
also opens port + 10000 for gRPC), and SigV4 authentication on with two identities (an
``-s3.config`` file): the admin (every action) and a least-privilege one limited to ``Read`` and
``Write`` on buckets named ``lim-*`` -- it may get, put, head and delete objects and run multipart
uploads there, and SeaweedFS refuses it ListObjects (AccessDenied), as a bucket does to
credentials with only Tako's GetObject/PutObject/DeleteObject. It also answers virtual-hosted
requests for ``{bucket}.localhost`` (``-s3.domainName=localhost``; reach it through
:mod:`tests.forward_proxy`). It is ready only once a real PUT + GET works: right after start a
read can fail while its volume server registers. moto runs in this process: fast, but it checks
no signatures and keeps data in memory, so auth and restart behaviour are proven on SeaweedFS.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from tako_backups.demo.seaweed import LOOPBACK, WEED_LOG, LocalS3, free_ports, spawn_weed

READY_TIMEOUT = 60.0
LIMITED_BUCKETS = "lim-"
"""Buckets whose names start with this are the ones the limited identity may read and write."""
VIRTUAL_HOST_DOMAIN = "localhost"
STORE_KINDS = ["memory", "moto", "seaweedfs"]
S3_KINDS = ["moto", "seaweedfs"]


def s3_client(endpoint: str, access_key: str, secret_key: str) -> Any:
    """A plain boto3 client for test setup (buckets, multipart listings), path style, few retries."""
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id=access_key, aws_secret_access_key=secret_key,
        config=Config(s3={"addressing_style": "path"}, retries={"mode": "standard", "max_attempts": 2},
                      connect_timeout=5, read_timeout=30,
                      request_checksum_calculation="when_required",
                      response_checksum_validation="when_required"),
    )


class BucketLeases:
    """A server's boto3 client, and buckets handed to tests and, once emptied, handed out again.

    A fresh SeaweedFS bucket costs about a second on its first large write (a new collection grows
    its volumes), so tests lease warm, empty buckets instead of making new ones each time.
    """

    endpoint: str
    access_key: str
    secret_key: str
    _client: Any
    _free: list[str]

    def client(self) -> Any:
        """A boto3 client for this server (made once; boto3 clients are thread-safe)."""
        if self._client is None:
            self._client = s3_client(self.endpoint, self.access_key, self.secret_key)
        return self._client

    def make_bucket(self, name: str) -> str:
        """Create bucket ``name`` (idempotent) and return the name."""
        client = self.client()
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
            client.create_bucket(Bucket=name)
        return name

    def lease_bucket(self, prefix: str = "t-") -> str:
        """An empty bucket for one test, named ``{prefix}...``; give it back with
        :meth:`release_bucket`."""
        for name in self._free:
            if name.startswith(prefix):
                self._free.remove(name)
                return name
        return self.make_bucket(f"{prefix}{uuid.uuid4().hex[:16]}")

    def release_bucket(self, name: str) -> None:
        """Empty ``name`` (objects and unfinished uploads) and keep it for the next lease."""
        client = self.client()
        for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=name):
            for upload in page.get("Uploads", ()):
                client.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
            for item in page.get("Contents", ()):
                client.delete_object(Bucket=name, Key=item["Key"])
        left = client.list_objects_v2(Bucket=name).get("KeyCount", 0)
        uploads = client.list_multipart_uploads(Bucket=name).get("Uploads", [])
        if left == 0 and not uploads:
            self._free.append(name)

    def leased_bucket(self, prefix: str = "t-") -> Iterator[str]:
        """For a fixture (``yield from server.leased_bucket()``): lease, hand over, release."""
        name = self.lease_bucket(prefix)
        yield name
        self.release_bucket(name)


@dataclass
class SeaweedFS(LocalS3, BucketLeases):
    """A running `weed mini` with authentication on (the demo's launcher); stop() ends it.

    ``stop`` (from :class:`LocalS3`) waits 6 s after SIGTERM, then kills: a clean shutdown takes
    about 2.5 s, but weed 4.48 sometimes hangs in its volume server's shutdown while a volume grow
    is pending, so the grace period is short (the data is scratch).
    """

    workdir: Path
    limited_access_key: str = field(default="", repr=False)
    limited_secret_key: str = field(default="", repr=False)
    _client: Any = field(default=None, init=False, repr=False)
    _free: list[str] = field(default_factory=list, init=False, repr=False)

    @property
    def virtual_host_endpoint(self) -> str:
        """The endpoint for virtual-hosted requests (``{bucket}.localhost:{port}``)."""
        return f"http://{VIRTUAL_HOST_DOMAIN}:{self.ports[3]}"

    def lease_limited_bucket(self) -> str:
        """An empty bucket the limited identity may read and write but not list."""
        return self.lease_bucket(LIMITED_BUCKETS)

    def limited_client(self) -> Any:
        """A boto3 client with the limited identity's keys."""
        return s3_client(self.endpoint, self.limited_access_key, self.limited_secret_key)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def identities_config(admin: tuple[str, str], limited: tuple[str, str]) -> dict[str, Any]:
    """SeaweedFS's ``-s3.config``: the admin, and the identity limited to Read and Write on
    ``lim-*`` buckets (no List)."""
    return {"identities": [
        {"name": "admin", "credentials": [{"accessKey": admin[0], "secretKey": admin[1]}],
         "actions": ["Admin", "Read", "Write", "List", "Tagging"]},
        {"name": "limited", "credentials": [{"accessKey": limited[0], "secretKey": limited[1]}],
         "actions": [f"Read:{LIMITED_BUCKETS}*", f"Write:{LIMITED_BUCKETS}*"]},
    ]}


def start_seaweedfs(workdir: Path) -> SeaweedFS:
    """Start `weed mini` on loopback ports with fresh random credentials for an admin and a
    limited identity; return once a real PUT + GET round trip works. Raises RuntimeError (with the
    log tail) after READY_TIMEOUT."""
    workdir.mkdir(parents=True, exist_ok=True)
    ports = free_ports(5, set())
    access_key, secret_key = "tako" + secrets.token_hex(8), secrets.token_urlsafe(30)
    limited = "lim" + secrets.token_hex(8), secrets.token_urlsafe(30)
    config = workdir / "s3-identities.json"
    config.write_text(json.dumps(identities_config((access_key, secret_key), limited)))
    config.chmod(0o600)
    process = spawn_weed(workdir, ports, access_key, secret_key,
                         [f"-s3.config={config}", f"-s3.domainName={VIRTUAL_HOST_DOMAIN}"])
    server = SeaweedFS(process, f"http://{LOOPBACK}:{ports[3]}", access_key, secret_key, workdir / WEED_LOG,
                       ports, workdir, *limited)
    try:
        wait_ready(server)
    except BaseException:
        server.stop()
        raise
    return server


def wait_ready(server: SeaweedFS) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    last = "not started"
    client = s3_client(server.endpoint, server.access_key, server.secret_key)
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"weed exited with {server.process.returncode}:\n{server.log_tail()}")
        try:
            with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
                client.create_bucket(Bucket="tako-probe")
            client.put_object(Bucket="tako-probe", Key="probe", Body=b"ready")
            if client.get_object(Bucket="tako-probe", Key="probe")["Body"].read() == b"ready":
                return
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.2)
    raise RuntimeError(f"SeaweedFS at {server.endpoint} not ready after {READY_TIMEOUT:.0f} s "
                       f"(last error: {last}):\n{server.log_tail()}")


@dataclass
class MotoServer(BucketLeases):
    """moto's S3 in a thread of this process (no signature checks, data in memory)."""

    server: Any
    endpoint: str
    access_key: str = "testing"
    secret_key: str = field(default="testing", repr=False)
    _client: Any = field(default=None, init=False, repr=False)
    _free: list[str] = field(default_factory=list, init=False, repr=False)

    def stop(self) -> None:
        self.server.stop()


def start_moto() -> MotoServer:
    """Start moto's threaded S3 server on a free loopback port."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address=LOOPBACK, port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return MotoServer(server, f"http://{host}:{port}")
