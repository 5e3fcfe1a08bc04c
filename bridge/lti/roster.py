"""A course's roster from the platform (LTI NRPS 2.0): every learner known before their first launch or
event, with the name and email the LMS holds, and a member of the course for leaderboards and reports.

Members are mapped to the platform's own learner ids by the rules launches use
(:mod:`connectors.lti_identity`): the NRPS ``user_id`` is a launch's ``sub`` and a member's ``message``
claims are the launch claims they would get. A member whose id those rules cannot tell (a Canvas member
listed without its custom ``canvas_user_id``) is counted as skipped, never guessed. Only active members in
a learner role become learners: teachers are not ranked on leaderboards nor graded.

The service URL is only ever the one a validated launch of the same registration stored
(reference/lti.md §4.11). Network calls happen outside any transaction; writes go in short batches, as
SQLite has one writer at a time.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from bridge.clock import utcnow
from bridge.db.engine import Database
from bridge.db.models_lti import LtiContext, LtiLaunch, LtiRegistration
from bridge.issuing.keys import SigningKey
from bridge.lti.advantage import DEFAULT_POLICY, AccessTokenCache, AdvantageClient, Member, ToolRegistration
from bridge.lti.identity import add_course_member, learner_for
from bridge.lti.roles import LEARNER, bridge_roles
from bridge.lti.store import LaunchStore
from bridge.services.errors import Invalid, NotFound, ServiceError
from bridge.settings import Settings
from connectors.http import HttpPolicy, LmsError
from connectors.lti_identity import lti_identity

log = logging.getLogger(__name__)

KeyProvider = Callable[[], SigningKey]
RECENT = timedelta(minutes=10)  # a background refresh is skipped when the roster is this fresh
BATCH = 200  # members written per transaction
RESOURCE_LINK = "https://purl.imsglobal.org/spec/lti/claim/resource_link"


@dataclass(frozen=True, slots=True)
class RosterResult:
    members: int  # listed by the platform
    learners_updated: int  # learners recorded (created or refreshed) and made course members
    skipped: int  # learners whose LMS user id could not be told
    created: int = 0  # of learners_updated, new to the bridge
    ignored: int = 0  # not active, or not in a learner role


@dataclass(frozen=True, slots=True)
class RosterFailure:
    registration_id: int
    context_id: str
    error: str


@dataclass(frozen=True, slots=True)
class RosterSummary:
    contexts: int
    refreshed: int
    failed: int
    busy: int  # refreshing in the background at the same moment: left to that run
    members: int
    learners_updated: int
    skipped: int
    failures: tuple[RosterFailure, ...] = ()


def service_policy(settings: Settings) -> HttpPolicy:
    """The service-call policy with the operator's LTI timeout."""
    return dataclasses.replace(DEFAULT_POLICY, timeout=settings.lti.timeout_seconds)


def service_client(
    registration: LtiRegistration, key: SigningKey, tokens: AccessTokenCache, policy: HttpPolicy
) -> AdvantageClient:
    """An LTI Advantage client with the registration's credentials (its token URL and audience)."""
    tool = ToolRegistration(
        registration.issuer, registration.client_id, registration.auth_token_url, registration.auth_audience
    )
    return AdvantageClient(tool, key, tokens, policy)


