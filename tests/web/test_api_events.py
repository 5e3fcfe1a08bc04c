"""POST /api/v1/events: the module's trackEvent. Bad input gets a clear answer and stores nothing."""

from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from bridge.db.engine import Database
from bridge.db.models import Event


def an_event(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"platform": "demo", "event_key": "login-1", "kind": "login", "learner": "42"}
    body.update(changes)
    return body


def stored(database: Database) -> int:
    with database.read() as session:
        return session.scalar(select(func.count()).select_from(Event)) or 0


def post(client: FlaskClient, auth: dict[str, str], body: Any) -> Any:
    return client.post("/api/v1/events", json=body, headers=auth)


def assert_error(response: Any, status: int, code: str, mentions: str = "") -> None:
    assert response.status_code == status, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == code
    assert mentions in error["message"]


def test_a_new_event_is_accepted_with_its_id(
    client: FlaskClient, auth: dict[str, str], database: Database
) -> None:
    response = post(
        client, auth, an_event(course="DL101", score=0.75, occurred_at="2026-11-01T10:00:00+01:00")
    )
    assert response.status_code == 202
    assert response.get_json() == {"id": 1, "status": "accepted"}
    with database.read() as session:
        row = session.get(Event, 1)
        assert row is not None
        assert (row.kind, row.learner, row.course, row.score, row.status) == (
            "login",
            "42",
            "DL101",
            0.75,
            "pending",
        )
        assert row.occurred_at.isoformat() == "2026-11-01T09:00:00+00:00"


def test_the_same_event_posted_twice_is_stored_once(
    client: FlaskClient, auth: dict[str, str], database: Database
) -> None:
    first = post(client, auth, an_event())
    second = post(client, auth, an_event(data={"retry": True}))
    assert (first.status_code, second.status_code) == (202, 200)
    assert second.get_json() == {"id": first.get_json()["id"], "status": "duplicate"}
    assert stored(database) == 1


def test_the_same_key_on_another_platform_is_another_event(
    client: FlaskClient, auth: dict[str, str], database: Database
) -> None:
    post(client, auth, an_event())
    assert post(client, auth, an_event(platform="moodle1")).status_code == 202
    assert stored(database) == 2


def test_numeric_learner_ids_are_kept_as_text(
    client: FlaskClient, auth: dict[str, str], database: Database
) -> None:
    assert post(client, auth, an_event(learner=42, course=7)).status_code == 202
    with database.read() as session:
        row = session.get(Event, 1)
        assert row is not None and (row.learner, row.course) == ("42", "7")


def test_a_batch_answers_each_event(client: FlaskClient, auth: dict[str, str], database: Database) -> None:
    post(client, auth, an_event(event_key="a"))
    batch = {"events": [an_event(event_key="a"), an_event(event_key="b"), an_event(event_key="b")]}
    response = post(client, auth, batch)
    assert response.status_code == 202
    body = response.get_json()
    assert [r["status"] for r in body["results"]] == ["duplicate", "accepted", "duplicate"]
    assert body["results"][1]["id"] == body["results"][2]["id"]
    assert (body["accepted"], body["duplicates"]) == (1, 2)
    assert stored(database) == 2


def test_a_bare_list_is_a_batch_too(client: FlaskClient, auth: dict[str, str]) -> None:
    response = post(client, auth, [an_event(event_key="a"), an_event(event_key="b")])
    assert response.status_code == 202 and response.get_json()["accepted"] == 2


def test_a_batch_of_only_duplicates_answers_200(client: FlaskClient, auth: dict[str, str]) -> None:
    post(client, auth, an_event())
    assert post(client, auth, {"events": [an_event()]}).status_code == 200


def test_malformed_json_is_400(client: FlaskClient, auth: dict[str, str], database: Database) -> None:
    response = client.post(
        "/api/v1/events", data='{"platform": "demo",', headers=auth, content_type="application/json"
    )
    assert_error(response, 400, "malformed_json", "not valid JSON")
    assert stored(database) == 0


def test_invalid_utf8_is_400(client: FlaskClient, auth: dict[str, str]) -> None:
    response = client.post(
        "/api/v1/events", data=b'{"learner": "\xff"}', headers=auth, content_type="application/json"
    )
    assert_error(response, 400, "malformed_json")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_wrong_content_type_is_415(
    client: FlaskClient, auth: dict[str, str], database: Database, content_type: str | None
) -> None:
    response = client.post(
        "/api/v1/events", data='{"platform": "demo"}', headers=auth, content_type=content_type
    )
    assert_error(response, 415, "unsupported_media_type", "application/json")
    assert stored(database) == 0


def test_a_body_over_one_mebibyte_is_413(
    client: FlaskClient, auth: dict[str, str], database: Database
) -> None:
    response = post(client, auth, an_event(data={"padding": "x" * (1024 * 1024)}))
    assert_error(response, 413, "payload_too_large", "1048576 bytes")
    assert stored(database) == 0


