"""The reports over REST: /api/v1/leaderboards, learner preferences and /api/v1/analytics/*."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from bridge.app import create_app
from bridge.db.engine import Database
from bridge.services.analytics import CSV_COLUMNS
from bridge.services.api_keys import create_key
from bridge.settings import Settings
from tests.services.test_leaderboards import campus, reports_settings
from tests.web.test_api_events import assert_error


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return reports_settings(database_url, tmp_path)


@pytest.fixture
def world(database: Database, settings: Settings) -> Database:
    campus(database, settings)
    return database


def get(client: FlaskClient, auth: dict[str, str], path: str, **query: Any) -> Any:
    return client.get(path, query_string=query, headers=auth)


def put_preferences(
    client: FlaskClient, auth: dict[str, str], body: Any, learner: str = "ben", **kw: Any
) -> Any:
    return client.put(f"/api/v1/learners/demo/{learner}/preferences", json=body, headers=auth, **kw)


# --- leaderboards ---------------------------------------------------------------------------------


def test_a_leaderboard_ranks_with_ties_and_names(
    client: FlaskClient, auth: dict[str, str], world: Database
) -> None:
    response = get(client, auth, "/api/v1/leaderboards", platform="demo")
    assert response.status_code == 200
    body = response.get_json()
    assert {
        k: body[k] for k in ("platform", "course", "section", "period", "metric", "since", "size", "total")
    } == {
        "platform": "demo",
        "course": None,
        "section": None,
        "period": "all",
        "metric": "points",
        "since": None,
        "size": 10,
        "total": 5,
    }
    assert [(e["rank"], e["name"], e["score"], e["learner"]) for e in body["entries"]] == [
        (1, "Ana", 35, "ana"),
        (2, "Abe", 15, "cal"),
        (2, "Bea", 15, "ben"),
        (4, "Learner dee", 10, "dee"),
        (5, "Eve", 0, "eve"),
    ]
    assert body["you"] is None


def test_a_course_section_week_board_by_badges(
    client: FlaskClient, auth: dict[str, str], world: Database
) -> None:
    response = get(
        client,
        auth,
        "/api/v1/leaderboards",
        platform="demo",
        course="C1",
        section="A",
        period="week",
        metric="badges",
    )
    body = response.get_json()
    assert [(e["rank"], e["name"], e["score"]) for e in body["entries"]] == [(1, "Ana", 1), (2, "Eve", 0)]
    assert body["since"] is not None and body["period"] == "week"


def test_the_asker_sees_their_rank_and_hidden_learners_leak_no_ids(
    client: FlaskClient, auth: dict[str, str], world: Database
) -> None:
    assert put_preferences(client, auth, {"leaderboard_opt_out": True}, learner="dee").status_code == 200
    response = get(client, auth, "/api/v1/leaderboards", platform="demo", limit=2, learner="eve")
    body = response.get_json()
    assert len(body["entries"]) == 2
    assert body["you"] == {"rank": 5, "name": "Eve", "score": 0, "you": True, "learner": "eve"}
    whole = get(client, auth, "/api/v1/leaderboards", platform="demo", learner="eve").get_data(as_text=True)
    assert '"dee"' not in whole and "Learner dee" not in whole


def test_anonymised_boards_name_only_the_asker(
    world: Database, database_url: str, tmp_path: Path, database: Database
) -> None:
    settings = reports_settings(database_url, tmp_path, leaderboard={"anonymise": True, "size": 3})
    client = create_app(settings, database).test_client()
    auth = {"Authorization": f"Bearer {create_key(database, 'anon')}"}
    body = get(client, auth, "/api/v1/leaderboards", platform="demo", learner="ben").get_json()
    assert body["size"] == 3
    assert body["entries"][0]["you"] is False  # ana, first; ben ties with cal for second
    assert sorted(e["you"] for e in body["entries"][1:]) == [False, True]
    named = [e for e in body["entries"] if e["learner"] is not None]
    assert named == [body["you"]] and body["you"]["name"] == "Bea"
    text = get(client, auth, "/api/v1/leaderboards", platform="demo", learner="ben").get_data(as_text=True)
    for hidden in ("ana", "cal", "Ana", "Abe"):
        assert f'"{hidden}"' not in text


@pytest.mark.parametrize(
    ("query", "status", "code", "mentions"),
    [
        ({}, 422, "invalid_query", "platform: required"),
        ({"platform": "nope"}, 404, "unknown_platform", "platform: 'nope'"),
        (
            {"platform": "demo", "period": "year"},
            422,
            "invalid_query",
            "period: expected one of all, week, month",
        ),
        (
            {"platform": "demo", "metric": "xp"},
            422,
            "invalid_query",
            "metric: expected one of points, badges",
        ),
        ({"platform": "demo", "limit": "ten"}, 422, "invalid_query", "limit: expected a whole number"),
        ({"platform": "demo", "limit": "0"}, 422, "invalid_query", "limit: expected a number from 1 to 100"),
        ({"platform": "demo", "limit": "101"}, 422, "invalid_query", "limit:"),
        ({"platform": "demo", "section": "A"}, 422, "invalid_query", "section: only with course"),
        ({"platform": "demo", "course": "x" * 256}, 422, "invalid_query", "course: expected at most 255"),
        ({"platform": "demo", "learner": "nobody"}, 404, "unknown_learner", "learner: 'nobody'"),
    ],
)
def test_bad_leaderboard_queries_are_named(
    client: FlaskClient,
    auth: dict[str, str],
    world: Database,
    query: dict[str, str],
    status: int,
    code: str,
    mentions: str,
) -> None:
    assert_error(get(client, auth, "/api/v1/leaderboards", **query), status, code, mentions)


def test_reports_need_a_key(client: FlaskClient, world: Database) -> None:
    for path in (
        "/api/v1/leaderboards?platform=demo",
        "/api/v1/analytics/badges",
        "/api/v1/analytics/badges.csv",
    ):
        assert_error(client.get(path), 401, "missing_credentials")


# --- preferences ----------------------------------------------------------------------------------


def test_a_learner_opts_out_and_back_in(client: FlaskClient, auth: dict[str, str], world: Database) -> None:
    response = put_preferences(client, auth, {"leaderboard_opt_out": True, "display_name": " B. "})
    assert response.status_code == 200
    assert response.get_json() == {
        "platform": "demo",
        "learner": "ben",
        "leaderboard_opt_out": True,
        "display_name": "B.",
    }
    board = get(client, auth, "/api/v1/leaderboards", platform="demo").get_json()
    assert "ben" not in [e["learner"] for e in board["entries"]]
    back = put_preferences(client, auth, {"leaderboard_opt_out": False}).get_json()
    assert (back["leaderboard_opt_out"], back["display_name"]) == (False, "B.")  # the name is kept
    cleared = put_preferences(client, auth, {"leaderboard_opt_out": False, "display_name": None}).get_json()
    assert cleared["display_name"] is None


@pytest.mark.parametrize(
    ("body", "mentions"),
    [
        ({}, "leaderboard_opt_out: Field required"),
        ({"leaderboard_opt_out": "yes"}, "leaderboard_opt_out: Input should be a valid boolean"),
        ({"leaderboard_opt_out": 1}, "leaderboard_opt_out: Input should be a valid boolean"),
        ({"leaderboard_opt_out": True, "display_name": ""}, "display_name:"),
        ({"leaderboard_opt_out": True, "colour": "red"}, "colour: Extra inputs are not permitted"),
        ([True], "body: Input should be a valid dictionary"),
    ],
)
def test_bad_preferences_are_422_naming_the_field(
    client: FlaskClient, auth: dict[str, str], world: Database, body: Any, mentions: str
) -> None:
    assert_error(put_preferences(client, auth, body), 422, "invalid_preferences", mentions)


def test_preferences_errors(
    client: FlaskClient, auth: dict[str, str], world: Database, database: Database
) -> None:
    good = {"leaderboard_opt_out": True}
    assert_error(put_preferences(client, auth, good, learner="nobody"), 404, "unknown_learner", "'nobody'")
    unknown_platform = client.put("/api/v1/learners/nope/ben/preferences", json=good, headers=auth)
    assert_error(unknown_platform, 404, "unknown_platform", "'nope'")
    as_text = client.put(
        "/api/v1/learners/demo/ben/preferences", data="{}", headers=auth, content_type="text/plain"
    )
    assert_error(as_text, 415, "unsupported_media_type")
    broken = client.put(
        "/api/v1/learners/demo/ben/preferences", data="{", headers=auth, content_type="application/json"
    )
    assert_error(broken, 400, "malformed_json")
    assert_error(client.put("/api/v1/learners/demo/ben/preferences", json=good), 401, "missing_credentials")


def test_preferences_need_write_access(
    world: Database, database_url: str, tmp_path: Path, database: Database
) -> None:
    client = create_app(reports_settings(database_url, tmp_path, api_access="read"), database).test_client()
    auth = {"Authorization": f"Bearer {create_key(database, 'reader')}"}
    assert_error(put_preferences(client, auth, {"leaderboard_opt_out": True}), 403, "api_read_only")
    assert get(client, auth, "/api/v1/leaderboards", platform="demo").status_code == 200


# --- analytics ------------------------------------------------------------------------------------


def test_badge_analytics_as_json(client: FlaskClient, auth: dict[str, str], world: Database) -> None:
    body = get(client, auth, "/api/v1/analytics/badges", platform="demo", course="C1").get_json()
    assert (body["platform"], body["course"]) == ("demo", "C1")
    master = next(b for b in body["badges"] if b["badge_id"] == "module-master")
    assert (master["eligible"], master["earned"], master["completion_rate"]) == (3, 1, 0.3333)
    assert master["time_to_earn"]["count"] == 1
    assert master["time_to_earn"]["median_hours"] == 1.0
    assert list(master["time_to_earn"]["histogram"]) == [
        "under_1_day",
        "1_to_7_days",
        "7_to_30_days",
        "30_to_90_days",
        "90_days_or_more",
    ]
    assert master["awards_last_4_weeks"] == 1


def test_badge_analytics_as_csv(client: FlaskClient, auth: dict[str, str], world: Database) -> None:
    response = get(client, auth, "/api/v1/analytics/badges.csv", platform="demo")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"] == 'attachment; filename="badge-analytics.csv"'
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [r[0] for r in rows[1:]] == ["explorer", "first-steps", "graduate", "module-master"]


def test_awards_per_week(client: FlaskClient, auth: dict[str, str], world: Database) -> None:
    body = get(client, auth, "/api/v1/analytics/awards-per-week", weeks=3).get_json()
    assert body["timezone"] == "UTC" and body["badge"] is None
    assert [w["awards"] for w in body["weeks"]] == [0, 0, 7]
    only = get(
        client, auth, "/api/v1/analytics/awards-per-week", badge="explorer", platform="demo"
    ).get_json()
    assert len(only["weeks"]) == 12 and only["weeks"][-1]["awards"] == 2


def test_tier_funnels(client: FlaskClient, auth: dict[str, str], world: Database) -> None:
    body = get(client, auth, "/api/v1/analytics/tiers", platform="demo").get_json()
    assert body["badges"] == [
        {
            "badge_id": "explorer",
            "name": "Explorer",
            "started": 2,
            "tiers": [
                {"tier": "bronze", "target": 1, "reached": 2, "rate": 1.0},
                {"tier": "silver", "target": 3, "reached": 0, "rate": 0.0},
                {"tier": "gold", "target": 5, "reached": 0, "rate": 0.0},
            ],
        }
    ]


@pytest.mark.parametrize(
    ("path", "query", "status", "code", "mentions"),
    [
        ("/api/v1/analytics/badges", {"platform": "nope"}, 404, "unknown_platform", "platform: 'nope'"),
        ("/api/v1/analytics/badges.csv", {"platform": "nope"}, 404, "unknown_platform", "'nope'"),
        ("/api/v1/analytics/tiers", {"platform": "nope"}, 404, "unknown_platform", "'nope'"),
        (
            "/api/v1/analytics/awards-per-week",
            {"weeks": "0"},
            422,
            "invalid_query",
            "weeks: expected a number",
        ),
        (
            "/api/v1/analytics/awards-per-week",
            {"weeks": "x"},
            422,
            "invalid_query",
            "weeks: expected a whole",
        ),
        ("/api/v1/analytics/awards-per-week", {"weeks": "261"}, 422, "invalid_query", "weeks:"),
        (
            "/api/v1/analytics/awards-per-week",
            {"badge": "nope"},
            404,
            "unknown_badge",
            "badge: no badge 'nope'",
        ),
        ("/api/v1/analytics/awards-per-week", {"platform": "nope"}, 404, "unknown_platform", "'nope'"),
    ],
)
def test_bad_analytics_queries_are_named(
    client: FlaskClient,
    auth: dict[str, str],
    world: Database,
    path: str,
    query: dict[str, str],
    status: int,
    code: str,
    mentions: str,
) -> None:
    assert_error(get(client, auth, path, **query), status, code, mentions)
