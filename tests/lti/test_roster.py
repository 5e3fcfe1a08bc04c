"""Roster refreshes (LTI NRPS 2.0) against the fake platform over real HTTP on 127.0.0.1, Moodle- and
Canvas-flavoured, into the real database: both pages followed, members mapped to the platform's learner
ids as launches map them, LMS names and emails applied unless a learner chose their own, course members
added, idempotent, and failures reported, never raised, by the background and nightly paths."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import func, select, update

from bridge.clock import utcnow
from bridge.db.engine import Database
from bridge.db.models import CourseMember, Learner
from bridge.db.models_lti import LtiContext, LtiLaunch, LtiUser
from bridge.issuing.keys import SigningKey
from bridge.lti.advantage import LINEITEM_SCOPE, AccessTokenCache, ServiceRefused
from bridge.lti.registry import register, set_status
from bridge.lti.roster import RosterResult, Rosters
from bridge.services.errors import Invalid, NotFound
from bridge.settings import Settings
from connectors.http import HttpPolicy
from connectors.lti_identity import lti_identity
from tests.conftest import PLATFORMS, make_settings
from tests.lti.platform import CLAIMS, FakePlatform, registration_of
from tests.lti.platform_services import NRPS_CURSOR
from tests.lti.platform_support import RecordedRequest, Reply

POLICY = HttpPolicy(timeout=5.0, attempts=2, backoff_base=0.01, backoff_max=0.05)
PLATFORM_IDS = {"moodle": "moodle1", "canvas": "canvas1"}
NRPS = "https://purl.imsglobal.org/spec/lti-nrps/claim/namesroleservice"
AGS = "https://purl.imsglobal.org/spec/lti-ags/claim/endpoint"
# The fixtures' roster: two learners and a teacher, as each platform names them.
LEARNERS = {"moodle": ["105", "106"], "canvas": ["2001", "2002"]}


@pytest.fixture(scope="module")
def tool_key() -> SigningKey:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return SigningKey("rsa-test-lti", "RS256", datetime.now(UTC), True, private)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path, platforms=[*PLATFORMS, {"id": "canvas1", "kind": "canvas"}])


def start_platform(
    kind: str, key: SigningKey, platform_class: type[FakePlatform] = FakePlatform, **options: Any
) -> FakePlatform:
    platform = platform_class(kind, **options).start()
    platform.tool_jwks = {"keys": [key.public_jwk()]}  # checks the tool's client assertions
    return platform


@pytest.fixture(params=["moodle", "canvas"])
def platform(request: pytest.FixtureRequest, tool_key: SigningKey) -> Iterator[FakePlatform]:
    running = start_platform(request.param, tool_key)
    yield running
    running.stop()


def connect(
    database: Database, platform: FakePlatform, *, launched: bool = True, **context: Any
) -> tuple[int, str]:
    """The registration an administrator makes and the context a launch records (with that launch, so
    a Canvas roster can ask for its members' custom fields). ``context`` overrides LtiContext columns."""
    platform_id = PLATFORM_IDS[platform.kind]
    new = registration_of(platform, platform_id)
    registration = register(database, new, actor="tests", known_platforms={platform_id})
    claims = platform.claims()
    context_id = claims[CLAIMS["context"]]["id"]
    course = lti_identity(platform.kind, claims).course_id
    now = utcnow()
    with database.write() as session:
        row = LtiContext(
            registration_id=registration.id,
            context_id=context_id,
            deployment_id=platform.deployment_id,
            platform=platform_id,
            course=course,
            title="Open Badges 101",
            memberships_url=claims[NRPS]["context_memberships_url"],
            lineitems_url=claims[AGS]["lineitems"],
            ags_scopes=claims[AGS]["scope"],
            grade_sync=False,
            updated_at=now,
        )
        for name, value in context.items():
            setattr(row, name, value)
        session.add(row)
        if launched:
            session.add(
                LtiLaunch(
                    id=str(uuid.uuid4()),
                    registration_id=registration.id,
                    deployment_id=platform.deployment_id,
                    message_type="LtiResourceLinkRequest",
                    sub=claims["sub"],
                    context_id=context_id,
                    course=course,
                    roles=["learner"],
                    claims=claims,
                    created_at=now,
                    expires_at=now + timedelta(hours=1),
                )
            )
    return registration.id, context_id


def rosters(
    database: Database, settings: Settings, key: SigningKey, tokens: AccessTokenCache | None = None
) -> Rosters:
    return Rosters(database, settings, lambda: key, tokens or AccessTokenCache(), policy=POLICY)


def learners(database: Database) -> dict[str, Learner]:
    with database.read() as session:
        return {learner.lms_user_id: learner for learner in session.scalars(select(Learner))}


def count(database: Database, model: Any) -> int:
    with database.read() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_a_refresh_follows_both_pages_and_records_the_learners(
    database: Database,
    settings: Settings,
    platform: FakePlatform,
    tool_key: SigningKey,
    caplog: pytest.LogCaptureFixture,
) -> None:
    registration_id, context_id = connect(database, platform)
    caplog.set_level(logging.INFO, logger="bridge.lti")
    result = rosters(database, settings, tool_key).refresh(registration_id, context_id)

    assert result == RosterResult(members=3, learners_updated=2, skipped=0, created=2, ignored=1)
    pages = platform.requests_to("/nrps/", "GET")
    assert len(pages) == 2 and pages[1].query["cursor"] == [NRPS_CURSOR]  # the cursor's case kept
    if platform.kind == "canvas":  # asked with a resource link, so members come with their custom fields
        link = platform.claims()[CLAIMS["resource_link"]]["id"]
        assert pages[0].query["rlid"] == [link]
    else:  # the Moodle user id is the user_id: no rlid, which would narrow the roster to one activity
        assert "rlid" not in pages[0].query

    found = learners(database)
    assert sorted(found) == LEARNERS[platform.kind]  # the teacher is no learner
    ada, alan = (found[i] for i in LEARNERS[platform.kind])
    assert ada.platform == PLATFORM_IDS[platform.kind]
    assert (ada.display_name, ada.email) == ("Ada Lovelace", "ada.lovelace@example.edu")
    assert (alan.display_name, alan.email) == ("Alan Turing", "alan.turing@example.edu")
    with database.read() as session:
        subs = {u.sub: u.learner_id for u in session.scalars(select(LtiUser))}
        members = {(m.learner_id, m.course) for m in session.scalars(select(CourseMember))}
        context = session.get(LtiContext, (registration_id, context_id))
    roster = [m["user_id"] for m in platform.members()[:2]]
    assert subs == {roster[0]: ada.id, roster[1]: alan.id}
    course = "2" if platform.kind == "moodle" else "3"
    assert members == {(ada.id, course), (alan.id, course)}
    assert context is not None and context.roster_synced_at is not None
    done = next(r for r in caplog.records if r.getMessage() == "lti.roster_refreshed")
    assert (done.registration, done.context, done.roster_created) == (registration_id, context_id, 2)  # type: ignore[attr-defined]


def test_a_second_refresh_changes_nothing_and_reuses_the_token(
    database: Database, settings: Settings, platform: FakePlatform, tool_key: SigningKey
) -> None:
    registration_id, context_id = connect(database, platform)
    service = rosters(database, settings, tool_key)
    service.refresh(registration_id, context_id)
    before = [count(database, model) for model in (Learner, LtiUser, CourseMember)]

    again = service.refresh(registration_id, context_id)

    assert again == RosterResult(members=3, learners_updated=2, skipped=0, created=0, ignored=1)
    assert [count(database, model) for model in (Learner, LtiUser, CourseMember)] == before == [2, 2, 2]
    assert platform.tokens_issued == 1


def test_lms_names_replace_only_what_the_lms_said_before(
    database: Database, settings: Settings, tool_key: SigningKey
) -> None:
    with FakePlatform("moodle") as platform:
        platform.tool_jwks = {"keys": [tool_key.public_jwk()]}
        registration_id, context_id = connect(database, platform)
        now = utcnow()
        with database.write() as session:
            # 105 chose their own name and email; 106 still has what a launch said (its email upper-case).
            own = Learner(platform="moodle1", lms_user_id="105", pseudonym="p1", created_at=now)
            own.display_name, own.email = "Countess of Lovelace", "ada@home.example"
            said = Learner(platform="moodle1", lms_user_id="106", pseudonym="p2", created_at=now)
            said.display_name, said.email = "A. Turing", "alan@old.example"
            session.add_all([own, said])
            session.flush()
            session.add(
                LtiUser(
                    registration_id=registration_id,
                    sub="106",
                    learner_id=said.id,
                    name="A. Turing",
                    email="Alan@Old.example",
                    updated_at=now,
                )
            )
        result = rosters(database, settings, tool_key).refresh(registration_id, context_id)

    assert result.created == 0 and result.learners_updated == 2
    found = learners(database)
    assert (found["105"].display_name, found["105"].email) == ("Countess of Lovelace", "ada@home.example")
    assert (found["106"].display_name, found["106"].email) == ("Alan Turing", "alan.turing@example.edu")
    with database.read() as session:
        user = session.get(LtiUser, (registration_id, "105"))
    assert user is not None and (user.name, user.email) == ("Ada Lovelace", "ada.lovelace@example.edu")


def test_canvas_members_without_their_canvas_user_id_are_skipped_not_guessed(
    database: Database, settings: Settings, tool_key: SigningKey
) -> None:
    with FakePlatform("canvas") as platform:
        platform.tool_jwks = {"keys": [tool_key.public_jwk()]}
        # No launch with a resource link yet: the roster comes without members' custom fields.
        registration_id, context_id = connect(database, platform, launched=False)
        result = rosters(database, settings, tool_key).refresh(registration_id, context_id)

    assert result == RosterResult(members=3, learners_updated=0, skipped=2, created=0, ignored=1)
    assert count(database, Learner) == count(database, LtiUser) == count(database, CourseMember) == 0


def test_a_context_that_cannot_be_refreshed_is_refused(
    database: Database, settings: Settings, tool_key: SigningKey
) -> None:
    service = rosters(database, settings, tool_key)
    with pytest.raises(NotFound):
        service.refresh(1, "nope")
    with FakePlatform("moodle") as platform:
        registration_id, context_id = connect(database, platform, memberships_url=None)
        with pytest.raises(Invalid, match="no roster service"):
            service.refresh(registration_id, context_id)
        assert service.refresh_all().contexts == 0  # nothing to refresh: no roster URL
    assert platform.requests == []


def test_a_token_failure_is_reported_not_raised(
    database: Database,
    settings: Settings,
    tool_key: SigningKey,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The platform's administrator did not grant the roster scope.
    with FakePlatform("moodle", allowed_scopes=[LINEITEM_SCOPE]) as platform:
        platform.tool_jwks = {"keys": [tool_key.public_jwk()]}
        registration_id, context_id = connect(database, platform)
        service = rosters(database, settings, tool_key)
        with pytest.raises(ServiceRefused):  # asked directly, the caller hears why
            service.refresh(registration_id, context_id)

        caplog.set_level(logging.INFO, logger="bridge.lti.roster")
        summary = service.refresh_all()
        future = service.refresh_in_background(registration_id, context_id)
        assert future is not None and future.result(timeout=10) is None
        assert service.refresh_in_background(registration_id, context_id) is None  # not again at once
        assertions = [r.form()["client_assertion"] for r in platform.requests_to("/token")]

    assert (summary.contexts, summary.refreshed, summary.failed) == (1, 0, 1)
    failure = summary.failures[0]
    assert (failure.registration_id, failure.context_id) == (registration_id, context_id)
    assert "invalid_scope" in failure.error
    failed = [r for r in caplog.records if r.getMessage() == "lti.roster_failed"]
    assert len(failed) == 2
    assert all((r.registration, r.context) == (registration_id, context_id) for r in failed)  # type: ignore[attr-defined]
    logged = caplog.text + "".join(str(vars(r)) for r in caplog.records)
    assert assertions and not any(a in logged for a in assertions)
    assert count(database, Learner) == 0


class SlowRoster(FakePlatform):
    """A platform whose roster answers only when the test says so."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = threading.Event()

    def _handle_nrps(self, request: RecordedRequest, context: str) -> Reply:
        self.gate.wait(10)
        return super()._handle_nrps(request, context)


def test_a_background_refresh_is_skipped_while_running_or_fresh(
    database: Database, settings: Settings, tool_key: SigningKey
) -> None:
    platform = start_platform("moodle", tool_key, SlowRoster)
    assert isinstance(platform, SlowRoster)
    try:
        registration_id, context_id = connect(database, platform)
        service = rosters(database, settings, tool_key)
        first = service.refresh_in_background(registration_id, context_id)
        assert first is not None
        assert service.refresh_in_background(registration_id, context_id) is None  # running
        assert service.refresh_all().busy == 1  # the nightly run leaves it to the running one
        platform.gate.set()
        result = first.result(timeout=10)
        assert result is not None and result.learners_updated == 2
        assert service.refresh_in_background(registration_id, context_id) is None  # fresh
        with database.write() as session:
            stale = utcnow() - timedelta(minutes=11)
            session.execute(update(LtiContext).values(roster_synced_at=stale))
        again = service.refresh_in_background(registration_id, context_id)
        assert again is not None and again.result(timeout=10) is not None
        service.close()
    finally:
        platform.stop()


def test_refresh_all_covers_active_registrations_of_the_platform_asked(
    database: Database, settings: Settings, tool_key: SigningKey
) -> None:
    with FakePlatform("moodle") as moodle, FakePlatform("canvas") as canvas:
        for platform in (moodle, canvas):
            platform.tool_jwks = {"keys": [tool_key.public_jwk()]}
        moodle_registration, _ = connect(database, moodle)
        connect(database, canvas)
        service = rosters(database, settings, tool_key)

        only_canvas = service.refresh_all("canvas1")
        assert (only_canvas.contexts, only_canvas.refreshed, only_canvas.learners_updated) == (1, 1, 2)
        assert moodle.requests_to("/nrps/") == []

        set_status(database, moodle_registration, "disabled", actor="tests")
        assert service.refresh_all().contexts == 1  # a disabled registration's courses are left alone
        assert moodle.requests_to("/nrps/") == []
    assert sorted(learners(database)) == ["2001", "2002"]
