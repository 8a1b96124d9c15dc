"""A forward HTTP proxy on 127.0.0.1 that records each request's Host header and target, for
proving virtual-hosted S3 addressing against SeaweedFS without DNS.

A client configured with this proxy (botocore's ``proxies`` setting, or ``HTTP_PROXY`` in a
subprocess's environment) sends ``PUT http://{bucket}.localhost:{port}/{key} HTTP/1.1`` with
``Host: {bucket}.localhost:{port}``. The proxy forwards the request unchanged -- the Host header
too, so SigV4 signatures still verify -- to the one upstream it serves (SeaweedFS started with
``-s3.domainName=localhost``), whatever host name the request names, and answers with the
upstream's reply.
"""

from __future__ import annotations

import http.client
import http.server
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer",
              "upgrade", "expect"}


@dataclass(frozen=True)
class ProxiedRequest:
    method: str
    host: str  # the Host header as sent
    url: str  # the request target as sent (absolute form through a proxy)
    path: str  # its path and query
    content_type: str | None


class ForwardProxy:
    """A threaded forward proxy to ``upstream`` (``http://127.0.0.1:PORT``); :attr:`seen` holds
    every request it forwarded."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        assert parts.hostname == "127.0.0.1", "loopback only"
        self.upstream = (parts.hostname, parts.port or 80)
        self.seen: list[ProxiedRequest] = []
        self._lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"proxy": self})
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="forward-proxy", daemon=True)

    def __enter__(self) -> ForwardProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def requests(self) -> list[ProxiedRequest]:
        with self._lock:
            return list(self.seen)

    def _record(self, request: ProxiedRequest) -> None:
        with self._lock:
            self.seen.append(request)


class _Handler(http.server.BaseHTTPRequestHandler):
    proxy: ForwardProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _serve(self) -> None:
        target = urlsplit(self.path)
        path = target.path + (f"?{target.query}" if target.query else "")
        self.proxy._record(ProxiedRequest(self.command, self.headers.get("Host", ""), self.path, path,
                                          self.headers.get("Content-Type")))
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        conn = http.client.HTTPConnection(*self.proxy.upstream, timeout=120)
        try:
            conn.putrequest(self.command, path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in HOP_BY_HOP:
                    conn.putheader(name, value)
            conn.endheaders(body if body else None)
            resp = conn.getresponse()
            data = resp.read()
            status, headers = resp.status, resp.getheaders()
        finally:
            conn.close()
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                self.send_header(name, value)
        size = next((v for k, v in headers if k.lower() == "content-length"), "0")
        self.send_header("Content-Length", size if self.command == "HEAD" else str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _serve
