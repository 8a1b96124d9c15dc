"""JSON read the way Tako's server reads it (serde_json), for request bodies.

Python's ``json`` is more lenient than serde_json in ways a peer can use, so :func:`loads_strict`
refuses what serde_json refuses:

- bytes that are not UTF-8 (a byte-order mark included), and strings or keys holding a lone
  UTF-16 surrogate (``"\\ud800"``: serde_json will not put one in a ``String``);
- ``NaN``, ``Infinity`` and ``-Infinity``, and numbers out of the range of a 64-bit float
  (``1e400``; integers serde_json cannot hold as u64/i64 are read as floats, so an integer past
  the float range is refused too);
- containers nested deeper than serde_json's recursion limit (:data:`MAX_DEPTH`), without ever
  raising RecursionError;
- empty input and trailing data (as ``json`` does).

Objects come back as :class:`JsonObject`, a dict that remembers which keys appeared more than once,
so a reader can refuse a duplicated field it knows (serde's derived structs do) and ignore the
others (as serde ignores unknown fields).
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import FormatError

__all__ = ["MAX_DEPTH", "JsonObject", "duplicate_keys", "loads_strict"]

# serde_json starts with a remaining depth of 128 and fails when an array or object brings it to 0:
# 127 nested containers are read, the 128th is refused.
MAX_DEPTH = 127


class JsonObject(dict[str, Any]):
    """A decoded JSON object; ``duplicates`` names the keys that appeared more than once (the last
    value is kept)."""

    __slots__ = ("duplicates",)

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__()
        seen: set[str] = set()
        for key, value in pairs:
            if key in self:
                seen.add(key)
            self[key] = value
        self.duplicates = frozenset(seen)


def duplicate_keys(obj: Any) -> frozenset[str]:
    """The keys of ``obj`` that appeared more than once (none for a plain dict)."""
    return obj.duplicates if isinstance(obj, JsonObject) else frozenset()


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError("number out of range")
    return value


def _int(text: str) -> int:
    value = int(text)
    try:
        float(value)
    except OverflowError:
        raise ValueError("number out of range") from None
    return value


def loads_strict(data: bytes) -> Any:
    """Decode ``data`` as serde_json would. Raises FormatError saying what is wrong (never
    quoting the input: it may carry secrets)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(f"The body is not UTF-8 (byte {exc.start}).") from None
    try:
        value = json.loads(text, object_pairs_hook=JsonObject, parse_constant=_refuse_constant,
                           parse_float=_float, parse_int=_int)
    except RecursionError:
        raise FormatError(f"The body nests deeper than {MAX_DEPTH} levels.") from None
    except ValueError as exc:
        raise FormatError(f"The body is not valid JSON: {_reason(exc)}.") from None
    _check_tree(value)
    return value


def _reason(exc: ValueError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    return str(exc).split(":")[0]


def _check_tree(value: Any) -> None:
    """Refuse lone surrogates in strings and keys, and nesting past :data:`MAX_DEPTH`."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _check_text(item)
        elif isinstance(item, (dict, list)):
            depth += 1
            if depth > MAX_DEPTH:
                raise FormatError(f"The body nests deeper than {MAX_DEPTH} levels.")
            if isinstance(item, dict):
                for key in item:
                    _check_text(key)
                stack.extend((child, depth) for child in item.values())
            else:
                stack.extend((child, depth) for child in item)


def _check_text(text: str) -> None:
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise FormatError("The body holds a lone UTF-16 surrogate escape.") from None
