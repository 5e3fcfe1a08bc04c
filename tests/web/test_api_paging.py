"""Every list of the REST API pages by an opaque cursor; events filter by status; learner ids may hold
``/``; a learner's email can be set before their first event; awards carry their tier."""

from __future__ import annotations

import base64
import json

import pytest
from flask.testing import FlaskClient
from sqlalchemy import update

from bridge.clock import utcnow
from bridge.db.engine import Database
from bridge.db.models import Approval, Event, Learner
from bridge.db.models_sync import SyncRun
from bridge.services.audit import record_audit
from bridge.settings import Settings
from tests.helpers import learning_event, store
from tests.issuing.support import award


def pages(
    client: FlaskClient, path: str, key: str, auth: dict[str, str], between: object = None
) -> list[list[int]]:
    """The ids on each page of ``path``, following next_cursor to its end; ``between`` runs after each."""
    seen: list[list[int]] = []
    url = path
    while True:
        response = client.get(url, headers=auth)
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        seen.append([row["id"] for row in body[key]])
        if callable(between):
            between()
        if body["next_cursor"] is None:
            return seen
        separator = "&" if "?" in path else "?"
        url = f"{path}{separator}cursor={body['next_cursor']}"


def test_awards_page_newest_first_and_carry_their_tier(
    client: FlaskClient, database: Database, settings: Settings, auth: dict[str, str]
) -> None:
    ids = [award(database, settings, "welcome", str(n)) for n in range(5)]
    tiered = award(database, settings, "rising-star", "0", tier="bronze")
    assert pages(client, "/api/v1/awards?limit=2", "awards", auth) == [
        [tiered, ids[4]],
        [ids[3], ids[2]],
        ids[1::-1],
    ]
    assert pages(client, "/api/v1/awards?limit=4&order=oldest", "awards", auth) == [ids[:4], [ids[4], tiered]]
    first = client.get("/api/v1/awards?limit=1", headers=auth).get_json()["awards"][0]
    assert (first["badge_id"], first["tier"]) == ("rising-star", "bronze")
    plain = client.get("/api/v1/awards?order=oldest&limit=1", headers=auth).get_json()["awards"][0]
    assert plain["tier"] == ""


def test_paging_while_rows_are_inserted_sees_each_existing_row_once(
    client: FlaskClient, database: Database, settings: Settings, auth: dict[str, str]
) -> None:
    existing = [award(database, settings, "welcome", f"before-{n}") for n in range(7)]
    made_meanwhile: list[int] = []

    def another() -> None:
        made_meanwhile.append(award(database, settings, "welcome", f"during-{len(made_meanwhile)}"))

    for order in ("newest", "oldest"):
        seen = [
            i
            for page in pages(client, f"/api/v1/awards?limit=3&order={order}", "awards", auth, another)
            for i in page
        ]
        assert len(seen) == len(set(seen)), order  # nothing twice
        assert sorted(i for i in seen if i in existing) == existing, order  # nothing skipped
        if order == "newest":  # newer rows land before the first page: none shows up mid-way
            assert [i for i in seen if i not in existing] == []


def test_events_filter_by_status_and_page(
    client: FlaskClient, database: Database, auth: dict[str, str]
) -> None:
    ids = store(database, *(learning_event(f"e{n}") for n in range(5)))
    with database.write() as session:
        session.execute(update(Event).where(Event.id.in_(ids[:3])).values(status="failed", last_error="boom"))
    assert pages(client, "/api/v1/events?status=failed&limit=2", "events", auth) == [
        [ids[2], ids[1]],
        [ids[0]],
    ]
    pending = client.get("/api/v1/events?status=pending", headers=auth).get_json()["events"]
    assert [(e["id"], e["status"]) for e in pending] == [(ids[4], "pending"), (ids[3], "pending")]
    failed = client.get("/api/v1/events?status=failed&limit=1", headers=auth).get_json()["events"][0]
    assert (failed["last_error"], failed["learner"]) == ("boom", "42")
    assert len(client.get("/api/v1/events", headers=auth).get_json()["events"]) == 5
    wrong = client.get("/api/v1/events?status=broken", headers=auth)
    assert wrong.status_code == 422 and wrong.get_json()["error"]["message"].startswith("status:")


