"""Rules for storage endpoint URLs: https everywhere, plain http only on loopback.

Plain data and :class:`~tako_backups.errors.ConfigError`; no boto3 here, so the project layer can
check a ``tako.toml`` endpoint without loading the S3 client.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit, urlunsplit

from ..errors import ConfigError

__all__ = ["check_endpoint", "is_ip_host", "is_loopback_host"]


def is_loopback_host(host: str) -> bool:
    """True for ``localhost``, any 127.0.0.0/8 address and ``::1`` (bracketed or not)."""
    name = host.strip().lower().rstrip(".")
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def is_ip_host(url: str) -> bool:
    """True when the URL's host is an IPv4 or IPv6 address (not a name)."""
    try:
        host = urlsplit(url.strip()).hostname or ""
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def check_endpoint(url: str, what: str = "endpoint") -> str:
    """Check a storage endpoint URL and return it normalized (scheme and host lower-cased, no
    trailing slash).

    Raises ConfigError when it is not an ``https://`` URL with a host, when it is ``http://`` to a
    host that is not loopback, or when it carries credentials, a query or a fragment.
    """
    label = f"Storage {what}"
    text = url.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ConfigError(
            f"{label} '{_redacted(text)}' is not a valid URL; use https://host[:port].") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ConfigError(f"{label} '{_redacted(text)}' must be an https:// URL (for example https://s3.example.com).")
    if parts.username is not None or parts.password is not None:
        raise ConfigError(f"{label} '{_redacted(text)}' must not contain credentials; "
                          "set the access key id and secret in the storage settings instead.")
    host = parts.hostname
    if not host:
        raise ConfigError(f"{label} '{text}' has no host; use https://host[:port].")
    if parts.query or parts.fragment:
        raise ConfigError(f"{label} '{text}' must not have a query or fragment; use https://host[:port].")
    if scheme == "http" and not is_loopback_host(host):
        raise ConfigError(f"{label} '{text}' must use https:// (http:// is allowed only for loopback "
                          "hosts such as 127.0.0.1).")
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc = f"{netloc}:{port}"
    return urlunsplit((scheme, netloc, parts.path.rstrip("/"), "", ""))


def _redacted(text: str) -> str:
    """The URL with any user-info part replaced, so a message never repeats a secret."""
    scheme, sep, rest = text.partition("://")
    if not sep:
        return text.split("@")[-1]
    authority, slash, tail = rest.partition("/")
    if "@" in authority:
        authority = "***@" + authority.rsplit("@", 1)[1]
    return f"{scheme}{sep}{authority}{slash}{tail}"
