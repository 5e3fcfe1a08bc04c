"""``occurred_at`` in ``POST /api/v1/events``: accepted from 1970-01-01 to the end of 9998 (UTC, after
converting the offset given); outside it, a 422 naming the field, and nothing stored."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from bridge.db.engine import Database
from bridge.db.models import Event
from tests.web.test_api_events import an_event, assert_error, post, stored


@pytest.mark.parametrize(
    "moment",
    [
        "9999-12-31T23:59:59-01:00",  # 10000-01-01 in UTC: converting it overflowed (a 500)
        "0001-01-01T00:00:00+01:00",  # year 0 in UTC: the same the other way
        "9999-06-01T00:00:00Z",
        "1969-12-31T23:59:59Z",
        -1,
    ],
)
def test_a_time_out_of_range_is_a_422_naming_occurred_at(
    client: FlaskClient, auth: dict[str, str], database: Database, moment: Any
) -> None:
    response = post(client, auth, an_event(occurred_at=moment))
    assert_error(response, 422, "invalid_event", "occurred_at")
    batch = post(
        client, auth, {"events": [an_event(event_key="a"), an_event(event_key="b", occurred_at=moment)]}
    )
    assert_error(batch, 422, "invalid_event", "events[1].occurred_at")
    assert stored(database) == 0


@pytest.mark.parametrize(
    ("moment", "stored_as"),
    [
        ("1970-01-01T00:00:00Z", "1970-01-01T00:00:00+00:00"),
        ("1970-01-01T01:00:00+01:00", "1970-01-01T00:00:00+00:00"),
        ("9998-12-31T23:59:59Z", "9998-12-31T23:59:59+00:00"),
        ("9999-01-01T00:30:00+01:00", "9998-12-31T23:30:00+00:00"),
    ],
)
def test_times_at_the_edges_of_the_range_are_accepted(
    client: FlaskClient, auth: dict[str, str], database: Database, moment: str, stored_as: str
) -> None:
    response = post(client, auth, an_event(occurred_at=moment))
    assert response.status_code == 202, response.get_json()
    with database.read() as session:
        row = session.get(Event, response.get_json()["id"])
        assert row is not None
        assert row.occurred_at.isoformat() == stored_as
