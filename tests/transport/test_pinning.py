"""A pinned client sends nothing to a server whose certificate is not the pinned one."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tako_backups.errors import RemoteError
from tako_backups.remote.client import AsyncRpcClient, RpcClient
from tako_backups.remote.pinning import PinMismatchError, pinned_context
from tako_backups.server.tls import TlsIdentity, ensure_identity
from tests.transport.support import LOOPBACK, TlsPeer

SECRET = "s3cr3t-never-sent-to-the-wrong-peer"
PAYLOAD = {"app": "demo/production", "backup": {"storage": {"secret_access_key": SECRET}}}


@pytest.fixture
def pinned(tmp_path: Path) -> TlsIdentity:
    return ensure_identity(tmp_path / "pinned", "la", LOOPBACK)


@pytest.fixture
def impostor(tmp_path: Path) -> Iterator[TlsPeer]:
    other = ensure_identity(tmp_path / "impostor", "la", LOOPBACK)
    peer = TlsPeer(other.cert_path, other.key_path).start()
    yield peer
    peer.stop()


def mismatch(pinned: TlsIdentity, peer: TlsPeer, fingerprint: str) -> str:
    return (f"Server 'la' (127.0.0.1:{peer.port}) presented TLS certificate {fingerprint}, but config.toml "
            f"pins {pinned.fingerprint}; nothing was sent. If the server's certificate changed on purpose, "
            "set tls_fingerprint to what `tako-server identity` prints there.")


def test_a_wrong_certificate_is_refused_naming_both_fingerprints(pinned, impostor, signer, tmp_path) -> None:
    seen = ensure_identity(tmp_path / "impostor", "la", LOOPBACK).fingerprint
    with RpcClient("la", LOOPBACK, impostor.port, [signer], tls_fingerprint=pinned.fingerprint) as client, \
            pytest.raises(PinMismatchError) as caught:
        client.call("backup_now", PAYLOAD)
    assert str(caught.value) == mismatch(pinned, impostor, seen)
    assert SECRET not in str(caught.value)
    impostor.wait_closed(1)
    assert impostor.received == b""


def test_the_async_client_refuses_it_too(pinned, impostor, signer, tmp_path) -> None:
    seen = ensure_identity(tmp_path / "impostor", "la", LOOPBACK).fingerprint

    async def call() -> None:
        async with AsyncRpcClient("la", LOOPBACK, impostor.port, [signer],
                                  tls_fingerprint=pinned.fingerprint) as client:
            await client.call("backup_now", PAYLOAD)

    with pytest.raises(PinMismatchError) as caught:
        asyncio.run(call())
    assert str(caught.value) == mismatch(pinned, impostor, seen)
    impostor.wait_closed(1)
    assert impostor.received == b""


def test_the_pinned_context_fails_the_handshake_with_any_other_certificate(pinned, impostor) -> None:
    """The second line of defence: a server that swaps its certificate after the check still gets
    no byte of the request."""
    context = pinned_context(_der(pinned.cert_path))
    with httpx.Client(verify=context, trust_env=False) as http, pytest.raises(httpx.ConnectError) as caught:
        http.post(f"https://{LOOPBACK}:{impostor.port}/rpc", content=SECRET.encode())
    assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value)
    impostor.wait_closed(1)
    assert impostor.received == b""


def test_the_pinned_context_accepts_the_pinned_certificate(pinned) -> None:
    peer = TlsPeer(pinned.cert_path, pinned.key_path).start()
    try:
        with httpx.Client(verify=pinned_context(_der(pinned.cert_path)), trust_env=False) as http, \
                pytest.raises(httpx.ReadTimeout):  # the bare peer never answers HTTP
            http.post(f"https://{LOOPBACK}:{peer.port}/rpc", content=b"{}", timeout=1)
        peer.wait_closed(1)
        assert peer.received.startswith(b"POST /rpc HTTP/1.1\r\n")
    finally:
        peer.stop()


def test_a_plain_http_server_is_not_taken_for_a_tls_one(pinned, signer) -> None:
    with socket.create_server((LOOPBACK, 0)) as plain:
        port = plain.getsockname()[1]

        def answer() -> None:
            conn, _ = plain.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")

        threading.Thread(target=answer, daemon=True).start()
        with RpcClient("la", LOOPBACK, port, [signer], tls_fingerprint=pinned.fingerprint) as client, \
                pytest.raises(RemoteError) as caught:
            client.call("list_backups", {"app": "demo/production"})
    assert str(caught.value).startswith(f"Server 'la' (127.0.0.1:{port}) did not complete a TLS handshake (")
    assert str(caught.value).endswith("); is it started with --tls?")


def _der(cert_path: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert_path.read_text())
