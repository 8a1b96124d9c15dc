"""Who may call the management RPC: signature checks against ``management-authorized-keys``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ..remote.protocol import AUTH_FAILED, AUTH_REQUIRED
from ..remote.signing import AuthorizedKey, MissingAuthError, RequestVerifier
from .nonce_journal import NonceFile

__all__ = ["RequestAuth", "reply_text"]


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
        """The key that signed ``body``.

        Raises AuthError for any refusal (MissingAuthError when the request cannot be checked:
        a header missing or blank, or no readable authorized keys file), ConfigError when the
        nonce of a good request cannot be recorded (it must not run then).
        """
        return self.verifier.verify(headers, body)


def reply_text(exc: Exception) -> str:
    """The 401 text for a refusal, as Tako's server words it: ``management auth required`` when
    the request could not be checked, ``management auth failed`` for everything else. The reason
    itself goes to the server log only (it would tell a caller whether a key is enrolled)."""
    return AUTH_REQUIRED if isinstance(exc, MissingAuthError) else AUTH_FAILED
