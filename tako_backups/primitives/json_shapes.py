"""One checker for the JSON objects we read: manifests, the index, requests, replies, secrets.

A field's kind is a type or a tuple of types (``object``: any value); ``bool`` is never taken for
``int`` (JSON ``true`` is not a number) unless ``bool`` (or ``object``) is one of the kinds.
Messages name the document and the field, never a field's value (it may be a secret); unknown
field names are shown escaped. Wire shapes that Tako's serde structs define ignore unknown fields
(``ignore_unknown``) but refuse a known field given twice, as serde does (the decoder,
:func:`~.strict_json.loads_strict`, remembers duplicated keys).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import FormatError
from .strict_json import duplicate_keys
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
                 optional: Mapping[str, Kind] | None = None, *,
                 ignore_unknown: bool = False) -> dict[str, Any]:
    """``obj`` when it is an object with every ``required`` field, no field outside ``required``
    and ``optional``, and each field of its kind. With ``ignore_unknown`` other fields are allowed
    and left out of the dict returned (Tako's serde structs ignore them).

    Raises FormatError, checking in this order: not an object, a field given twice (a known one,
    with ``ignore_unknown``), an unknown field (the first in sorted order; not with
    ``ignore_unknown``), a missing field, a field of the wrong type.
    """
    optional = optional or {}
    check_object(obj, what)
    known = set(required) | set(optional)
    twice = sorted(duplicate_keys(obj) & known if ignore_unknown else duplicate_keys(obj))
    if twice:
        raise FormatError(f"{what} has field '{printable(str(twice[0]))}' more than once.")
    if ignore_unknown:
        obj = {name: obj[name] for name in obj if name in known}
    unknown = sorted(set(obj) - known)
    if unknown:
        raise FormatError(f"{what} has unknown field '{printable(str(unknown[0]))}'.")
    for name in required:
        if name not in obj:
            raise FormatError(f"{what} is missing field '{name}'.")
    for name, kind in {**required, **optional}.items():
        if name in obj and not is_kind(obj[name], kind):
            raise FormatError(f"{what} field '{name}' has the wrong type.")
    return obj