class Rosters:
    """Roster refreshes: on demand, in the background after a launch, and nightly for every course."""

    def __init__(
        self,
        database: Database,
        settings: Settings,
        signing_key: KeyProvider,
        tokens: AccessTokenCache,
        *,
        policy: HttpPolicy | None = None,
    ) -> None:
        self._database, self._settings = database, settings
        self._store = LaunchStore(database)
        self._signing_key, self._tokens = signing_key, tokens
        self._policy = policy or service_policy(settings)
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="lti-roster")
        self._running: set[tuple[int, str]] = set()
        self._failed_at: dict[tuple[int, str], float] = {}  # background failures: not retried for a while
        self._lock = threading.Lock()

    def refresh(self, registration_id: int, context_id: str) -> RosterResult:
        """Read the context's roster and record its learners. Raises NotFound or Invalid for a context
        that cannot be refreshed, and an :class:`~connectors.http.LmsError` when the platform fails."""
        registration, context, kind, resource_link_id = self._load(registration_id, context_id)
        assert context.memberships_url is not None
        client = service_client(registration, self._signing_key(), self._tokens, self._policy)
        try:
            # Listed in full before writing anything: a failure on page 5 leaves the roster as it was.
            members = list(client.members(context.memberships_url, resource_link_id=resource_link_id))
        finally:
            client.close()
        result = self._record(registration, context, kind, members)
        facts = {f"roster_{name}": value for name, value in dataclasses.asdict(result).items()}
        log.info(
            "lti.roster_refreshed", extra={"registration": registration_id, "context": context_id, **facts}
        )
        return result

    def refresh_in_background(
        self, registration_id: int, context_id: str
    ) -> Future[RosterResult | None] | None:
        """Refresh on a worker thread unless that context is refreshing now or was refreshed within
        ``RECENT`` or failed within it (a launch asks on every page load; a platform refusing is not
        asked again at each). None when skipped. Never raises: failures are logged as ``lti.roster_failed``.
        """
        key = (registration_id, context_id)
        if self._failed_at.get(key, -RECENT.total_seconds()) > time.monotonic() - RECENT.total_seconds():
            return None
        if not self._claim(key):
            return None
        try:
            with self._database.read() as session:
                context = session.get(LtiContext, key)
            synced = context.roster_synced_at if context is not None else None
            if synced is not None and synced > utcnow() - RECENT:
                self._release(key)
                return None
            return self._executor.submit(self._in_background, key)
        except Exception as error:  # the database is away, or the executor was shut down
            self._release(key)
            log_failure("lti.roster_failed", *key, error)
            return None

    def refresh_all(self, platform_id: str | None = None) -> RosterSummary:
        """Every context with a roster URL of every active registration (of ``platform_id``), one after
        another: the nightly sync. Each failure is logged and counted; none stops the others."""
        query = (
            select(LtiContext.registration_id, LtiContext.context_id)
            .join(LtiRegistration, LtiRegistration.id == LtiContext.registration_id)
            .where(LtiContext.memberships_url.is_not(None), LtiRegistration.status == "active")
            .order_by(LtiContext.registration_id, LtiContext.context_id)
        )
        if platform_id is not None:
            query = query.where(LtiRegistration.platform == platform_id)
        with self._database.read() as session:
            keys = [(r, c) for r, c in session.execute(query)]
        results: list[RosterResult] = []
        failures: list[RosterFailure] = []
        busy = 0
        for key in keys:
            if not self._claim(key):
                busy += 1
                continue
            try:
                results.append(self.refresh(*key))
            except Exception as error:
                described = log_failure("lti.roster_failed", *key, error)
                failures.append(RosterFailure(key[0], key[1], described))
            finally:
                self._release(key)
        return RosterSummary(
            contexts=len(keys),
            refreshed=len(results),
            failed=len(failures),
            busy=busy,
            members=sum(r.members for r in results),
            learners_updated=sum(r.learners_updated for r in results),
            skipped=sum(r.skipped for r in results),
            failures=tuple(failures),
        )

    def close(self, wait: bool = True) -> None:
        self._executor.shutdown(wait=wait, cancel_futures=not wait)

    # --- internals ---------------------------------------------------------------------------------------

    def _in_background(self, key: tuple[int, str]) -> RosterResult | None:
        try:
            result = self.refresh(*key)
            self._failed_at.pop(key, None)
            return result
        except Exception as error:
            self._failed_at[key] = time.monotonic()
            log_failure("lti.roster_failed", *key, error)
            return None
        finally:
            self._release(key)

    def _claim(self, key: tuple[int, str]) -> bool:
        with self._lock:
            if key in self._running:
                return False
            self._running.add(key)
            return True

    def _release(self, key: tuple[int, str]) -> None:
        with self._lock:
            self._running.discard(key)

    def _load(
        self, registration_id: int, context_id: str
    ) -> tuple[LtiRegistration, LtiContext, str, str | None]:
        """The registration, the context, the platform's kind and, if the kind's rules need members'
        message claims, a resource link id of the context to ask for them with (NRPS 2.0 ``rlid``)."""
        with self._database.read() as session:
            context = session.get(LtiContext, (registration_id, context_id))
            registration = session.get(LtiRegistration, registration_id)
            if context is None or registration is None:
                raise NotFound(f"no LTI context {context_id!r} here", "unknown_context")
            if registration.status != "active":
                raise Invalid(f"LTI registration {registration_id} is {registration.status}", "inactive")
            if not context.memberships_url:
                raise Invalid("the platform offered no roster service for this course", "no_roster_service")
            platform = self._settings.platform(registration.platform)
            if platform is None:
                raise Invalid(f"platform {registration.platform!r} is not configured", "unknown_platform")
            # rlid also narrows the roster to who may open that link, so it is only asked for when the
            # member's id is not in user_id alone (Canvas: the custom canvas_user_id).
            rlid = (
                _latest_resource_link(session, registration_id, context_id)
                if _needs_messages(platform.kind)
                else None
            )
            return registration, context, platform.kind, rlid

    def _record(
        self, registration: LtiRegistration, context: LtiContext, kind: str, members: Sequence[Member]
    ) -> RosterResult:
        wanted = [m for m in members if m.status == "Active" and LEARNER in bridge_roles(m.roles)]
        mapped = [(m, lms_id) for m in wanted if (lms_id := _lms_user_id(kind, m)) is not None]
        created = 0
        for start in range(0, len(mapped), BATCH):
            with self._store.transaction() as sql:
                for member, lms_user_id in mapped[start : start + BATCH]:
                    # The launch's rule (bridge.lti.identity): the LMS's name and email, unless the
                    # learner chose their own.
                    name, email = _name(member), _text(member.email, 320)
                    learner = learner_for(
                        sql,
                        registration.platform,
                        lms_user_id,
                        registration.id,
                        member.user_id,
                        name,
                        email,
                    )
                    created += learner.created
                    add_course_member(sql, learner.id, context.course)
        with self._database.write() as session:
            row = session.get(LtiContext, (context.registration_id, context.context_id))
            if row is not None:
                row.roster_synced_at = utcnow()
        return RosterResult(
            members=len(members),
            learners_updated=len(mapped),
            skipped=len(wanted) - len(mapped),
            created=created,
            ignored=len(members) - len(wanted),
        )