def test_audit_sync_runs_approvals_and_notifications_page_too(
    client: FlaskClient, database: Database, settings: Settings, auth: dict[str, str]
) -> None:
    with database.write() as session:
        for n in range(3):
            record_audit(session, "tests", "note", reason=f"entry {n}")
    entries = pages(client, "/api/v1/audit?limit=2", "entries", auth)
    assert [len(p) for p in entries] == [2, 1] and entries[0][0] > entries[0][1] > entries[1][0]

    runs = []
    with database.write() as session:
        for platform in ("demo", "moodle1", "demo"):
            run = SyncRun(
                platform=platform,
                full=False,
                trigger="cli",
                holder="t",
                status="succeeded",
                started_at=utcnow(),
                problems=[],
            )
            session.add(run)
            session.flush()
            runs.append(run.id)
    assert pages(client, "/api/v1/sync/runs?limit=2", "runs", auth) == [[runs[2], runs[1]], [runs[0]]]
    assert pages(client, "/api/v1/sync/runs?platform=demo&limit=1", "runs", auth) == [[runs[2]], [runs[0]]]

    with database.write() as session:
        learner = Learner(platform="demo", lms_user_id="42", pseudonym="P", created_at=utcnow())
        session.add(learner)
        session.flush()
        approvals = []
        for tier in ("", "a", "b"):
            row = Approval(
                learner_id=learner.id,
                badge_id="welcome",
                tier=tier,
                criteria_version=1,
                earned_at=utcnow(),
                requested_at=utcnow(),
            )
            session.add(row)
            session.flush()
            approvals.append(row.id)
    assert pages(client, "/api/v1/approvals?limit=2", "approvals", auth) == [approvals[:2], approvals[2:]]
    assert pages(client, "/api/v1/approvals?limit=2&order=newest", "approvals", auth) == [
        approvals[:0:-1],
        approvals[:1],
    ]

    for badge in ("welcome", "rising-star"):
        award(database, settings, badge, "42", tier="bronze" if badge == "rising-star" else "")
    notified = pages(client, "/api/v1/learners/demo/42/notifications?limit=1", "notifications", auth)
    assert [len(p) for p in notified] == [1, 1] and notified[0][0] > notified[1][0]


@pytest.mark.parametrize(
    "cursor",
    [
        "nonsense",
        "%FF%FE",
        base64.urlsafe_b64encode(b'{"l":"events","o":"newest","a":3}').decode(),  # another list's
        base64.urlsafe_b64encode(b'{"l":"awards","o":"newest","a":-3}').decode(),
        base64.urlsafe_b64encode(b'{"l":"awards","o":"sideways","a":3}').decode(),
        base64.urlsafe_b64encode(b"[" * 5000).decode(),
        "x" * 300,
    ],
)
def test_a_bad_cursor_is_a_400_naming_it(client: FlaskClient, auth: dict[str, str], cursor: str) -> None:
    response = client.get(f"/api/v1/awards?cursor={cursor}", headers=auth)
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "invalid_cursor" and error["message"].startswith("cursor:")


def test_a_cursor_continues_its_own_order(
    client: FlaskClient, database: Database, settings: Settings, auth: dict[str, str]
) -> None:
    for n in range(3):
        award(database, settings, "welcome", str(n))
    cursor = client.get("/api/v1/awards?limit=1", headers=auth).get_json()["next_cursor"]
    assert json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))["o"] == "newest"
    mixed = client.get(f"/api/v1/awards?limit=1&order=oldest&cursor={cursor}", headers=auth)
    assert mixed.status_code == 400 and "order=newest" in mixed.get_json()["error"]["message"]


@pytest.mark.parametrize("learner", ["a/b", "course/7/user/9", "x/progress"])
def test_learner_routes_take_ids_with_slashes(
    client: FlaskClient, database: Database, settings: Settings, auth: dict[str, str], learner: str
) -> None:
    award(database, settings, "welcome", learner)
    encoded = learner.replace("/", "%2F")
    for path in (f"/api/v1/learners/demo/{learner}", f"/api/v1/learners/demo/{encoded}"):
        progress = client.get(f"{path}/progress", headers=auth)
        assert progress.status_code == 200 and progress.get_json()["learner"] == learner
        notifications = client.get(f"{path}/notifications", headers=auth)
        assert notifications.status_code == 200 and notifications.get_json()["notifications"]
        profile = client.put(f"{path}/badge-profile", json={"public": False}, headers=auth)
        assert profile.status_code == 200
        preferences = client.put(f"{path}/preferences", json={"leaderboard_opt_out": True}, headers=auth)
        assert preferences.status_code == 200
    awards = client.get("/api/v1/awards", query_string={"learner": learner}, headers=auth).get_json()[
        "awards"
    ]
    assert [a["learner"] for a in awards] == [learner]


def test_an_email_set_before_the_first_event_is_kept_for_the_learner(
    client: FlaskClient, database: Database, settings: Settings, auth: dict[str, str]
) -> None:
    body = {"public": False, "email": "New.Learner@Example.edu"}
    response = client.put("/api/v1/learners/demo/new%2F1/badge-profile", json=body, headers=auth)
    assert response.status_code == 200 and response.get_json()["email"] == "new.learner@example.edu"
    store(database, learning_event("first", learner="new/1"))
    award(database, settings, "welcome", "new/1")
    again = client.put("/api/v1/learners/demo/new%2F1/badge-profile", json={"public": True}, headers=auth)
    assert again.get_json()["email"] == "new.learner@example.edu"  # the same learner, the email kept
