"""Running the rules at run time over the REST API: badges, manual awards, approvals, audit, progress."""

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from bridge.app import create_app
from bridge.db.engine import Database
from bridge.db.models import Approval, Award, Badge, Learner
from bridge.domain.events import LearningEvent
from bridge.settings import Settings
from bridge.worker import Worker
from tests.conftest import make_settings
from tests.helpers import START, awards_of, learning_event, store


def drain(database: Database, settings: Settings) -> None:
    Worker(database, settings).run(threading.Event(), drain=True)


def assert_error(response: Any, status: int, code: str, mentions: str = "") -> None:
    assert response.status_code == status, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == code, error
    assert mentions in error["message"], error["message"]


def a_badge(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "id": "three-logins",
        "name": "Three Logins",
        "description": "Signed in three times.",
        "image": "welcome.svg",
        "points": 7,
        "criteria": {"groups": [{"requirements": [{"kinds": ["login"], "target": 3}]}]},
    }
    document.update(changes)
    return document


def points_of(database: Database, learner: str = "42") -> int:
    with database.read() as session:
        return session.scalar(select(Learner.points).where(Learner.lms_user_id == learner)) or 0


# --- badges -------------------------------------------------------------------------------------


def test_a_badge_created_over_the_api_reaches_a_running_worker_within_its_refresh_time(
    client: FlaskClient, auth: dict[str, str], database: Database, settings: Settings, tmp_path: Path
) -> None:
    quick = make_settings(settings.effective_database_url, tmp_path, worker={"rules_refresh_seconds": 0.2})
    worker = Worker(database, quick)  # running, with its rule book loaded
    store(database, learning_event("warm-up"))
    worker.run(threading.Event(), drain=True)

    created = client.post("/api/v1/badges", json=a_badge(), headers=auth)
    assert created.status_code == 201, created.get_json()
    assert created.get_json()["criteria_version"] == 1 and created.get_json()["source"] == "api"

    time.sleep(0.3)
    store(database, learning_event("l1", minutes=1), learning_event("l2", minutes=2))
    worker.run(threading.Event(), drain=True)
    assert ("42", "three-logins") in awards_of(database)


def test_editing_the_criteria_of_an_awarded_badge_makes_a_new_version_and_awards_keep_theirs(
    client: FlaskClient, auth: dict[str, str], database: Database, settings: Settings
) -> None:
    client.post("/api/v1/badges", json=a_badge(), headers=auth)
    store(database, *(learning_event(f"l{i}", minutes=i) for i in range(3)))
    drain(database, settings)
    harder = a_badge(criteria={"groups": [{"requirements": [{"kinds": ["login"], "target": 5}]}]})
    updated = client.put("/api/v1/badges/three-logins", json=harder, headers=auth)
    assert updated.status_code == 200 and updated.get_json()["criteria_version"] == 2
    renamed = client.put("/api/v1/badges/three-logins", json=harder | {"name": "Regular"}, headers=auth)
    assert renamed.get_json()["criteria_version"] == 2  # only criteria and tiers make a new version
    with database.read() as session:
        award = session.scalars(select(Award).where(Award.badge_id == "three-logins")).one()
    assert award.criteria_version == 1


def test_disabling_a_badge_stops_its_evaluation(
    client: FlaskClient, auth: dict[str, str], database: Database, settings: Settings
) -> None:
    response = client.patch("/api/v1/badges/welcome", json={"enabled": False}, headers=auth)
    assert response.status_code == 200 and response.get_json()["enabled"] is False
    store(database, learning_event("l1"))
    drain(database, settings)
    assert awards_of(database) == []
    client.patch("/api/v1/badges/welcome", json={"enabled": True}, headers=auth)
    store(database, learning_event("l2", minutes=1))
    drain(database, settings)
    assert awards_of(database) == [("42", "welcome")]


