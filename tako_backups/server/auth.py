"""Who may call the management RPC: signature checks against ``management-authorized-keys``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ..errors import AuthError, ConfigError
from ..remote.signing import AuthorizedKey, RequestVerifier
from .nonce_journal import NonceFile

__all__ = ["RequestAuth"]


class RequestAuth:
    """Verifies a request's x-tako-* headers (SSHSIG, timestamp ±300 s, nonce replay cache, kept
    across restarts in the state dir when given a nonce file).

    The authorized keys file is re-read whenever it changes, so ``tako-server authorize-key``
    takes effect without a restart.
    """

    def __init__(self, verifier: RequestVerifier) -> None:
        self.verifier = verifier

    @classmethod
    def from_file(cls, authorized_keys: Path, seen_nonces: Path | None = None) -> RequestAuth:
        """Check against ``authorized_keys``; with ``seen_nonces`` the used nonces survive restarts.

        Raises ConfigError when the nonce file cannot be read or rewritten.
        """
        journal = None if seen_nonces is None else NonceFile(seen_nonces)
        return cls(RequestVerifier(authorized_keys, journal=journal))

    def check(self, headers: Mapping[str, str], body: bytes) -> AuthorizedKey:
        """The key that signed ``body``. Raises AuthError for any failure, including an
        authorized keys file that cannot be read (every call is then refused)."""
        try:
            return self.verifier.verify(headers, body)
        except ConfigError as exc:
            raise AuthError(str(exc)) from None
