"""One bucket's requests: call a botocore operation and map every failure to a StorageError.

Shared by the store (:mod:`.s3`) and the streaming upload (:mod:`.s3_multipart`), so neither
reaches into the other. Messages are built from names only: no credential, no chained botocore
traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import BucketNotFound, ListDenied, ObjectNotFound, StorageAuthError, StorageError

__all__ = ["S3Requests"]

_AUTH_CODES = frozenset({"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "Forbidden",
                         "403", "InvalidToken", "ExpiredToken"})
_MISSING_OBJECT_CODES = frozenset({"NoSuchKey", "NotFound", "404"})
# A listing refused for lack of permission (not for bad credentials: those stay StorageAuthErrors).
_DENIED_CODES = frozenset({"AccessDenied", "Forbidden", "403", ""})


class S3Requests:
    """Requests to ``bucket`` through the botocore ``client``, failures mapped to StorageErrors."""

    def __init__(self, client: Any, bucket: str, endpoint: str) -> None:
        self.client = client
        self.bucket = bucket
        self.endpoint = endpoint

    def call(self, operation: str, action: str, key: str | None, **params: Any) -> Any:
        """Run the client's ``operation`` on the bucket. ``action`` completes "while trying to ..."
        in messages. Raises ObjectNotFound, BucketNotFound, StorageAuthError or StorageError."""
        return self.run(action, key, lambda: getattr(self.client, operation)(Bucket=self.bucket, **params))

    def run(self, action: str, key: str | None, call: Callable[[], Any], *, listing: bool = False) -> Any:
        """Run ``call`` (a page fetch, a body read, a presign) with the same error mapping as
        :meth:`call`; exceptions that are not storage failures pass through unchanged. With
        ``listing`` (a page of a listing), a refusal for lack of permission raises ListDenied."""
        try:
            return call()
        except Exception as exc:
            error = self.map_error(exc, action, key, listing=listing)
            if error is None:
                raise
        raise error from None

    def map_error(self, exc: BaseException, action: str, key: str | None = None, *,
                  listing: bool = False) -> StorageError | None:
        """The StorageError for a botocore/connection failure, or None for an unrelated exception.

        ``action`` completes "while trying to ..." (for example ``"read 'a/b'"``). A listing
        (``listing``) refused with AccessDenied (HTTP 403) is :class:`ListDenied`: the one place
        that tells a refused List apart from rejected credentials (InvalidAccessKeyId,
        SignatureDoesNotMatch, ... stay StorageAuthErrors).
        """
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectionClosedError,
            ConnectTimeoutError,
            EndpointConnectionError,
            ReadTimeoutError,
            ResponseStreamingError,
        )

        if isinstance(exc, StorageError):
            return exc
        where = f"storage endpoint {self.endpoint}"
        if isinstance(exc, ClientError):
            code = _one_line(str(exc.response.get("Error", {}).get("Code") or ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code == "NoSuchBucket":
                return BucketNotFound(f"Bucket '{self.bucket}' does not exist at {self.endpoint}.")
            if code == "NoSuchUpload":
                return ObjectNotFound(f"The upload of '{key}' no longer exists at {where}.")
            if code in _MISSING_OBJECT_CODES or (status == 404 and not code):
                return ObjectNotFound(f"Object '{key}' does not exist in bucket '{self.bucket}' "
                                      f"at {self.endpoint}.")
            if listing and code in _DENIED_CODES and status == 403:
                return ListDenied(
                    f"Storage endpoint {self.endpoint} refused to {action} in bucket '{self.bucket}' "
                    f"({code or status}): these credentials may not list the bucket.")
            if code in _AUTH_CODES or status == 403:
                return StorageAuthError(
                    f"Storage endpoint {self.endpoint} refused the credentials ({code or status}) while "
                    f"trying to {action}: check the access key id and secret for storage bucket "
                    f"'{self.bucket}'.")
            detail = f"{code} (HTTP {status})" if code and code != str(status) else f"HTTP {status}"
            return StorageError(f"Storage request failed while trying to {action} at {where}: {detail}.")
        if isinstance(exc, EndpointConnectionError | ConnectTimeoutError):
            return StorageError(f"Cannot connect to {where} while trying to {action}; "
                                "check the endpoint URL and that the service is running.")
        if isinstance(exc, ReadTimeoutError | ConnectionClosedError | ResponseStreamingError):
            return StorageError(f"The connection to {where} broke while trying to {action} "
                                f"({type(exc).__name__}).")
        if isinstance(exc, BotoCoreError):
            return StorageError(f"Storage request failed while trying to {action} at {where}: "
                                f"{_one_line(str(exc))}.")
        if isinstance(exc, OSError):
            return StorageError(f"The connection to {where} failed while trying to {action} "
                                f"({type(exc).__name__}).")
        return None


def _one_line(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