def test_a_badge_edited_over_the_api_is_no_longer_overwritten_by_its_file(
    client: FlaskClient, auth: dict[str, str], database: Database, settings: Settings
) -> None:
    from bridge.bootstrap import open_database

    document = client.get("/api/v1/badges/welcome", headers=auth).get_json()
    client.put("/api/v1/badges/welcome", json=a_badge(id="welcome", name="Hello"), headers=auth)
    open_database(settings).dispose()  # a restart syncs the template files again
    with database.read() as session:
        badge = session.get(Badge, "welcome")
        assert badge is not None and badge.name == "Hello" and badge.source == "api"
    assert document["source"] == "file"


@pytest.mark.parametrize(
    ("document", "status", "code", "mentions"),
    [
        (a_badge(colour="red"), 422, "invalid_badge", "colour: unknown key"),
        (
            a_badge(
                criteria={
                    "groups": [{"requirements": [{"kinds": ["login"], "target": 1, "filter": "score >"}]}]
                }
            ),
            422,
            "invalid_badge",
            "criteria.groups[0].requirements[0].filter: syntax error",
        ),
        (a_badge(image="missing.svg"), 422, "invalid_badge", "image"),
        (a_badge(prerequisites=["nope"]), 422, "invalid_badge", "'nope' is not a badge"),
        (a_badge(id="welcome"), 409, "badge_exists", "welcome"),
        ([1, 2], 422, "invalid_badge", "expected a badge document"),
    ],
)
def test_a_bad_badge_document_is_refused_naming_the_problem(
    client: FlaskClient, auth: dict[str, str], document: Any, status: int, code: str, mentions: str
) -> None:
    assert_error(client.post("/api/v1/badges", json=document, headers=auth), status, code, mentions)


def test_a_prerequisite_cycle_is_refused(client: FlaskClient, auth: dict[str, str]) -> None:
    client.post("/api/v1/badges", json=a_badge(id="first", prerequisites=["welcome"]), headers=auth)
    client.post("/api/v1/badges", json=a_badge(id="second", prerequisites=["first"]), headers=auth)
    response = client.put(
        "/api/v1/badges/first", json=a_badge(id="first", prerequisites=["second"]), headers=auth
    )
    assert_error(response, 422, "invalid_badge", "cycle")


def test_unknown_badges_answer_404(client: FlaskClient, auth: dict[str, str]) -> None:
    assert_error(client.get("/api/v1/badges/nope", headers=auth), 404, "unknown_badge")
    assert_error(
        client.put("/api/v1/badges/nope", json=a_badge(id="nope"), headers=auth), 404, "unknown_badge"
    )
    assert_error(
        client.patch("/api/v1/badges/nope", json={"enabled": True}, headers=auth), 404, "unknown_badge"
    )


# --- manual awards, revocation, audit -----------------------------------------------------------


def test_an_instructor_awards_and_revokes_by_hand_and_both_are_audited(
    client: FlaskClient, auth: dict[str, str], database: Database
) -> None:
    given = client.post(
        "/api/v1/awards",
        json={"platform": "demo", "learner": "42", "badge": "level-up", "reason": "finished offline"},
        headers=auth,
    )
    assert given.status_code == 201, given.get_json()
    award_id = given.get_json()["award_id"]
    with database.read() as session:
        award = session.get(Award, award_id)
        assert award is not None and award.granted_by == "tests" and award.reason == "finished offline"
    points = points_of(database)
    assert points > 0

    revoked = client.post(
        f"/api/v1/awards/{award_id}/revoke", json={"reason": "awarded by mistake"}, headers=auth
    )
    assert revoked.status_code == 200
    assert points_of(database) == 0
    with database.read() as session:
        award = session.get(Award, award_id)
        assert (
            award is not None and award.revoked_by == "tests" and award.revoked_reason == "awarded by mistake"
        )

    entries = client.get("/api/v1/audit", headers=auth).get_json()["entries"]
    assert [(e["action"], e["actor"], e["reason"]) for e in entries] == [
        ("revoke", "tests", "awarded by mistake"),
        ("award", "tests", "finished offline"),
    ]
    assert entries[0]["learner"] == "42" and entries[0]["badge_id"] == "level-up"


