"""One checker for the JSON objects we read: manifests, the index, requests, replies, secrets.

A field's kind is a type or a tuple of types (``object``: any value); ``bool`` is never taken for
``int`` (JSON ``true`` is not a number) unless ``bool`` (or ``object``) is one of the kinds.
Messages name the document and the field, never a field's value (it may be a secret); unknown
field names are shown escaped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import FormatError
from .text import printable

__all__ = ["Kind", "check_fields", "check_object", "is_kind"]

Kind = type | tuple[type, ...]


def is_kind(value: Any, kind: Kind) -> bool:
    """Whether ``value`` is of ``kind`` (``True``/``False`` only count as ``bool``)."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds and object not in kinds:
        return False
    return isinstance(value, kinds)


def check_object(obj: Any, what: str) -> dict[str, Any]:
    """``obj`` when it is a JSON object. Raises FormatError ``"{what} must be a JSON object."``."""
    if not isinstance(obj, dict):
        raise FormatError(f"{what} must be a JSON object.")
    return obj


def check_fields(obj: Any, what: str, required: Mapping[str, Kind],
                 optional: Mapping[str, Kind] | None = None) -> dict[str, Any]:
    """``obj`` when it is an object with every ``required`` field, no field outside ``required``
    and ``optional``, and each field of its kind.

    Raises FormatError, checking in this order: not an object, an unknown field (the first in
    sorted order), a missing field, a field of the wrong type.
    """
    optional = optional or {}
    check_object(obj, what)
    unknown = sorted(set(obj) - set(required) - set(optional))
    if unknown:
        raise FormatError(f"{what} has unknown field '{printable(str(unknown[0]))}'.")
    for name in required:
        if name not in obj:
            raise FormatError(f"{what} is missing field '{name}'.")
    for name, kind in {**required, **optional}.items():
        if name in obj and not is_kind(obj[name], kind):
            raise FormatError(f"{what} field '{name}' has the wrong type.")
    return obj
