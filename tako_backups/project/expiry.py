"""Credential expiry dates (``expires_on``): parsing user input and judging a stored date."""

from __future__ import annotations

import datetime as dt
import re

from ..errors import ConfigError

EXPIRY_WARNING_DAYS = 30
EXPIRES_ON_HINT = "Optional. Use YYYY-MM-DD, in 30 days, never, or leave blank."
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_RELATIVE = re.compile(r"in\s+([+-]?\d+)\s+days?", re.IGNORECASE)


def _now(now: dt.datetime | None) -> dt.datetime:
    return now if now is not None else dt.datetime.now(dt.UTC)


def _invalid(value: str) -> ConfigError:
    return ConfigError(f"Invalid secret expiry '{value}'. {EXPIRES_ON_HINT}")


def parse_date(value: str) -> dt.date:
    """A stored ``YYYY-MM-DD`` date. Raises ConfigError when it is not one."""
    if not _DATE.fullmatch(value):
        raise _invalid(value)
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise _invalid(value) from None


def normalize_expires_on(text: str | None, now: dt.datetime | None = None) -> str | None:
    """Turn user input into a stored expiry: ``YYYY-MM-DD`` stays, ``in N days`` (N > 0) becomes
    the UTC date N days from now, and blank / ``never`` / ``none`` mean no expiry (None).

    Raises ConfigError for anything else.
    """
    value = (text or "").strip()
    if not value or value.lower() in ("never", "none"):
        return None
    if _DATE.fullmatch(value):
        return parse_date(value).isoformat()
    match = _RELATIVE.fullmatch(value)
    if match:
        days = int(match.group(1))
        if days <= 0:
            raise _invalid(value)
        return (_now(now).astimezone(dt.UTC) + dt.timedelta(days=days)).date().isoformat()
    raise _invalid(value)


def expiry_moment(expires_on: str) -> dt.datetime:
    """Midnight UTC at the start of the stored date. Raises ConfigError for a malformed date."""
    day = parse_date(expires_on)
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def is_expired(expires_on: str | None, now: dt.datetime | None = None) -> bool:
    """Expired once midnight UTC of the date is at or before now. Raises ConfigError for a bad date."""
    return expires_on is not None and expiry_moment(expires_on) <= _now(now)


def expires_soon(expires_on: str | None, now: dt.datetime | None = None,
                 days: int = EXPIRY_WARNING_DAYS) -> bool:
    """Not yet expired, but expiring within ``days`` days. Raises ConfigError for a bad date."""
    if expires_on is None:
        return False
    moment, current = expiry_moment(expires_on), _now(now)
    return current < moment <= current + dt.timedelta(days=days)