def test_a_revoked_award_is_final_for_the_rules_and_for_people(
    client: FlaskClient, auth: dict[str, str], database: Database, settings: Settings
) -> None:
    store(database, learning_event("l1"))
    drain(database, settings)
    [award_id] = [a["id"] for a in client.get("/api/v1/awards", headers=auth).get_json()["awards"]]
    client.post(f"/api/v1/awards/{award_id}/revoke", json={"reason": "shared account"}, headers=auth)
    store(database, learning_event("l2", minutes=1))
    drain(database, settings)
    with database.read() as session:
        assert session.scalars(select(Award.revoked_at)).all() != [None]
        assert len(session.scalars(select(Award)).all()) == 1
    again = client.post(
        "/api/v1/awards",
        json={"platform": "demo", "learner": "42", "badge": "welcome", "reason": "x"},
        headers=auth,
    )
    assert_error(again, 409, "award_revoked", "final")
    twice = client.post(f"/api/v1/awards/{award_id}/revoke", json={"reason": "again"}, headers=auth)
    assert_error(twice, 409, "already_revoked")


def test_a_manual_award_of_a_prerequisite_unlocks_a_completed_dependant(
    client: FlaskClient, auth: dict[str, str], database: Database, settings: Settings
) -> None:
    # course-graduate: DL101 completed, and the course-ready badge held first.
    store(database, LearningEvent("demo", "grad", "course_completed", "7", START, course="DL101"))
    drain(database, settings)
    assert ("7", "course-graduate") not in awards_of(database)
    response = client.post(
        "/api/v1/awards",
        json={"platform": "demo", "learner": "7", "badge": "course-ready", "reason": "modules done on paper"},
        headers=auth,
    )
    assert response.status_code == 201
    assert ("7", "course-graduate") in awards_of(database)


@pytest.mark.parametrize(
    ("body", "status", "code", "mentions"),
    [
        ({"platform": "demo", "learner": "42", "badge": "welcome"}, 422, "invalid_award", "reason"),
        (
            {"platform": "demo", "learner": "42", "badge": "welcome", "reason": " "},
            422,
            "invalid_award",
            "reason",
        ),
        (
            {"platform": "nope", "learner": "42", "badge": "welcome", "reason": "r"},
            404,
            "unknown_platform",
            "nope",
        ),
        ({"platform": "demo", "learner": "42", "badge": "nope", "reason": "r"}, 404, "unknown_badge", "nope"),
        (
            {"platform": "demo", "learner": "42", "badge": "welcome", "tier": "gold", "reason": "r"},
            422,
            "invalid_tier",
            "has no tiers",
        ),
        (
            {
                "platform": "demo",
                "learner": "42",
                "badge": "assignment-achiever",
                "tier": "tin",
                "reason": "r",
            },
            422,
            "invalid_tier",
            "bronze, silver, gold",
        ),
    ],
)
def test_a_bad_manual_award_is_refused(
    client: FlaskClient, auth: dict[str, str], body: dict[str, Any], status: int, code: str, mentions: str
) -> None:
    assert_error(client.post("/api/v1/awards", json=body, headers=auth), status, code, mentions)


