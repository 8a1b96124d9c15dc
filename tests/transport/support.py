"""Real `tako-server serve` processes with the transport options, a recording TCP proxy, and a
bare TLS endpoint that records what it receives -- all on 127.0.0.1."""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

from tako_backups.errors import ConfigError, RemoteError
from tako_backups.remote.client import RpcClient
from tako_backups.remote.signing import FileSigner
from tako_backups.server.tls import load_identity
from tests.support.tako_server import SERVER, RunningServer, authorize, free_port, server_env
from tests.support.waiting import wait_for

LOOPBACK = "127.0.0.1"


def launch(data_dir: Path, signer: FileSigner, name: str, *options: str) -> RunningServer:
    """Start `tako-server serve` on ``data_dir`` (named ``name``, ``signer`` authorized the first
    time) with ``options`` (``--tls``, ``--require-target``); return once ``server_info`` answers."""
    if not (data_dir / "management-authorized-keys").exists():
        authorize(data_dir, signer, name)
    port = free_port()
    log_path = data_dir.parent / f"{data_dir.name}-server.log"
    command = [*SERVER, "serve", "--data-dir", str(data_dir), "--host", LOOPBACK, "--port", str(port),
               *options]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, env=server_env(), stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
    server = RunningServer(process, port, data_dir, log_path)

    def ready() -> bool:
        assert process.poll() is None, f"tako-server exited early:\n{server.log_tail()}"
        pin = None
        if "--tls" in options:
            try:
                pin = load_identity(data_dir / "tls").fingerprint
            except ConfigError:
                return False
        try:
            with RpcClient(name, LOOPBACK, port, tls_fingerprint=pin) as client:
                return bool(client.call("server_info")["server_name"] == name)
        except RemoteError:
            return False

    wait_for(ready, f"tako-server {name} to answer server_info")
    return server


@dataclass
class Exchange:
    """One HTTP request as it crossed the proxy: method, path, headers and body."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class RecordingProxy:
    """A TCP proxy on 127.0.0.1 that forwards to ``upstream_port`` and keeps every byte the client
    sent; :meth:`requests` parses them back into HTTP requests (as an on-path observer would)."""

    upstream_port: int
    port: int = 0
    sent: list[bytearray] = field(default_factory=list)
    _listener: socket.socket | None = None

    def start(self) -> RecordingProxy:
        self._listener = socket.create_server((LOOPBACK, 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._listener is not None:
            _close_listener(self._listener)

    def requests(self) -> list[Exchange]:
        """The requests in the recorded streams (HTTP/1.1 with Content-Length, as httpx sends)."""
        found = []
        for stream in self.sent:
            rest = bytes(stream)
            while b"\r\n\r\n" in rest:
                head, rest = rest.split(b"\r\n\r\n", 1)
                request_line, *lines = head.decode("latin-1").split("\r\n")
                method, path, _ = request_line.split(" ", 2)
                headers = {}
                for line in lines:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0"))
                found.append(Exchange(method, path, headers, rest[:length]))
                rest = rest[length:]
        return found

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection((LOOPBACK, self.upstream_port))
            except OSError:
                client.close()
                continue
            record = bytearray()
            self.sent.append(record)
            threading.Thread(target=self._pipe, args=(client, upstream, record), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, None), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket, record: bytearray | None) -> None:
        try:
            while data := source.recv(65536):
                if record is not None:
                    record.extend(data)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@dataclass
class TlsPeer:
    """A bare TLS endpoint serving ``cert``/``key`` that records the bytes any client sent after
    the handshake (what a server with another certificate would get to read)."""

    cert: Path
    key: Path
    port: int = 0
    received: bytearray = field(default_factory=bytearray)
    connections: int = 0
    _listener: socket.socket | None = None

    def start(self) -> TlsPeer:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        self._listener = socket.create_server((LOOPBACK, 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._serve, args=(context,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self._listener is not None:
            _close_listener(self._listener)

    def _serve(self, context: ssl.SSLContext) -> None:
        assert self._listener is not None
        while True:
            try:
                raw, _ = self._listener.accept()
            except OSError:
                return
            raw.settimeout(5)
            try:
                with context.wrap_socket(raw, server_side=True) as tls:
                    while data := tls.recv(65536):
                        self.received.extend(data)
            except (OSError, ssl.SSLError):
                raw.close()
            finally:
                self.connections += 1

    def wait_closed(self, connections: int) -> None:
        """Wait until ``connections`` connections have ended (what they sent is then recorded)."""
        wait_for(lambda: self.connections >= connections, f"{connections} TLS peer connection(s) to end")


def _close_listener(listener: socket.socket) -> None:
    """Close a listening socket and wake the thread blocked in its accept()."""
    try:
        listener.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    listener.close()
