"""Badge points sent back to the LMS gradebook (LTI AGS 2.0): one "Badge points" column per course, off
until an instructor turns it on.

A push posts each course member's points to the column, only when they differ from what was last sent
(``lti_grade_posts``), one score at a time: platforms rate-limit score posts (Canvas; packbackbooks
lti-1-3-php-library #73) and a push runs every minute. Nothing a platform answers stops the push or the
job: every failure is logged and counted. The column's maximum is the top badge level
(``badge_level_threshold``): fixed, so earlier scores keep their meaning; points past it count as extra.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, delete, select, update
from sqlalchemy.orm import Session

from bridge.clock import utcnow
from bridge.db.engine import Database
from bridge.db.models import CourseMember, Learner
from bridge.db.models_lti import LtiContext, LtiRegistration, LtiUser
from bridge.db.models_lti_grades import LtiGradePost
from bridge.db.upsert import upsert
from bridge.lti.advantage import (
    LINEITEM_SCOPE,
    SCORE_SCOPE,
    AccessTokenCache,
    AdvantageClient,
    ServiceRefused,
)
from bridge.lti.roster import KeyProvider, log_failure, service_client, service_policy
from bridge.services.audit import record_audit
from bridge.services.errors import Invalid, NotFound
from bridge.settings import Settings
from connectors.http import HttpPolicy, LmsError

log = logging.getLogger(__name__)

TAG, LABEL = "badge-points", "Badge points"
# Refusals about one learner (Canvas 422 "not a student"; 400): the same points are not offered again.
LEARNER_REFUSALS = frozenset({400, 409, 422})
MAX_FAILURES_IN_A_ROW = 3  # then the platform is down for now: the rest of the course waits a minute


@dataclass(frozen=True, slots=True)
class GradeSync:
    registration_id: int
    context_id: str
    course: str
    enabled: bool
    line_item_url: str | None


@dataclass(frozen=True, slots=True)
class GradePushResult:
    contexts: int = 0  # with grade sync on
    line_items: int = 0  # columns found (by tag) or made, and stored for their course
    posted: int = 0
    unchanged: int = 0
    refused: int = 0  # the platform refused one learner's score (also in failed)
    failed: int = 0


_COUNTS = ("line_items", "posted", "unchanged", "refused", "failed")


@dataclass(slots=True)
class _Tally:
    line_items: int = 0
    posted: int = 0
    unchanged: int = 0
    refused: int = 0
    failed: int = 0
    pending: list[tuple[str, int]] = field(default_factory=list)


def set_grade_sync(
    database: Database, registration_id: int, context_id: str, enabled: bool, actor: str
) -> GradeSync:
    """Turn a course's "Badge points" column on or off. On needs the gradebook service and both its
    line item and score scopes from the course's launches (Moodle lets admins grant "sync only")."""
    with database.write() as session:
        context = session.get(LtiContext, (registration_id, context_id))
        if context is None:
            raise NotFound(
                f"no LTI context {context_id!r} of registration {registration_id}", "unknown_context"
            )
        if enabled:
            if not context.lineitems_url:
                raise Invalid("the platform offered no gradebook service for this course", "no_grade_service")
            missing = [s for s in (LINEITEM_SCOPE, SCORE_SCOPE) if s not in (context.ags_scopes or [])]
            if missing:
                raise Invalid(f"the platform did not grant {' and '.join(missing)}", "grade_scope_missing")
        context.grade_sync, context.updated_at = enabled, utcnow()
        details = {"registration": registration_id, "context": context_id, "course": context.course}
        action = "lti.grade_sync_on" if enabled else "lti.grade_sync_off"
        record_audit(session, actor, action, details=details)
        return GradeSync(registration_id, context_id, context.course, enabled, context.line_item_url)