def test_awarding_twice_is_a_conflict_and_unknown_awards_are_404(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    body = {"platform": "demo", "learner": "42", "badge": "welcome", "reason": "r"}
    assert client.post("/api/v1/awards", json=body, headers=auth).status_code == 201
    assert_error(client.post("/api/v1/awards", json=body, headers=auth), 409, "already_awarded")
    assert_error(
        client.post("/api/v1/awards/999/revoke", json={"reason": "r"}, headers=auth), 404, "unknown_award"
    )


def test_a_read_only_api_cannot_award(database: Database, settings: Settings, auth: dict[str, str]) -> None:
    read_only = create_app(settings.model_copy(update={"api_access": "read"}), database).test_client()
    body = {"platform": "demo", "learner": "42", "badge": "welcome", "reason": "r"}
    assert_error(read_only.post("/api/v1/awards", json=body, headers=auth), 403, "api_read_only")


# --- approvals ----------------------------------------------------------------------------------


def test_a_badge_that_requires_approval_waits_in_the_queue_until_approved(
    client: FlaskClient, auth: dict[str, str], database: Database, settings: Settings
) -> None:
    client.post("/api/v1/badges", json=a_badge(requires_approval=True), headers=auth)
    store(database, *(learning_event(f"l{i}", minutes=i) for i in range(3)))
    drain(database, settings)
    assert ("42", "three-logins") not in awards_of(database)
    [pending] = client.get("/api/v1/approvals", headers=auth).get_json()["approvals"]
    assert (pending["badge_id"], pending["learner"], pending["status"]) == ("three-logins", "42", "pending")

    store(database, learning_event("l9", minutes=9))
    drain(database, settings)
    assert len(client.get("/api/v1/approvals", headers=auth).get_json()["approvals"]) == 1  # asked once

    before = points_of(database)
    decided = client.post(f"/api/v1/approvals/{pending['id']}/approve", headers=auth)
    assert decided.status_code == 200 and decided.get_json()["status"] == "approved"
    assert ("42", "three-logins") in awards_of(database)
    assert points_of(database) == before + 7
    assert_error(
        client.post(f"/api/v1/approvals/{pending['id']}/reject", json={"reason": "late"}, headers=auth),
        409,
        "already_decided",
    )
    assert client.get("/api/v1/audit", headers=auth).get_json()["entries"][0]["action"] == "approve"


def test_a_rejected_approval_needs_a_reason_and_is_not_asked_again(
    client: FlaskClient, auth: dict[str, str], database: Database, settings: Settings
) -> None:
    client.post("/api/v1/badges", json=a_badge(requires_approval=True), headers=auth)
    store(database, *(learning_event(f"l{i}", minutes=i) for i in range(3)))
    drain(database, settings)
    with database.read() as session:
        approval_id = session.scalars(select(Approval.id)).one()
    assert_error(client.post(f"/api/v1/approvals/{approval_id}/reject", headers=auth), 422, "reason_required")
    rejected = client.post(
        f"/api/v1/approvals/{approval_id}/reject", json={"reason": "not forum posts"}, headers=auth
    )
    assert rejected.get_json()["status"] == "rejected"
    store(database, learning_event("l5", minutes=5))
    drain(database, settings)
    assert client.get("/api/v1/approvals", headers=auth).get_json()["approvals"] == []
    assert ("42", "three-logins") not in awards_of(database)
    assert_error(client.get("/api/v1/approvals?status=maybe", headers=auth), 422, "invalid_query", "status")
    assert_error(client.post("/api/v1/approvals/77/approve", headers=auth), 404, "unknown_approval")


# --- progress -----------------------------------------------------------------------------------


def test_a_learner_sees_progress_on_every_badge_with_a_sentence(
    client: FlaskClient, auth: dict[str, str], database: Database, settings: Settings
) -> None:
    store(database, *(learning_event(f"m{i}", kind="module_completed", minutes=i) for i in range(3)))
    drain(database, settings)
    response = client.get("/api/v1/learners/demo/42/progress", headers=auth)
    assert response.status_code == 200
    badges = {b["badge_id"]: b for b in response.get_json()["badges"]}
    explorer = badges["module-explorer"]
    assert (explorer["value"], explorer["target"], explorer["fraction"]) == (3, 5, 0.6)
    assert explorer["sentence"] == "3 of 5 modules completed"
    assert badges["course-graduate"]["locked_by"] == ["course-ready"]
    achiever = badges["assignment-achiever"]
    assert achiever["next_tier"]["name"] == "bronze" and achiever["tier"] == ""


def test_progress_of_an_unknown_platform_is_404_and_of_a_new_learner_is_zero(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    assert_error(client.get("/api/v1/learners/nope/42/progress", headers=auth), 404, "unknown_platform")
    badges = client.get("/api/v1/learners/demo/new-person/progress", headers=auth).get_json()["badges"]
    assert badges and all(b["value"] == 0 and not b["awarded_tiers"] for b in badges)
