"""A webhook receiver for tests: a plain stdlib HTTP server on 127.0.0.1 that records every
request (path, headers, body, time) and answers with the statuses it is given, then 200."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tako_backups.server.notify import verify_signature

TOKEN = "T000-B000-hook-token"


class Receiver:
    """An HTTP server on 127.0.0.1 that records every request and answers with ``statuses`` in turn
    (then 200), after ``delay`` seconds."""

    def __init__(self, port: int = 0, statuses: list[int] | None = None, delay: float = 0.0) -> None:
        self.requests: list[dict[str, Any]] = []
        self.statuses = list(statuses or [])
        self.delay = delay
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 -- http.server's name
                body = self.rfile.read(int(self.headers["content-length"]))
                time.sleep(receiver.delay)
                receiver.requests.append({"path": self.path, "headers": dict(self.headers.items()),
                                          "body": body, "at": time.time()})
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/{TOKEN}?key={TOKEN}"

    def events(self, secret: str | None = None) -> list[dict[str, Any]]:
        """The JSON bodies received so far; with ``secret``, only those whose HMAC signature and
        timestamp check out as a receiver would check them (at the time they arrived)."""
        found = []
        for request in list(self.requests):
            headers = {k.lower(): v for k, v in request["headers"].items()}
            if secret is not None and not verify_signature(
                    secret, headers.get("x-tako-timestamp", ""), request["body"],
                    headers.get("x-tako-signature", ""), now=request["at"]):
                continue
            found.append(json.loads(request["body"]))
        return found

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