def _needs_messages(kind: str) -> bool:
    """Whether the kind's identity rule needs more than the LTI ``sub`` (asked of the rule, so the
    platform's quirk stays in connectors.lti_identity)."""
    return lti_identity(kind, {"sub": "0"}).user_id is None


def _lms_user_id(kind: str, member: Member) -> str | None:
    """The member's id as the platform's webhooks name them: the launch rule applied to the member's
    ``sub`` and, one at a time, the launch claims NRPS says it would get."""
    for claims in member.message or ({},):
        user_id = lti_identity(kind, {**claims, "sub": member.user_id}).user_id
        if user_id is not None:
            return user_id
    return None


def _latest_resource_link(session: Session, registration_id: int, context_id: str) -> str | None:
    """The resource link of the context's latest launch (deep linking launches have none)."""
    launches = select(LtiLaunch.claims).where(
        LtiLaunch.registration_id == registration_id, LtiLaunch.context_id == context_id
    )
    for claims in session.scalars(launches.order_by(LtiLaunch.created_at.desc()).limit(20)):
        link = claims.get(RESOURCE_LINK)
        if isinstance(link, dict) and isinstance(link.get("id"), str) and link["id"]:
            return str(link["id"])
    return None


def _name(member: Member) -> str | None:
    return _text(member.name or " ".join(p for p in (member.given_name, member.family_name) if p), 255)


def _text(value: str | None, limit: int) -> str | None:
    return value.strip()[:limit] if isinstance(value, str) and value.strip() else None


def log_failure(
    event: str,
    registration_id: int,
    context_id: str,
    error: Exception,
    logger: logging.Logger = log,
    **facts: str,
) -> str:
    """Log a failed call to a platform (structured, no token: LMS errors and service refusals never hold
    one, and other errors are named by type only) and return its description."""
    expected = isinstance(error, LmsError | ServiceError)
    described = f"{type(error).__name__}: {error}"[:500] if expected else type(error).__name__
    logger.warning(
        event,
        extra={"registration": registration_id, "context": context_id, "error": described, **facts},
        exc_info=not expected,  # a bug: its traceback (no locals, so no token) helps whoever fixes it
    )
    return described