@pytest.mark.parametrize("missing", ["platform", "event_key", "kind", "learner"])
def test_a_missing_field_is_422_naming_it(
    client: FlaskClient, auth: dict[str, str], database: Database, missing: str
) -> None:
    body = an_event()
    del body[missing]
    response = post(client, auth, body)
    assert_error(response, 422, "invalid_event", f"{missing}: Field required")
    assert response.get_json()["error"]["fields"][0]["field"] == missing
    assert stored(database) == 0


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"score": "high"}, "score"),
        ({"score": 1.5}, "score"),
        ({"score": True}, "score"),
        ({"occurred_at": "yesterday"}, "occurred_at"),
        ({"occurred_at": "2026-11-01T10:00:00"}, "occurred_at"),  # no timezone
        ({"data": [1, 2]}, "data"),
        ({"kind": "Not A Kind!"}, "kind"),
        ({"learner": ""}, "learner"),
        ({"event_key": "k" * 256}, "event_key"),
        ({"learner": {"id": 4}}, "learner"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_a_wrong_typed_or_invalid_field_is_422_naming_it(
    client: FlaskClient, auth: dict[str, str], database: Database, changes: dict[str, Any], field: str
) -> None:
    response = post(client, auth, an_event(**changes))
    assert_error(response, 422, "invalid_event", f"{field}:")
    assert stored(database) == 0


def test_an_untracked_kind_is_422(client: FlaskClient, auth: dict[str, str]) -> None:
    assert_error(
        post(client, auth, an_event(kind="teleport")), 422, "invalid_event", "kind: 'teleport' is not tracked"
    )


@pytest.mark.parametrize("body", ['"just a string"', "42", "null"])
def test_a_body_that_is_not_an_object_is_422(client: FlaskClient, auth: dict[str, str], body: str) -> None:
    response = client.post("/api/v1/events", data=body, headers=auth, content_type="application/json")
    assert_error(response, 422, "invalid_event", "body")


def test_an_unknown_platform_is_404(client: FlaskClient, auth: dict[str, str], database: Database) -> None:
    assert_error(post(client, auth, an_event(platform="atlantis")), 404, "unknown_platform", "'atlantis'")
    assert stored(database) == 0


def test_one_bad_event_in_a_batch_stores_none_and_names_its_index(
    client: FlaskClient, auth: dict[str, str], database: Database
) -> None:
    batch = {"events": [an_event(event_key="a"), an_event(event_key="b", score=2)]}
    assert_error(post(client, auth, batch), 422, "invalid_event", "events[1].score:")
    batch = {"events": [an_event(event_key="a"), an_event(event_key="b", platform="x")]}
    assert_error(post(client, auth, batch), 404, "unknown_platform", "events[1].platform")
    assert stored(database) == 0


def test_batches_are_bounded(client: FlaskClient, auth: dict[str, str]) -> None:
    assert_error(post(client, auth, {"events": []}), 422, "invalid_event", "events:")
    too_many = {"events": [an_event(event_key=str(i)) for i in range(1001)]}
    assert_error(post(client, auth, too_many), 422, "invalid_event", "events:")


@pytest.mark.parametrize(
    ("raw", "field", "reason"),
    [
        ('"learner": "\\u0000"', "learner", "NUL"),
        ('"learner": "4\\u00002"', "learner", "NUL"),
        ('"event_key": "a\\nb"', "event_key", "control character (U+000A)"),
        ('"course": "\\u001b[31mred"', "course", "control character (U+001B)"),
        ('"item": "a\\u0085b"', "item", "control character (U+0085)"),
        ('"learner": "\\ud800"', "learner", "unicode"),
        ('"platform": "demo\\u0000"', "platform", "NUL"),
        ('"data": {"note": "\\u0000"}', "data", "note contains a NUL character"),
        ('"data": {"\\u0000": 1}', "data", "contains a NUL character"),
        ('"data": {"deep": [["\\udfff"]]}', "data", "deep[0][0] contains a lone surrogate (U+DFFF)"),
        ('"data": ' + "[" * 40 + "]" * 40, "data", "dict"),
        ('"data": {"a": ' + '{"a": ' * 40 + "1" + "}" * 41, "data", "nests deeper than 32 levels"),
    ],
)
def test_text_the_inbox_cannot_store_and_read_back_is_422_on_both_databases(
    client: FlaskClient, auth: dict[str, str], database: Database, raw: str, field: str, reason: str
) -> None:
    """Regression: a learner "\\u0000" was stored, then stopped the worker (see bridge.domain.text)."""
    fields = '"platform": "demo", "event_key": "k1", "kind": "login", "learner": "42"'
    body = "{" + ", ".join(part for part in (fields, raw) if part) + "}"
    # The same field given twice: JSON's last one wins, so the bad value is the one validated.
    response = client.post("/api/v1/events", data=body, headers=auth, content_type="application/json")
    assert_error(response, 422, "invalid_event", f"{field}:")
    assert reason in response.get_json()["error"]["message"]
    assert stored(database) == 0


def test_text_with_tabs_and_line_breaks_is_stored_in_data_and_unicode_names_are_kept(
    client: FlaskClient, auth: dict[str, str], database: Database
) -> None:
    body = an_event(learner="Zoë 🦉", course="Ελληνικά", data={"comment": "line one\n\tline two"})
    assert post(client, auth, body).status_code == 202
    with database.read() as session:
        row = session.scalars(select(Event)).one()
    assert (row.learner, row.course, row.data) == ("Zoë 🦉", "Ελληνικά", {"comment": "line one\n\tline two"})
