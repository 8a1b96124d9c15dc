"""`tako demo` end to end, as a newcomer runs it: real SeaweedFS, real tako-server, real commands."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tako_backups.demo.seaweed import free_ports, port_free
from tests.support.tako_server import let_apps_reach


def _demo(*args: str, cwd: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TAKO_HOME", "SSH_AUTH_SOCK")}
    return subprocess.Popen([sys.executable, "-m", "tako_backups", "demo", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            stdin=subprocess.DEVNULL)


@pytest.mark.slow
def test_demo_runs_twice_and_cleans_up(tmp_path: Path) -> None:
    s3_port, server_port = free_ports(2, set())
    for run in range(2):
        work = tmp_path / f"run{run}"
        let_apps_reach(work)  # as root, tako-server runs the notes app as a uid of its own
        proc = _demo("--s3-port", str(s3_port), "--server-port", str(server_port), "--dir", str(work),
                     cwd=tmp_path)
        out, _ = proc.communicate(timeout=240)
        assert proc.returncode == 0, out
        for expected in ("$ tako deploy --env production --create-backup-key", "$ tako backups now --env "
                                                                               "production",
                         "$ tako backups list --env production", "$ tako backups status --env production",
                         "$ tako backups verify ", "Restored notes from b"):
            assert expected in out, f"missing {expected!r} in:\n{out}"
        backup_id = re.search(r"demo: (b\d+-[A-Za-z0-9_-]{8}) \(", out.split("$ tako backups now")[1])
        assert backup_id is not None
        assert f"Saved {work}/downloads/{backup_id.group(1)}.tar.zst.enc" in out
        deleted = re.search(r"  deleted (\d+) notes and (\d+) uploads\n", out)
        assert deleted is not None and int(deleted.group(1)) > 0, out
        notes = int(re.search(r"Data back: (\d+) notes", out).group(1))
        assert notes > 0
        assert "********" in out
        assert not re.search(r"--secret-access-key (?!'\*)", out.split("storages credentials")[1][:200])
        assert port_free(s3_port) and port_free(server_port), "servers must be stopped"


@pytest.mark.slow
def test_demo_refuses_a_taken_port(tmp_path: Path) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        proc = _demo("--server-port", str(port), "--s3-port", str(free_ports(1, set())[0]), cwd=tmp_path)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert (f"Port {port} on 127.0.0.1 is already in use (tako-server); pass --server-port to choose "
            "another.") in out


@pytest.mark.slow
def test_demo_cleans_up_after_ctrl_c(tmp_path: Path) -> None:
    s3_port, server_port = free_ports(2, set())
    work = tmp_path / "w"
    proc = _demo("--s3-port", str(s3_port), "--server-port", str(server_port), "--dir", str(work),
                 cwd=tmp_path)
    assert proc.stdout is not None
    seen = []
    deadline = time.monotonic() + 120
    for line in proc.stdout:
        seen.append(line)
        if "$ tako deploy" in line or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, "".join(seen) + rest
    deadline = time.monotonic() + 15
    while not (port_free(s3_port) and port_free(server_port)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert port_free(s3_port) and port_free(server_port)
    apps = subprocess.run(["pgrep", "-f", str(work)], capture_output=True, text=True).stdout.split()
    assert apps == [], "the notes app and servers must be gone"
