"""How Tako's tako.toml errors read: ``Validation error: {text}`` for its own checks, and
``Failed to parse TOML: {serde's text}`` for the tables it reads with serde (``unknown field `x`,
expected one of `a`, `b```, ``invalid type: integer `5`, expected a string``, ...). Our hint, when
there is one, follows on its own line.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError

U32_MAX = 2**32 - 1
# Our settings, which belong in tako-backups.toml: named in the hint when written in tako.toml.
OUR_KEYS = ("every", "retention_days", "keep_last", "keep_hourly", "keep_daily", "keep_weekly",
            "keep_monthly", "copy_to", "format", "notify", "secrets", "backups")


def invalid(text: str, hint: str | None = None) -> ConfigError:
    """``Validation error: {text}``, our hint on its own line."""
    return ConfigError(f"Validation error: {text}" + (f"\n{hint}" if hint else ""))


def serde_failure(text: str, hint: str | None = None) -> ConfigError:
    """``Failed to parse TOML: {serde's text}``, our hint on its own line."""
    return ConfigError(f"Failed to parse TOML: {text}" + (f"\n{hint}" if hint else ""))


def our_key_hint(key: str, where: str) -> str | None:
    if key in OUR_KEYS:
        return f"`{key}` is a tako-backups setting: put it under {where} in tako-backups.toml."
    return None


def one_of(names: tuple[str, ...]) -> str:
    """serde's list of expected names: `` `a` ``, `` `a` or `b` ``, ``one of `a`, `b`, `c` ``."""
    quoted = [f"`{name}`" for name in names]
    if len(quoted) == 1:
        return quoted[0]
    if len(quoted) == 2:
        return f"{quoted[0]} or {quoted[1]}"
    return "one of " + ", ".join(quoted)


def unexpected(value: Any) -> str:
    """How serde names a TOML value it did not expect: ``integer `5```, ``string "x"``, ..."""
    if isinstance(value, bool):
        return f"boolean `{str(value).lower()}`"
    if isinstance(value, int):
        return f"integer `{value}`"
    if isinstance(value, float):
        return f"floating point `{value}`"
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'string "{escaped}"'
    if isinstance(value, list):
        return "sequence"
    if isinstance(value, (dt.date, dt.time)):
        return "datetime"
    return "map"


def type_error(value: Any, expected: str) -> ConfigError:
    return serde_failure(f"invalid type: {unexpected(value)}, expected {expected}")


def serde_keys(table: Any, fields: tuple[str, ...], struct: str, where: str) -> list[str]:
    """The keys of a table Tako reads with serde's deny_unknown_fields, in the order serde meets
    them in Tako's re-serialized copy (plain values, then tables, each sorted by name). The caller
    checks each key in turn with :func:`known_field` before its value, as serde does.

    Raises ConfigError when ``table`` is not a table.
    """
    if not isinstance(table, Mapping):
        raise type_error(table, f"struct {struct}")
    return sorted(table, key=lambda k: (isinstance(table[k], Mapping), k))


def known_field(key: str, fields: tuple[str, ...], where: str) -> None:
    """Raises serde's ``unknown field`` ConfigError when ``key`` is not among ``fields``."""
    if key not in fields:
        raise serde_failure(f"unknown field `{key}`, expected {one_of(fields)}", our_key_hint(key, where))


def serde_string(value: Any) -> None:
    if not isinstance(value, str):
        raise type_error(value, "a string")


def serde_strings(value: Any) -> None:
    if not isinstance(value, list):
        raise type_error(value, "a sequence")
    for item in value:
        serde_string(item)


def serde_bool(value: Any) -> None:
    if not isinstance(value, bool):
        raise type_error(value, "a boolean")


def serde_u32(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise type_error(value, "u32")
    if not 0 <= value <= U32_MAX:
        raise serde_failure(f"invalid value: integer `{value}`, expected u32")


def serde_variant(value: Any, variants: tuple[str, ...], enum: str) -> None:
    if not isinstance(value, str):
        raise type_error(value, f"enum {enum}")
    if value not in variants:
        raise serde_failure(f"unknown variant `{value}`, expected {one_of(variants)}")
