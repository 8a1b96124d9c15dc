"""A small ssh-agent client (draft-miller-ssh-agent): list identities and sign with them."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field

from tako_backups.errors import AuthError
from tako_backups.remote import sshwire

SSH_AGENT_FAILURE = 5
SSH2_AGENTC_REQUEST_IDENTITIES = 11
SSH2_AGENT_IDENTITIES_ANSWER = 12
SSH2_AGENTC_SIGN_REQUEST = 13
SSH2_AGENT_SIGN_RESPONSE = 14
SSH_AGENT_RSA_SHA2_512 = 4
MAX_MESSAGE = 256 * 1024
TIMEOUT_SECONDS = 30.0


class AgentClient:
    """Talks to the ssh-agent listening on a Unix socket; one connection per request."""

    def __init__(self, socket_path: str, *, timeout: float = TIMEOUT_SECONDS) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    def _request(self, message_type: int, payload: bytes) -> tuple[int, bytes]:
        message = bytes([message_type]) + payload
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout)
                sock.connect(self.socket_path)
                sock.sendall(struct.pack(">I", len(message)) + message)
                (length,) = struct.unpack(">I", _recv_exact(sock, 4))
                if not 0 < length <= MAX_MESSAGE:
                    raise AuthError(f"ssh-agent at {self.socket_path} sent a malformed reply.")
                reply = _recv_exact(sock, length)
        except OSError as exc:
            raise AuthError(
                f"Cannot talk to ssh-agent at {self.socket_path}: {exc.strerror or exc}.") from None
        return reply[0], reply[1:]

    def identities(self) -> list[tuple[bytes, str]]:
        """The agent's keys as (key blob, comment), in the agent's order.

        Raises AuthError when the agent cannot be reached or answers nonsense.
        """
        kind, payload = self._request(SSH2_AGENTC_REQUEST_IDENTITIES, b"")
        if kind != SSH2_AGENT_IDENTITIES_ANSWER:
            raise AuthError(f"ssh-agent at {self.socket_path} refused to list its keys.")
        reader = sshwire.Reader(payload)
        try:
            count = reader.uint32()
            found = [(reader.string(), reader.string().decode("utf-8", "replace")) for _ in range(count)]
            reader.finish()
        except sshwire.WireError:
            raise AuthError(f"ssh-agent at {self.socket_path} sent a malformed key list.") from None
        return found

    def sign(self, key_blob: bytes, data: bytes, flags: int = 0) -> bytes:
        """Ask the agent to sign data with a key; returns the SSH signature blob.

        Raises AuthError when the agent is unreachable, refuses, or answers nonsense.
        """
        payload = sshwire.string(key_blob) + sshwire.string(data) + struct.pack(">I", flags)
        kind, reply = self._request(SSH2_AGENTC_SIGN_REQUEST, payload)
        if kind != SSH2_AGENT_SIGN_RESPONSE:
            raise AuthError(
                f"ssh-agent at {self.socket_path} refused to sign with key "
                f"{sshwire.fingerprint_of_blob(key_blob)}."
            )
        reader = sshwire.Reader(reply)
        try:
            signature = reader.string()
            reader.finish()
        except sshwire.WireError:
            raise AuthError(f"ssh-agent at {self.socket_path} sent a malformed signature.") from None
        return signature


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks: list[bytes] = []
    while size:
        chunk = sock.recv(min(size, 65536))
        if not chunk:
            raise ConnectionError("ssh-agent closed the connection")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


@dataclass(frozen=True)
class AgentSigner:
    """A Signer whose private key stays inside ssh-agent (RSA keys sign with rsa-sha2-512)."""

    agent: AgentClient = field(repr=False)
    public_key_blob: bytes = field(repr=False)
    comment: str = ""

    @property
    def description(self) -> str:
        return f"ssh-agent key {self.comment or self.fingerprint}"

    @property
    def fingerprint(self) -> str:
        return sshwire.fingerprint_of_blob(self.public_key_blob)

    @property
    def key_type(self) -> str:
        return sshwire.key_type_of(self.public_key_blob)

    def sign(self, data: bytes) -> bytes:
        """Sign through the agent. Raises AuthError when it refuses or falls back to SHA-1 RSA."""
        is_rsa = self.key_type == sshwire.RSA
        signature = self.agent.sign(self.public_key_blob, data, SSH_AGENT_RSA_SHA2_512 if is_rsa else 0)
        try:
            algorithm = sshwire.Reader(signature).text()
        except sshwire.WireError:
            raise AuthError(f"ssh-agent sent a malformed signature for {self.fingerprint}.") from None
        expected = "rsa-sha2-512" if is_rsa else self.key_type
        if algorithm != expected:
            raise AuthError(
                f"ssh-agent signed with {algorithm} instead of {expected} for key {self.fingerprint}."
            )
        return signature


def agent_signers(socket_path: str) -> list[AgentSigner]:
    """Signers for the agent's Ed25519, RSA and ECDSA keys (certificates and others skipped).

    Raises AuthError when the agent cannot be reached.
    """
    agent = AgentClient(socket_path)
    signers = []
    for blob, comment in agent.identities():
        try:
            sshwire.load_public_key(blob)
        except sshwire.WireError:
            continue
        signers.append(AgentSigner(agent, blob, comment))
    return signers
