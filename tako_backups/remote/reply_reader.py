"""What a management server's answer means to the client: the reply it carries, Tako's two auth
refusals, and one error per failure, each naming the server and its address (never a request
body: it may carry credentials)."""

from __future__ import annotations

import errno
import re
from typing import Any

import httpx

from ..errors import AuthError, ConfigError, RemoteError
from . import protocol

__all__ = ["ReplyReader", "ServerReplyError"]

_ERRNO_PREFIX = re.compile(r"^\[Errno -?\d+\]\s*")


class ServerReplyError(RemoteError):
    """The server answered with ``{"status": "error"}``; ``reply_message`` is its own text."""

    def __init__(self, server: str, reply_message: str, status_code: int) -> None:
        super().__init__(f"Server '{server}': {reply_message}")
        self.server = server
        self.reply_message = reply_message
        self.status_code = status_code


class ReplyReader:
    """Reads the replies of one server (``address`` as shown in messages; ``pinned`` when its
    TLS certificate is pinned)."""

    def __init__(self, server_name: str, address: str, pinned: bool) -> None:
        self.server_name = server_name
        self.address = address
        self.pinned = pinned

    def interpret(self, response: httpx.Response) -> dict[str, Any]:
        """The whole ``{"status": "ok", "data", ...}`` object. Raises ServerReplyError for the
        server's ``{"status": "error"}``, RemoteError for anything that is not a reply."""
        try:
            reply = response.json()
        except ValueError:
            reply = None
        status = reply.get("status") if isinstance(reply, dict) else None
        if status == "ok" and response.status_code == 200 and "data" in reply:
            return reply  # type: ignore[no-any-return]
        if status == "error" and isinstance(reply.get("message"), str):
            raise ServerReplyError(self.server_name, reply["message"], response.status_code)
        raise RemoteError(f"Server '{self.server_name}' ({self.address}) sent an invalid reply "
                          f"(HTTP {response.status_code}); is it a tako-server?")

    @staticmethod
    def auth_refusal(response: httpx.Response) -> str | None:
        """The reply's message when it is one of Tako's two auth refusals (whatever the HTTP
        status, as Tako's CLI reads it), else None."""
        try:
            reply = response.json()
        except ValueError:
            return None
        message = reply.get("message") if isinstance(reply, dict) and reply.get("status") == "error" else None
        return message if isinstance(message, str) and message in protocol.AUTH_MESSAGES else None

    def rejected(self, unsigned: list[str], refusals: list[tuple[str, str]]) -> Exception:
        """The error once no key got through: ``unsigned`` says why keys could not sign,
        ``refusals`` pairs each key that was refused with the server's text."""
        where = f"Server '{self.server_name}' ({self.address})"
        couldnt = "; ".join(r.rstrip(".") for r in unsigned)
        if not refusals:
            if not unsigned:
                return ConfigError(f"No SSH key to sign requests to server '{self.server_name}'; create one "
                                   "with ssh-keygen -t ed25519 or set key_path for the server.")
            return AuthError(f"No SSH key could sign the request to server '{self.server_name}' "
                             f"({self.address}): {couldnt}.")
        last = refusals[-1][1]
        tried = ", ".join(description for description, _ in refusals)
        details = f"{last}; tried {tried}" + (f"; could not sign with {couldnt}" if couldnt else "")
        if last == protocol.AUTH_REQUIRED:
            return AuthError(f"{where} refused every key ({details}): it has no authorized keys yet; add "
                             "yours with tako-server authorize-key.")
        return AuthError(f"{where} refused every key ({details}); add yours with tako-server "
                         "authorize-key (the server's log says why it refused each; a wrong clock is one "
                         "reason).")

    def transport_error(self, command: str, exc: httpx.HTTPError, timeout: httpx.Timeout) -> RemoteError:
        """The error to raise when ``command`` failed in transit with ``exc``."""
        where = f"Server '{self.server_name}' ({self.address})"
        if isinstance(exc, httpx.ConnectError) and "CERTIFICATE_VERIFY_FAILED" in str(exc):
            return RemoteError(f"{where} presented a TLS certificate other than the pinned one; nothing "
                               "was sent.")
        if isinstance(exc, httpx.ConnectTimeout):
            return RemoteError(f"{where} is unreachable: no answer within {timeout.connect:g} s.")
        if isinstance(exc, httpx.ConnectError):
            return RemoteError(f"{where} is unreachable: {_connect_reason(exc)}.")
        if isinstance(exc, httpx.TimeoutException):
            return RemoteError(f"{where} did not answer {command} within {timeout.read:g} s.")
        if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError)) and not self.pinned:
            return RemoteError(f"{where} broke off {command} without an HTTP answer; if it runs with "
                               "--tls, set tls_fingerprint for it in config.toml (`tako-server identity` "
                               "prints it).")
        return RemoteError(f"{where} failed during {command}: {type(exc).__name__}.")


def _connect_reason(exc: BaseException) -> str:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno == errno.ECONNREFUSED:
            return "connection refused"
        seen = seen.__cause__ or seen.__context__
    text = _ERRNO_PREFIX.sub("", str(exc)).strip() or type(exc).__name__
    if "connection refused" in text.lower():
        return "connection refused"
    return text[:1].lower() + text[1:]
