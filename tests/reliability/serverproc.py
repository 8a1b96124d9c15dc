"""Start, restart and kill a real `tako-server serve` subprocess on 127.0.0.1."""

from __future__ import annotations

from tests.support.tako_server import RunningServer, restart_server, start_server


def kill_9(server: RunningServer) -> None:
    from tests.reliability.checks import FIGURES

    server.process.kill()
    server.process.wait(timeout=10)
    FIGURES["kill -9 crashes"] += 1


__all__ = ["RunningServer", "kill_9", "restart_server", "start_server"]
