from __future__ import annotations

import datetime as dt

import pytest

from tako_backups.errors import ConfigError
from tako_backups.project.expiry import expires_soon, is_expired, normalize_expires_on

NOW = dt.datetime(2026, 3, 10, 15, 30, tzinfo=dt.UTC)


def day(offset: int) -> str:
    return (NOW.date() + dt.timedelta(days=offset)).isoformat()


@pytest.mark.parametrize("text", ["", "   ", None, "never", "NEVER", "none", "None"])
def test_blank_never_and_none_mean_no_expiry(text: str | None) -> None:
    assert normalize_expires_on(text, NOW) is None


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("2027-01-31", "2027-01-31"),
        ("  2027-01-31 ", "2027-01-31"),
        ("in 30 days", "2026-04-09"),
        ("in 1 day", "2026-03-11"),
        ("IN 2 DAYS", "2026-03-12"),
    ],
)
def test_dates_and_relative_days_are_stored_as_utc_dates(text: str, stored: str) -> None:
    assert normalize_expires_on(text, NOW) == stored


def test_in_n_days_uses_the_utc_date() -> None:
    late_pacific = dt.datetime(2026, 3, 10, 23, 0, tzinfo=dt.timezone(dt.timedelta(hours=-8)))
    assert normalize_expires_on("in 1 day", late_pacific) == "2026-03-12"


@pytest.mark.parametrize(
    "text", ["in 0 days", "in -3 days", "tomorrow", "2027-02-30", "2027-1-5", "in x days"]
)
def test_bad_expiry_input_is_rejected_with_the_accepted_forms(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        normalize_expires_on(text, NOW)
    assert str(caught.value) == (
        f"Invalid secret expiry '{text.strip()}'. "
        "Optional. Use YYYY-MM-DD, in 30 days, never, or leave blank."
    )


@pytest.mark.parametrize(
    ("offset", "expired", "soon"),
    [
        (-1, True, False),  # yesterday
        (0, True, False),  # today: midnight UTC already passed
        (1, False, True),  # tomorrow
        (30, False, True),  # in 30 days: still inside the window
        (31, False, False),  # in 31 days: outside the window
    ],
)
def test_expiry_edges(offset: int, expired: bool, soon: bool) -> None:
    assert is_expired(day(offset), NOW) is expired
    assert expires_soon(day(offset), NOW) is soon


def test_midnight_exactly_counts_as_expired() -> None:
    midnight = dt.datetime(2026, 3, 10, tzinfo=dt.UTC)
    assert is_expired("2026-03-10", midnight)
    assert not is_expired("2026-03-10", midnight - dt.timedelta(seconds=1))


def test_no_expiry_never_expires() -> None:
    assert not is_expired(None, NOW)
    assert not expires_soon(None, NOW)
