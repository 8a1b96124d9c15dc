"""Every name rule, once, table-driven, with Tako's texts.

The rows marked "was:" are where the old copies disagreed (the CLI, the protocol and the server
runtime each had their own rule); each now follows Tako's rule for that place.
"""

from __future__ import annotations

import pytest

from tako_backups.errors import ConfigError, FormatError
from tako_backups.primitives.names import (
    app_name_problem,
    check_app_id,
    env_name_problem,
    is_backup_key_id,
    is_key_id,
    join_app_id,
    sanitize_app_name,
    sanitize_segment,
    segment_problem,
    server_name_problem,
    split_app_id,
    storage_name_problem,
    validation_error,
)

EMPTY, LONG, START, END, CHARS = (
    "Invalid app name: must not be empty",
    "Invalid app name: must be 63 characters or fewer",
    "Invalid app name: must start with a lowercase letter",
    "Invalid app name: must not end with '-'",
    "Invalid app name: only lowercase letters, digits, and '-' are allowed",
)


@pytest.mark.parametrize(("name", "problem"), [
    ("demo", None),
    ("a", None),
    ("a" * 63, None),
    ("web-2", None),
    ("", "App name cannot be empty"),
    ("a" * 64, "App name cannot exceed 63 characters"),
    ("é" * 32, "App name cannot exceed 63 characters"),  # 64 UTF-8 bytes, as Tako counts
    ("1app", "App name must start with a lowercase letter"),  # was: accepted by the server runtime
    ("-app", "App name must start with a lowercase letter"),
    ("My_App", "App name must start with a lowercase letter"),
    ("my.app", "App name can only contain lowercase letters, numbers, and hyphens. Found: '.'"),
    ("my_app-", "App name can only contain lowercase letters, numbers, and hyphens. Found: '_'"),
    ("app-", "App name cannot end with a hyphen"),  # was: accepted by the server runtime
])
def test_app_name_in_tako_toml(name: str, problem: str | None) -> None:
    assert app_name_problem(name) == problem


@pytest.mark.parametrize(("name", "problem"), [
    ("production", None),
    ("staging-2", None),
    ("1st", None),  # the CLI's rule has no first-letter check: the server's segment rule does
    ("prod-", None),
    ("e" * 64, None),  # was: refused by the protocol (64 chars), accepted by the CLI
    ("", "Environment name cannot be empty"),
    ("Prod", "Environment name can only contain lowercase letters, numbers, and hyphens. Found: 'P'"),
    ("a b", "Environment name can only contain lowercase letters, numbers, and hyphens. Found: ' '"),
    ("a_b", "Environment name can only contain lowercase letters, numbers, and hyphens. Found: '_'"),
])
def test_env_name_in_the_cli(name: str, problem: str | None) -> None:
    assert env_name_problem(name) == problem


@pytest.mark.parametrize(("name", "problem"), [
    ("uploads", None),
    ("r2_backups-1", None),
    ("", "Storage name cannot be empty"),
    ("R2", "Storage name can only contain lowercase letters, numbers, hyphens, and underscores. Found: 'R'"),
    ("a.b", "Storage name can only contain lowercase letters, numbers, hyphens, and underscores. Found: '.'"),
])
def test_storage_names(name: str, problem: str | None) -> None:
    assert storage_name_problem(name) == problem


@pytest.mark.parametrize(("segment", "problem"), [
    ("demo", None),
    ("production", None),
    ("a" * 63, None),
    ("", EMPTY),
    ("a" * 64, LONG),
    ("é" * 32, LONG),
    ("1app", START),  # was: accepted by the server runtime
    ("-app", START),
    ("app-", END),  # was: accepted by the server runtime and by the CLI's env rule
    ("App", START),
    ("a_b", CHARS),
    ("a/b", CHARS),
    ("a.b-", END),  # the end is checked before the characters, as Tako does
])
def test_server_segments(segment: str, problem: str | None) -> None:
    assert segment_problem(segment) == problem


