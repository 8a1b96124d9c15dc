"""Process groups: signal them, and wait until every member is gone (zombies do not count).

Each app process runs in its own session (``start_new_session=True``), so its pid is its group id
and the group holds everything it started.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from pathlib import Path

__all__ = ["signal_group", "terminate_groups"]

log = logging.getLogger(__name__)


def signal_group(pgid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to the process group; a group that is gone is not an error."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_gone(proc: subprocess.Popen[bytes]) -> bool:
    if proc.poll() is None:
        return False
    try:
        os.killpg(proc.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return not _live_members(proc.pid)


def _live_members(pgid: int) -> bool:
    """Whether a non-zombie process is in the group (zombies wait for a reaper and do not count)."""
    proc_root = Path("/proc")
    if not proc_root.is_dir():
        return True
    for entry in proc_root.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False


def _wait_gone(procs: list[subprocess.Popen[bytes]], deadline: float) -> list[subprocess.Popen[bytes]]:
    while True:
        procs = [p for p in procs if not _group_gone(p)]
        if not procs or time.monotonic() >= deadline:
            return procs
        time.sleep(0.02)


def terminate_groups(procs: list[subprocess.Popen[bytes]], timeout: float, kill_grace: float = 5.0) -> None:
    """SIGTERM each process's group, SIGKILL the groups still present after ``timeout`` seconds,
    then wait up to ``kill_grace`` more seconds for them to go. Never raises; logs what it kills."""
    for proc in procs:
        signal_group(proc.pid, signal.SIGTERM)
    left = _wait_gone(procs, time.monotonic() + timeout)
    for proc in left:
        log.warning("pid %d did not stop within %.1fs; sending SIGKILL", proc.pid, timeout)
        signal_group(proc.pid, signal.SIGKILL)
    for proc in _wait_gone(left, time.monotonic() + kill_grace):
        log.error("process group %d is still present after SIGKILL", proc.pid)
