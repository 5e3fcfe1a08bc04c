"""``connectors.parse_time``: LMS times as aware UTC datetimes, within the range the bridge accepts
(1970-01-01 to the end of 9998, UTC); a time outside it is a ValueError naming it, never an
OverflowError from deep inside ``datetime``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from connectors import EARLIEST, LATEST, parse_time


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-03-01T10:00:00Z", datetime(2026, 3, 1, 10, tzinfo=UTC)),
        ("2026-03-01T10:00:00+01:00", datetime(2026, 3, 1, 9, tzinfo=UTC)),
        ("2026-03-01T10:00:00", datetime(2026, 3, 1, 10, tzinfo=UTC)),
        (1772359200, datetime(2026, 3, 1, 10, tzinfo=UTC)),
        ("1772359200", datetime(2026, 3, 1, 10, tzinfo=UTC)),
        (1772359200.5, datetime(2026, 3, 1, 10, 0, 0, 500000, tzinfo=UTC)),
        ("1970-01-01T00:00:00Z", EARLIEST),
        ("9998-12-31T23:59:59Z", datetime(9998, 12, 31, 23, 59, 59, tzinfo=UTC)),
        ("9999-01-01T00:30:00+01:00", datetime(9998, 12, 31, 23, 30, tzinfo=UTC)),
    ],
)
def test_times_in_the_range_are_read_as_utc(value: Any, expected: datetime) -> None:
    assert parse_time(value) == expected


@pytest.mark.parametrize("value", [None, "", 0, -5, 0.0, float("nan"), "soon", "²", True, [], {}])
def test_what_is_no_time_at_all_is_none(value: Any) -> None:
    # Moodle sends 0 for "never"; garbage is treated as no time (callers fall back to the time received).
    assert parse_time(value) is None


@pytest.mark.parametrize(
    "value",
    [
        "9999-12-31T23:59:59-01:00",  # a valid datetime whose conversion to UTC overflowed
        "0001-01-01T00:00:00+01:00",  # and one below year 1
        "9999-01-01T00:00:00Z",
        "1969-12-31T23:59:59Z",
        10**20,  # Moodle timecreated far beyond any calendar
        "1" + "0" * 20,
        pytest.param("9" * 5000, id="5000 nines"),  # more digits than int() reads
        float(LATEST.timestamp()),
        1e300,
        float("inf"),
    ],
)
def test_times_out_of_range_are_a_value_error_naming_the_range(value: Any) -> None:
    with pytest.raises(ValueError, match="1970-01-01 to 9998-12-31"):
        parse_time(value)
