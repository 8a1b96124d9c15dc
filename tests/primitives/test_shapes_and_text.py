"""The JSON field checker, the start-command rules and the one-line text helper."""

from __future__ import annotations

from typing import Any

import pytest

from tako_backups.errors import ConfigError, FormatError
from tako_backups.primitives.json_shapes import check_fields, check_object, is_kind
from tako_backups.primitives.start_command import argv_problem, env_var_problem, parse_start
from tako_backups.primitives.text import printable


@pytest.mark.parametrize(("value", "kind", "expected"), [
    (1, int, True),
    (True, int, False),  # JSON true is not a number
    (True, bool, True),
    (True, (int, bool), True),
    (True, object, True),
    (1.5, (int, float), True),
    (None, (str, type(None)), True),
    ("x", int, False),
])
def test_kinds(value: Any, kind: Any, expected: bool) -> None:
    assert is_kind(value, kind) is expected


@pytest.mark.parametrize(("obj", "message"), [
    ([], "Thing must be a JSON object."),
    ({"a": 1, "z\n": 2, "b": 3}, "Thing has unknown field 'b'."),
    ({"z\n": 2}, "Thing has unknown field 'z\\n'."),
    ({}, "Thing is missing field 'a'."),
    ({"a": True}, "Thing field 'a' has the wrong type."),
    ({"a": 1, "o": 2}, "Thing field 'o' has the wrong type."),
])
def test_field_checks_in_order(obj: Any, message: str) -> None:
    with pytest.raises(FormatError) as caught:
        check_fields(obj, "Thing", {"a": int}, {"o": (str, type(None))})
    assert str(caught.value) == message


def test_a_good_object_is_returned() -> None:
    obj = {"a": 1, "o": None}
    assert check_fields(obj, "Thing", {"a": int}, {"o": (str, type(None))}) is obj
    assert check_object(obj, "Thing") is obj


@pytest.mark.parametrize(("argv", "problem"), [
    (["python", "app.py"], None),
    ([], "must be a non-empty list of non-empty strings"),
    ([""], "must be a non-empty list of non-empty strings"),
    (["python", ""], "must be a non-empty list of non-empty strings"),
    (["python", 3], "must be a non-empty list of non-empty strings"),
    (["py\0thon"], "contains a NUL character"),
])
def test_argv(argv: list[Any], problem: str | None) -> None:
    assert argv_problem(argv) == problem


@pytest.mark.parametrize(("name", "value", "problem"), [
    ("PORT", "8080", None),
    ("_private1", "", None),
    ("A=B", "x", "has an invalid name"),  # was: refused by the runtime and the protocol alike
    ("1ST", "x", "has an invalid name"),  # was: accepted by the server runtime
    ("MY-VAR", "x", "has an invalid name"),  # was: accepted by the server runtime
    ("", "x", "has an invalid name"),
    ("A", "x\0y", "has an invalid value"),
    ("A", 3, "has an invalid value"),
])
def test_env_vars(name: str, value: Any, problem: str | None) -> None:
    assert env_var_problem(name, value) == problem


@pytest.mark.parametrize(("value", "argv"), [
    (None, None),
    (["python", "app.py"], ("python", "app.py")),
    (["gunicorn", "app:create()", "-b", ":8000"], ("gunicorn", "app:create()", "-b", ":8000")),
])
def test_start_in_tako_toml(value: Any, argv: tuple[str, ...] | None) -> None:
    assert parse_start(value) == argv


NOT_ARRAY = "Validation error: 'start' must be a non-empty array of strings"


@pytest.mark.parametrize(("value", "message"), [
    ("python app.py", f'{NOT_ARRAY}\nWrite the command as an array, e.g. start = ["python", "app.py"].'),
    (7, NOT_ARRAY),
    ([], NOT_ARRAY),
    (["python", 1], NOT_ARRAY),
    (["python", " "], "Validation error: 'start' entries cannot be empty"),
    (["", 1], "Validation error: 'start' entries cannot be empty"),
    (["py\0"], "tako.toml key 'start' contains a NUL character."),
])
def test_bad_start_in_tako_toml(value: Any, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_start(value)
    assert str(caught.value) == message


@pytest.mark.parametrize(("text", "limit", "shown"), [
    ("demo", 80, "demo"),
    ("a\nb\tc\x00", 80, "a\\nb\\tc\\x00"),
    ("lone \ud800", 80, "lone \\ud800"),
    ("é and 日本", 80, "é and 日本"),
    ("x" * 10, 8, "xxxxx..."),
    ("\n" * 10, 8, "\\n\\n\\..."),
])
def test_printable(text: str, limit: int, shown: str) -> None:
    assert printable(text, limit) == shown
