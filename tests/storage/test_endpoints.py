from __future__ import annotations

import pytest

from tako_backups.errors import ConfigError
from tako_backups.storage.endpoints import check_endpoint, is_loopback_host


@pytest.mark.parametrize(("url", "normalized"), [
    ("https://s3.eu-central-1.amazonaws.com", "https://s3.eu-central-1.amazonaws.com"),
    ("https://ACCOUNT.r2.cloudflarestorage.com/", "https://account.r2.cloudflarestorage.com"),
    (" HTTPS://minio.example.com:9000 ", "https://minio.example.com:9000"),
    ("https://[2001:db8::1]:443", "https://[2001:db8::1]:443"),
])
def test_https_endpoints_are_accepted_and_normalized(url: str, normalized: str) -> None:
    assert check_endpoint(url) == normalized


@pytest.mark.parametrize(("url", "normalized"), [
    ("http://127.0.0.1:8333", "http://127.0.0.1:8333"),
    ("http://localhost:9000/", "http://localhost:9000"),
    ("http://[::1]:8333", "http://[::1]:8333"),
    ("http://127.1.2.3", "http://127.1.2.3"),
])
def test_plain_http_is_accepted_for_loopback_hosts(url: str, normalized: str) -> None:
    assert check_endpoint(url) == normalized


@pytest.mark.parametrize("url", ["http://example.com", "http://10.0.0.5:9000", "http://128.0.0.1",
                                 "http://localhost.example.com"])
def test_plain_http_elsewhere_is_refused_with_the_rule(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_endpoint(url)
    assert str(info.value) == (f"Storage endpoint '{url}' must use https:// (http:// is allowed only for "
                               "loopback hosts such as 127.0.0.1).")


def test_the_example_message_is_exact() -> None:
    with pytest.raises(ConfigError) as info:
        check_endpoint("http://example.com")
    assert str(info.value) == ("Storage endpoint 'http://example.com' must use https:// (http:// is allowed "
                               "only for loopback hosts such as 127.0.0.1).")


def test_the_message_names_what_is_checked() -> None:
    with pytest.raises(ConfigError) as info:
        check_endpoint("http://example.com", what="public base URL")
    assert str(info.value).startswith("Storage public base URL 'http://example.com' must use https://")


@pytest.mark.parametrize("url", ["https://", "http://", "https:///bucket"])
def test_an_endpoint_without_host_is_refused(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_endpoint(url)
    assert str(info.value) == f"Storage endpoint '{url}' has no host; use https://host[:port]."


@pytest.mark.parametrize("url", ["ftp://files.example.com", "s3.example.com", "file:///tmp/x"])
def test_other_schemes_are_refused(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_endpoint(url)
    assert str(info.value) == (f"Storage endpoint '{url}' must be an https:// URL "
                               "(for example https://s3.example.com).")


def test_credentials_in_the_url_are_refused_without_repeating_them() -> None:
    with pytest.raises(ConfigError) as info:
        check_endpoint("https://AKIAEXAMPLE:hunter2secret@s3.example.com")
    assert "hunter2secret" not in str(info.value)
    assert "AKIAEXAMPLE" not in str(info.value)
    assert str(info.value) == ("Storage endpoint 'https://***@s3.example.com' must not contain credentials; "
                               "set the access key id and secret in the storage settings instead.")


def test_a_bad_port_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        check_endpoint("https://s3.example.com:99999")
    assert str(info.value) == ("Storage endpoint 'https://s3.example.com:99999' is not a valid URL; "
                               "use https://host[:port].")


def test_query_strings_are_refused() -> None:
    with pytest.raises(ConfigError) as info:
        check_endpoint("https://s3.example.com/?x=1")
    assert str(info.value) == ("Storage endpoint 'https://s3.example.com/?x=1' must not have a query or "
                               "fragment; use https://host[:port].")


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.255.0.9", True), ("localhost", True), ("LOCALHOST", True), ("::1", True),
    ("[::1]", True), ("10.0.0.1", False), ("example.com", False), ("::2", False), ("", False),
    ("localhost.evil.example", False),
])
def test_is_loopback_host(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback
