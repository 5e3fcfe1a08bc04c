"""JSON request bodies (``bridge.web.inputs``): a body that is not JSON, or holds numbers no database could
store, is a 400 naming the problem; a string no database can hold is a 422 naming its field; on every
route that reads one, and never a 500."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

# Every route that reads a JSON body, with an id that exists where the path needs one.
ROUTES = [
    ("POST", "/api/v1/events"),
    ("POST", "/api/v1/badges"),
    ("PUT", "/api/v1/badges/course-graduate"),
    ("PATCH", "/api/v1/badges/course-graduate"),
    ("POST", "/api/v1/awards"),
    ("POST", "/api/v1/awards/1/revoke"),
    ("POST", "/api/v1/approvals/1/approve"),
    ("PUT", "/api/v1/learners/demo/42/preferences"),
    ("PUT", "/api/v1/learners/demo/42/badge-profile"),
    ("POST", "/api/v1/lti/registrations"),
]


def send(client: FlaskClient, auth: dict[str, str], method: str, path: str, body: str | bytes) -> Any:
    return client.open(path, method=method, data=body, content_type="application/json", headers=auth)


def assert_malformed(response: Any, mentions: str) -> None:
    assert response.status_code == 400, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["code"] == "malformed_json"
    assert mentions in error["message"]


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize("opening", ["[", '{"a":'])
def test_a_body_nested_deeper_than_the_parser_goes_is_a_400_saying_so(
    client: FlaskClient, auth: dict[str, str], method: str, path: str, opening: str
) -> None:
    closing = "]" if opening == "[" else "}"
    body = opening * 100_000 + "1" + closing * 100_000
    assert_malformed(send(client, auth, method, path, body), "nested too deeply")


@pytest.mark.parametrize(
    ("number", "mentions"),
    [("NaN", "NaN"), ("Infinity", "Infinity"), ("-Infinity", "-Infinity"), ("1e400", "1e400")],
)
def test_numbers_json_has_not_are_a_400_naming_them(
    client: FlaskClient, auth: dict[str, str], number: str, mentions: str
) -> None:
    # Python's json module reads these; JSON (RFC 8259) has no such numbers and PostgreSQL's jsonb
    # refuses them, so an event carrying one in its data used to fail there with a 500.
    event = '{"platform": "demo", "event_key": "k", "kind": "login", "learner": "1", "data": {"x": %s}}'
    body = event % number
    assert_malformed(send(client, auth, "POST", "/api/v1/events", body), mentions)


def test_a_body_just_inside_the_limits_is_read(client: FlaskClient, auth: dict[str, str]) -> None:
    # Nesting the parser copes with reaches the model, which names the field (data is at most 32 deep).
    nested = '{"a":' * 200 + "1" + "}" * 200
    body = f'{{"platform": "demo", "event_key": "k", "kind": "login", "learner": "1", "data": {nested}}}'
    response = send(client, auth, "POST", "/api/v1/events", body)
    assert response.status_code == 422
    assert response.get_json()["error"]["message"].startswith("data:")
    large = '{"platform": "demo", "event_key": "k", "kind": "login", "learner": "1", "data": {"x": 1e300}}'
    assert send(client, auth, "POST", "/api/v1/events", large).status_code == 202


# Bodies each model accepts but for one string no database can hold (pydantic refuses lone surrogates in
# its own string fields, not NUL, nor either inside free JSON). PostgreSQL answered the first with a 500
# (found by schemathesis); SQLite would have stored a badge id cut at the NUL.
AWARD = '{"platform": "demo", "learner": "7", "badge": %s, "reason": %s}'
UNSTORABLE = [
    ("POST", "/api/v1/awards", AWARD % (r'"\u008d\u0000x"', '"r"')),
    ("POST", "/api/v1/awards", AWARD % ('"welcome"', r'"a\u0000"')),
    ("POST", "/api/v1/awards/1/revoke", r'{"reason": "a\u0000b"}'),
    ("POST", "/api/v1/approvals/1/approve", r'{"reason": "\u0000"}'),
    ("POST", "/api/v1/badges", r'{"id": "b", "name": "N\u0000", "description": "d", "criteria": {}}'),
    ("POST", "/api/v1/badges", r'{"id": "b", "name": "N", "description": "d", "criteria": {"\ud800": 1}}'),
]


@pytest.mark.parametrize(("method", "path", "body"), UNSTORABLE)
def test_a_string_no_database_can_hold_is_a_422_naming_it_on_every_route(
    client: FlaskClient, auth: dict[str, str], method: str, path: str, body: str
) -> None:
    response = send(client, auth, method, path, body)
    assert response.status_code == 422, response.get_data(as_text=True)
    message = response.get_json()["error"]["message"]
    assert "a NUL character" in message or "a lone surrogate (U+D800)" in message
