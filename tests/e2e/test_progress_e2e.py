"""Progress a person can watch (issue 14): a real `tako-server serve` reports what a running backup
does (``operation_progress``), and the CLI draws it as a bar on a terminal and prints exactly
its JSON with ``--json``. The bucket is SeaweedFS behind a fault proxy that slows every archive
part down, so the backup runs for seconds."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tako_backups.remote.signing import FileSigner
from tests.reliability.faultproxy import Fault, FaultProxy
from tests.server.helpers import binding, storage
from tests.support.developer import ROOT, Developer, enter_developer
from tests.support.s3_servers import SeaweedFS
from tests.support.tako_server import RunningServer

pytestmark = pytest.mark.slow

BIG = 80 << 20  # five parts of 16 MiB, two at a time, each held 1.5 s by the proxy


@pytest.fixture
def proxy(seaweedfs: SeaweedFS) -> Iterator[FaultProxy]:
    running = FaultProxy(seaweedfs.endpoint).start()
    running.add(Fault("UploadPart", "delay", key=r"\.tar\.zst\.enc$", seconds=1.5, times=None))
    yield running
    running.stop()


def big_file(live_app: Path) -> None:
    live_app.mkdir(parents=True, exist_ok=True)
    with open(live_app / "big.bin", "wb") as out:
        for _ in range(BIG >> 20):
            out.write(os.urandom(1 << 20))


def test_a_progress_poll_during_a_real_backup_sees_bytes_grow(
        la: RunningServer, signer: FileSigner, seaweedfs: SeaweedFS, bucket: str, proxy: FaultProxy) -> None:
    app = "watched/production"
    settings = binding(storage(bucket=bucket, endpoint=proxy.endpoint, access_key=seaweedfs.access_key,
                               secret_key=seaweedfs.secret_key))
    with la.client(signer) as client:
        client.call("deploy", {"app": app, "backup": settings.to_dict(), "runtime": None})
        assert client.call("operation_progress", {"app": app}) is None
    big_file(la.data_dir / "apps" / "watched" / "production" / "data" / "app")
    done: dict[str, Any] = {}

    def back_up() -> None:
        with la.client(signer) as client:
            done["info"] = client.call("backup_now", {"app": app, "backup": None})

    running = threading.Thread(target=back_up)
    running.start()
    seen: list[dict[str, Any]] = []
    with la.client(signer) as client:
        while running.is_alive():
            progress = client.call("operation_progress", {"app": app})
            if progress is not None:
                seen.append(progress)
            time.sleep(0.2)
        running.join()
        assert client.call("operation_progress", {"app": app}) is None
    assert done["info"]["size_bytes"] > BIG
    uploading = [p for p in seen if p["phase"] == "archive+upload"]
    assert {p["operation"] for p in seen} == {"backup"}
    grown = [p["bytes_done"] for p in uploading]
    assert len(set(grown)) >= 3 and grown == sorted(grown), grown  # bytes grow while it runs
    assert 0 <= grown[0] < grown[-1] <= BIG
    assert any(p["bytes_per_second"] > 0 for p in uploading)


@pytest.fixture
def dev(tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch, la: RunningServer, bucket: str,
        seaweedfs: SeaweedFS, proxy: FaultProxy) -> Developer:
    developer = enter_developer(tmp_path, home, monkeypatch)
    developer.write_servers({"la": la})
    slow = SimpleNamespace(endpoint=proxy.endpoint)
    developer.write_project("drawn", ["la"], slow, bucket)  # type: ignore[arg-type]
    made = developer.tako("storages", "credentials", "backups", "--env", "production", "--access-key-id",
                          seaweedfs.access_key, "--secret-access-key", seaweedfs.secret_key,
                          "--expires-on", "never")
    assert made.exit_code == 0, made.output
    first = developer.tako("backups", "now", "--env", "production")  # makes the backup key
    assert first.exit_code == 0, first.output
    big_file(la.data_dir / "apps" / "drawn" / "production" / "data" / "app")
    return developer


def on_a_terminal(dev: Developer, *args: str) -> tuple[int, str]:
    """Run `tako` with stdin, stdout and stderr on a pseudo-terminal; (exit code, what it drew)."""
    env = {**os.environ, **dev.env(), "PYTHONPATH": str(ROOT), "TERM": "xterm-256color", "COLUMNS": "120",
           "TAKO_PROGRESS": "auto"}
    env.pop("SSH_AUTH_SOCK", None)
    main, side = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "tako_backups", *args], cwd=dev.app_dir, env=env,
                               stdin=side, stdout=side, stderr=side)
    os.close(side)
    drawn = bytearray()
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the terminal closed with the process
            break
        if not chunk:
            break
        drawn += chunk
    os.close(main)
    return process.wait(timeout=120), drawn.decode("utf-8", "replace")


def test_the_cli_draws_a_bar_per_server_on_a_terminal(dev: Developer) -> None:
    code, drawn = on_a_terminal(dev, "backups", "now", "--env", "production")
    assert code == 0, drawn
    assert "la: archive+upload" in drawn and "━" in drawn  # rich's bar, with the phase
    assert "MiB" in drawn  # bytes done of the running phase


def test_with_json_the_cli_prints_exactly_its_json(dev: Developer) -> None:
    result = dev.tako_process("backups", "now", "--env", "production", "--json")
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout)
    assert result.stdout == json.dumps(reply) + "\n"
    assert reply["ok"] is True and reply["results"][0]["server"] == "la"
    assert result.stderr == ""  # no bar, no progress line