class Grades:
    """Pushes of badge points to the gradebooks of courses with grade sync on."""

    def __init__(
        self,
        database: Database,
        settings: Settings,
        signing_key: KeyProvider,
        tokens: AccessTokenCache,
        *,
        policy: HttpPolicy | None = None,
    ) -> None:
        self._database, self._signing_key, self._tokens = database, signing_key, tokens
        self._policy = policy or service_policy(settings)
        self._maximum = max(settings.badge_level_threshold)
        self._lock = threading.Lock()  # one push at a time in the process; the job's lease across nodes

    def push(self, registration_id: int | None = None) -> GradePushResult:
        """Post every changed score of every course with grade sync on (of ``registration_id``)."""
        with self._lock:
            query = (
                select(LtiRegistration, LtiContext)
                .join(LtiRegistration, LtiRegistration.id == LtiContext.registration_id)
                .where(
                    LtiContext.grade_sync.is_(True),
                    LtiContext.lineitems_url.is_not(None),
                    LtiRegistration.status == "active",
                )
                .order_by(LtiContext.registration_id, LtiContext.context_id)
            )
            if registration_id is not None:
                query = query.where(LtiContext.registration_id == registration_id)
            with self._database.read() as session:
                courses = [(r, c) for r, c in session.execute(query)]
            total = _Tally()
            for registration, context in courses:
                tally = _Tally()
                try:
                    self._push_context(registration, context, tally)
                except Exception as error:  # a token, the column, the database: the others go on
                    log_failure("lti.grades_failed", registration.id, context.context_id, error, log)
                    tally.failed += len(tally.pending)
                for name in _COUNTS:
                    setattr(total, name, getattr(total, name) + getattr(tally, name))
            return GradePushResult(len(courses), **{name: getattr(total, name) for name in _COUNTS})

    def _push_context(self, registration: LtiRegistration, context: LtiContext, tally: _Tally) -> None:
        with self._database.read() as session:
            rows = _points(session, registration.id, context)
        tally.pending = [(sub, points) for sub, points, last in rows if last != points]
        tally.unchanged = len(rows) - len(tally.pending)
        if not tally.pending:
            return  # no token, no request: the usual minute
        client = service_client(registration, self._signing_key(), self._tokens, self._policy)
        try:
            line_item_url = context.line_item_url or self._line_item(client, registration, context, tally)
            self._post_all(client, registration, context, line_item_url, tally)
        finally:
            client.close()

    def _line_item(
        self, client: AdvantageClient, registration: LtiRegistration, context: LtiContext, tally: _Tally
    ) -> str:
        assert context.lineitems_url is not None
        item = client.find_or_create_line_item(context.lineitems_url, TAG, LABEL, self._maximum)
        with self._database.write() as session:
            session.execute(
                update(LtiContext).where(_is(context)).values(line_item_url=item.id, updated_at=utcnow())
            )
        tally.line_items += 1
        return item.id

    def _post_all(
        self,
        client: AdvantageClient,
        registration: LtiRegistration,
        context: LtiContext,
        line_item_url: str,
        tally: _Tally,
    ) -> None:
        failures_in_a_row = 0
        while tally.pending:  # the one being posted stays first, so a crash counts it as failed
            sub, points = tally.pending[0]
            try:
                client.post_score(line_item_url, sub, points, self._maximum, utcnow())
            except ServiceRefused as error:
                log_failure("lti.grade_post_failed", registration.id, context.context_id, error, log, sub=sub)
                if error.status in LEARNER_REFUSALS:
                    tally.pending.pop(0)
                    tally.refused, tally.failed = tally.refused + 1, tally.failed + 1
                    self._remember(context, sub, points, "refused")
                    continue
                if error.status == 404:  # the column was deleted in the LMS: made again next push
                    self._forget_line_item(context)
                tally.failed += len(tally.pending)  # 401, 403, 404: nothing else would pass either
                tally.pending = []
                return
            except LmsError as error:  # retried already: a timeout, 5xx, 429
                log_failure("lti.grade_post_failed", registration.id, context.context_id, error, log, sub=sub)
                tally.pending.pop(0)
                tally.failed += 1
                failures_in_a_row += 1
                if failures_in_a_row >= MAX_FAILURES_IN_A_ROW:
                    tally.failed += len(tally.pending)
                    tally.pending = []
                    return
                continue
            tally.pending.pop(0)
            tally.posted += 1
            failures_in_a_row = 0
            self._remember(context, sub, points, "posted")

    def _remember(self, context: LtiContext, sub: str, points: int, status: str) -> None:
        with self._database.write() as session:
            statement = upsert(
                session.get_bind().dialect.name,
                LtiGradePost.__table__,
                ["registration_id", "context_id", "sub"],
                exclude={"registration_id", "context_id", "sub"},
            )
            session.execute(
                statement.values(
                    registration_id=context.registration_id,
                    context_id=context.context_id,
                    sub=sub,
                    points=points,
                    status=status,
                    posted_at=utcnow(),
                )
            )

    def _forget_line_item(self, context: LtiContext) -> None:
        with self._database.write() as session:
            session.execute(
                update(LtiContext).where(_is(context)).values(line_item_url=None, updated_at=utcnow())
            )
            session.execute(
                delete(LtiGradePost).where(
                    LtiGradePost.registration_id == context.registration_id,
                    LtiGradePost.context_id == context.context_id,
                )
            )


def _points(session: Session, registration_id: int, context: LtiContext) -> list[tuple[str, int, int | None]]:
    """(sub, points, points last sent) of each course member the platform knows by an LTI user id."""
    last = and_(
        LtiGradePost.registration_id == registration_id,
        LtiGradePost.context_id == context.context_id,
        LtiGradePost.sub == LtiUser.sub,
    )
    query = (
        select(LtiUser.sub, Learner.points, LtiGradePost.points)
        .select_from(CourseMember)
        .join(Learner, Learner.id == CourseMember.learner_id)
        .join(LtiUser, and_(LtiUser.learner_id == Learner.id, LtiUser.registration_id == registration_id))
        .outerjoin(LtiGradePost, last)
        .where(CourseMember.course == context.course, Learner.platform == context.platform)
        .order_by(LtiUser.sub)
    )
    return [(sub, points or 0, sent) for sub, points, sent in session.execute(query)]


def _is(context: LtiContext) -> Any:
    return and_(
        LtiContext.registration_id == context.registration_id, LtiContext.context_id == context.context_id
    )