@pytest.mark.parametrize(("app", "split"), [
    ("demo/production", ("demo", "production")),
    ("a/b/c", None),
    ("demo/", None),
    ("/production", None),
    ("demo", None),
])
def test_app_id_split(app: str, split: tuple[str, str] | None) -> None:
    assert split_app_id(app) == split


@pytest.mark.parametrize(("app", "result"), [
    ("demo/production", ("demo", "production")),
    ("demo", ("demo", "production")),  # was: refused by the protocol; Tako's server reads it whole
    ("demo/staging-2", ("demo", "staging-2")),
    ("demo/" + "e" * 63, ("demo", "e" * 63)),
    ("demo/" + "e" * 64, LONG),
    ("demo/1st", START),  # was: accepted by the protocol and the server runtime
    ("demo/prod-", END),  # was: accepted by the protocol and the server runtime
    ("1app/production", START),  # was: accepted by the server runtime
    ("Demo/production", START),
    ("demo/", CHARS),  # not split: the whole string is one segment
    ("a/b/c", CHARS),
    ("", EMPTY),
    ("../etc", START),
])
def test_server_app_ids(app: str, result: tuple[str, str] | str) -> None:
    if isinstance(result, tuple):
        assert check_app_id(app) == result
    else:
        with pytest.raises(FormatError) as caught:
            check_app_id(app)
        assert str(caught.value) == result


@pytest.mark.parametrize(("name", "env", "result"), [
    ("demo", "production", "demo/production"),
    ("demo", "1st", START),
    ("demo", "", EMPTY),
    ("de/mo", "production", CHARS),
])
def test_the_cli_joins_app_ids_the_server_accepts(name: str, env: str, result: str) -> None:
    if "/" in result:
        assert join_app_id(name, env) == result
    else:
        with pytest.raises(FormatError) as caught:
            join_app_id(name, env)
        assert str(caught.value) == result


@pytest.mark.parametrize(("segment", "sanitized"), [
    ("  My App!  ", "myapp"),
    ("a_b-C.d/e", "a_b-c-de"),
    ("la.1", "la-1"),
    ("ÿ€ ", "server"),
    ("", "server"),
])
def test_bucket_prefix_segments(segment: str, sanitized: str) -> None:
    assert sanitize_segment(segment) == sanitized


@pytest.mark.parametrize(("value", "key_id", "backup_key_id"), [
    ("0123456789abcdef", True, False),
    ("0123456789ABCDEF", True, False),
    ("0123456789abcde", False, False),
    ("backup-key-0123456789abcdef", False, True),
    ("backup-key-0123456789abcdeg", False, False),
    ("backup-key-0123456789abcdef0", False, False),
])
def test_key_ids(value: str, key_id: bool, backup_key_id: bool) -> None:
    assert (is_key_id(value), is_backup_key_id(value)) == (key_id, backup_key_id)


def test_validation_errors_read_as_tako_prints_them() -> None:
    error = validation_error("Environment name cannot be empty")
    assert isinstance(error, ConfigError)
    assert str(error) == "Validation error: Environment name cannot be empty"
    assert str(validation_error("Storage name cannot be empty", "Our hint.")) == (
        "Validation error: Storage name cannot be empty\nOur hint.")


@pytest.mark.parametrize(("raw", "sanitized"), [
    ("demo", "demo"),
    ("my--app", "my-app"),
    ("My_App.v2", "my-app-v2"),
    ("42-app-", "app"),
    ("héllo wörld", "hllowrld"),
])
def test_the_cli_app_name_is_sanitized_as_takos(raw: str, sanitized: str) -> None:
    assert sanitize_app_name(raw) == sanitized


@pytest.mark.parametrize(("name", "problem"), [
    ("la-1", None),
    ("", "Server name cannot be empty"),
    ("1la", "Server name must start with a lowercase letter"),
    ("la_1", "Server name can only contain lowercase letters, numbers, and hyphens. Found: '_'"),
    ("la-", "Server name cannot end with a hyphen"),
    ("a" * 64, "Server name cannot exceed 63 characters"),
])
def test_server_names(name: str, problem: str | None) -> None:
    assert server_name_problem(name) == problem
