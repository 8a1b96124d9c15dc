"""Error types. Each kind carries a one-line user message and the exit code the CLI maps it to.

Messages never contain secret values: callers build them from names, ids and paths only.
"""

from __future__ import annotations


class TakoError(Exception):
    """Base for every error a user may see. ``str(err)`` is the one-line message."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(TakoError):
    """A project, server or settings file is missing, malformed or breaks a rule."""


class FormatError(TakoError):
    """A manifest, index or other JSON document does not match Tako's format."""


class NotFoundError(TakoError):
    """An app, backup id or other named thing does not exist."""


class StorageError(TakoError):
    """The object store failed (after retries)."""


class ObjectNotFound(StorageError):
    """The object (or bucket) that was asked for does not exist."""


class StorageAuthError(StorageError):
    """The object store rejected the credentials."""


class ListDenied(StorageAuthError):
    """The object store refused to list objects (or unfinished uploads) to credentials that may
    still read, write and delete single objects (least-privilege credentials, as Tako needs)."""


class BucketNotFound(StorageError):
    """The configured bucket does not exist."""


class IntegrityError(TakoError):
    """Downloaded data does not match its manifest: size, SHA-256 or the AES-GCM tag."""


class KeyNotFoundError(TakoError):
    """The backup key a manifest names is not among the keys available."""


class UnsafeArchiveError(TakoError):
    """An archive entry would write outside the staging tree or is of a refused kind."""


class RestoreError(TakoError):
    """A restore could not complete; the live tree was left as it was."""


class BusyError(TakoError):
    """Another backup or restore of the same app is running."""


class RemoteError(TakoError):
    """A server could not be reached or answered with an error."""


class AuthError(RemoteError):
    """A server rejected the request's signature or key."""


class Interrupted(TakoError):
    """The user interrupted or declined."""

    exit_code = 130
