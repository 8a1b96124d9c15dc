"""A fault-injecting S3 reverse proxy on 127.0.0.1, for putting SeaweedFS behind bad networks.

Requests pass through unchanged (the Host header too, so SigV4 signatures still verify) unless a
:class:`Fault` rule matches the S3 operation, the object key and the part number. What a rule
can do:

- ``error``: answer ``status`` with an S3 XML ``<Error><Code>code</Code>`` without forwarding;
- ``reset``: read half of the request body, then reset the connection (nothing reaches S3);
- ``lose_reply``: forward the request (S3 applies it), then reset instead of answering;
- ``cut_body``: forward, answer with the full Content-Length but only half the body, then reset;
- ``delay``: wait ``seconds`` before forwarding (a slow service);
- ``hold``: read the whole request, then wait until :meth:`FaultProxy.release` and reset.

Every request is recorded in :attr:`FaultProxy.seen`. The first four actions make a request fail
and are counted in :attr:`FaultProxy.faults_injected`; ``delay`` and ``hold`` only make it wait (to
widen a race window or pin a crash point) and are counted apart, in :attr:`FaultProxy.slowdowns`.
"""

from __future__ import annotations

import http.client
import http.server
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

FAULTS = ("error", "reset", "lose_reply", "cut_body")
SLOWDOWNS = ("delay", "hold")
ACTIONS = FAULTS + SLOWDOWNS
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer",
              "upgrade", "expect"}


@dataclass
class Fault:
    """One rule. ``op`` is an S3 operation name (``UploadPart``, ``PutObject``, ...) or ``*``;
    ``key`` a regex searched in the object key; ``part`` a part number; ``times`` how often it
    fires (None: every time)."""

    op: str
    action: str
    key: str | None = None
    part: int | None = None
    times: int | None = 1
    status: int = 500
    code: str = "InternalError"
    seconds: float = 0.0
    fired: int = 0

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown fault action {self.action!r}")

    def matches(self, op: str, key: str, part: int | None) -> bool:
        if self.times is not None and self.fired >= self.times:
            return False
        if self.op not in ("*", op):
            return False
        if self.key is not None and not re.search(self.key, key):
            return False
        return self.part is None or self.part == part


@dataclass(frozen=True)
class Seen:
    op: str
    key: str
    part: int | None
    fault: str | None


def classify(method: str, path: str, query: dict[str, list[str]]) -> tuple[str, str, int | None]:
    """(S3 operation, object key, part number) of a path-style request."""
    _, _, rest = path.lstrip("/").partition("/")
    key = unquote(rest)
    part = int(query["partNumber"][0]) if "partNumber" in query else None
    if method == "PUT":
        op = "UploadPart" if "uploadId" in query else ("PutObject" if key else "CreateBucket")
    elif method == "POST":
        op = ("CreateMultipartUpload" if "uploads" in query else
              "CompleteMultipartUpload" if "uploadId" in query else "DeleteObjects")
    elif method == "GET":
        op = ("ListMultipartUploads" if "uploads" in query else
              "ListObjectsV2" if not key else "GetObject")
    elif method == "HEAD":
        op = "HeadObject" if key else "HeadBucket"
    elif method == "DELETE":
        op = "AbortMultipartUpload" if "uploadId" in query else "DeleteObject"
    else:
        op = method
    return op, key, part


class FaultProxy:
    """A threaded HTTP reverse proxy to ``upstream`` (``http://127.0.0.1:PORT``)."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        assert parts.hostname == "127.0.0.1", "loopback only"
        self.upstream = (parts.hostname, parts.port or 80)
        self.faults: list[Fault] = []
        self.seen: list[Seen] = []
        self.faults_injected = 0
        self.slowdowns = 0
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._stopping = threading.Event()
        handler = type("Handler", (_Handler,), {"proxy": self})
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._released.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def add(self, *faults: Fault) -> None:
        with self._lock:
            self.faults.extend(faults)

    def clear(self) -> None:
        """Drop every rule and let held requests go (they are reset)."""
        with self._lock:
            self.faults.clear()
        self.release()

    def release(self) -> None:
        self._released.set()

    def ops(self, op: str, key: str | None = None) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.op == op and (key is None or re.search(key, s.key))]

    def wait_for(self, op: str, key: str | None = None, count: int = 1, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.ops(op, key)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"the proxy saw no {op} {key or ''} within {timeout} s: "
                                     f"{[s.op for s in self.seen][-20:]}")
            time.sleep(0.01)

    def _pick(self, op: str, key: str, part: int | None) -> Fault | None:
        with self._lock:
            fault = next((f for f in self.faults if f.matches(op, key, part)), None)
            if fault is not None:
                fault.fired += 1
                if fault.action in SLOWDOWNS:
                    self.slowdowns += 1
                else:
                    self.faults_injected += 1
                if fault.action == "hold":
                    self._released.clear()
            self.seen.append(Seen(op, key, part, None if fault is None else fault.action))
            return fault


class _Handler(http.server.BaseHTTPRequestHandler):
    proxy: FaultProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _serve(self) -> None:
        url = urlsplit(self.path)
        op, key, part = classify(self.command, url.path, parse_qs(url.query, keep_blank_values=True))
        fault = self.proxy._pick(op, key, part)
        length = int(self.headers.get("Content-Length") or 0)
        action = fault.action if fault is not None else None
        if action == "reset":
            self.rfile.read(length // 2)
            return self._reset()
        body = self.rfile.read(length) if length else b""
        if fault is not None and action == "error":
            return self._error(fault, url.path)
        if fault is not None and action == "hold":
            self.proxy._released.wait()
            return self._reset()
        if fault is not None and action == "delay":
            self.proxy._stopping.wait(fault.seconds)
        status, headers, data = self._forward(body)
        if action == "lose_reply":
            return self._reset()
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                self.send_header(name, value)
        if self.command == "HEAD":
            size = next((v for k, v in headers if k.lower() == "content-length"), "0")
            self.send_header("Content-Length", size)
            self.end_headers()
            return None
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if action == "cut_body":
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            return self._reset()
        self.wfile.write(data)
        return None

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _serve

    def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(*self.proxy.upstream, timeout=120)
        try:
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in HOP_BY_HOP:
                    conn.putheader(name, value)
            conn.endheaders(body if body else None)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, resp.getheaders(), data
        finally:
            conn.close()

    def _error(self, fault: Fault, path: str) -> None:
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{fault.code}</Code>'
                f"<Message>injected by the fault proxy</Message><Resource>{path}</Resource>"
                "<RequestId>fault-proxy</RequestId></Error>").encode()
        self.send_response(fault.status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", "0" if self.command == "HEAD" else str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _reset(self) -> None:
        """Close with RST: the client sees 'connection reset', not a clean end."""
        self.close_connection = True
        try:
            self.wfile.flush()
        except OSError:
            pass
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
