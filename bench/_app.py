"""An app that answers HTTP on loopback, run by tako-server, and a probe that sees it go down.

The bench deploys the app with this runtime, so a restore stops and starts a real process. The
probe asks it every few milliseconds while a restore runs; the downtime the bench reports is the
longest gap between two answers (app stopped -> app answering again), next to the server's own
``downtime_seconds`` (app stopped -> its processes running again).
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from typing import Any

from tests.support.tako_server import APP_PYTHON

APP_CODE = """
import http.server, sys
class Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Ok).serve_forever()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def runtime(port: int) -> dict[str, Any]:
    """The deploy's ``runtime``: one instance of the answering app on ``port``."""
    return {"start": [APP_PYTHON, "-c", APP_CODE, str(port)], "instances": 1}


def answers(port: int, timeout: float = 0.5) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/")
        return conn.getresponse().read() == b"ok"
    except OSError:
        return False
    finally:
        conn.close()


def wait_answering(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not answers(port):
        if time.monotonic() > deadline:
            raise SystemExit(f"the bench app on port {port} does not answer")
        time.sleep(0.05)


class AnswerProbe:
    """Polls the app every ``interval`` seconds while in use; ``longest_gap`` is the longest time
    between two answers (a gap still open at the end counts up to the end)."""

    def __init__(self, port: int, interval: float = 0.005) -> None:
        self.port, self.interval = port, interval
        self.longest_gap = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-answers", daemon=True)

    def __enter__(self) -> AnswerProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.is_set():
            if answers(self.port):
                now = time.monotonic()
                self.longest_gap = max(self.longest_gap, now - last)
                last = now
            time.sleep(self.interval)
        self.longest_gap = max(self.longest_gap, time.monotonic() - last)
