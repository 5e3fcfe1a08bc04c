"""Moodle: webhook events in (``local_webhooks`` or an HMAC-signing plugin), web-service polling out.

Quirks handled here, each with its source (details in ../shared/reference/lms-apis.md):
- Web-service errors come back with HTTP 200 as ``{"exception", "errorcode", "message"}``
  (moodle/moodle webservice/rest/locallib.php ``generate_error``/``send_error``).
- Parameters go as a POST form in PHP's bracket encoding, with ``moodlewsrestformat=json`` (the default
  format is XML) and the token as ``wstoken``, never in a URL that might be logged.
- No function takes a "since" filter, so each stream is diffed against the previous run's snapshot.
- ``local_webhooks`` puts a shared token in the body, in plain text (valentineus/moodle-webhooks lib.php);
  a signing plugin sends ``X-Moodle-Signature: sha256=<hex HMAC of "timestamp.body">`` and
  ``X-Moodle-Timestamp`` (Unix seconds), checked within a replay window.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from bridge.clock import utcnow
from bridge.domain.events import LearningEvent
from connectors import (
    BadSignature,
    Connector,
    ConnectorConfig,
    Malformed,
    Member,
    PollOptions,
    PollPage,
    read_json,
)
from connectors.http import HttpClient, ItemSkipped, Page, PlatformStopped, php_params
from connectors.moodle_events import (
    COMPLETE_STATES,
    QUIZ_SUBMITTED,
    USER_GRADED,
    activity_completed_event,
    activity_uncompleted_event,
    course_completed_event,
    grade_item_events,
    moodle_id,
    needs_fetch,
    parse_moodle_event,
)
from connectors.parallel import interleave

SIGNATURE_HEADER = "X-Moodle-Signature"
TIMESTAMP_HEADER = "X-Moodle-Timestamp"
# Error codes that mean the token or the service is unusable: the whole platform stops.
FATAL_CODES = frozenset(
    {
        "invalidtoken",
        "invalidtimedtoken",
        "invalidiptoken",
        "servicenotavailable",
        "accessexception",
        "enablewsdescription",
        "sitemaintenance",
    }
)
LEARNERS_PER_PAGE = 20  # learners read between two cursor saves of a per-learner stream


class WebServiceError(ItemSkipped):
    def __init__(self, function: str, code: str, message: str) -> None:
        super().__init__(f"{function}: {code}: {message}")
        self.code = code


def _check(function: str, body: Any) -> Any:
    if isinstance(body, dict) and "exception" in body and "errorcode" in body:
        code, message = str(body["errorcode"]), str(body.get("message", ""))
        if code in FATAL_CODES:
            raise PlatformStopped(f"Moodle refused the web-service call {function}: {code}: {message}")
        raise WebServiceError(function, code, message)
    return body


class MoodleConnector(Connector):
    kind = "moodle"

    def __init__(self, config: ConnectorConfig, sleep: Callable[[float], None] | None = None) -> None:
        super().__init__(config)
        extra = {"sleep": sleep} if sleep is not None else {}
        self.http = HttpClient(config.base_url or "http://moodle.invalid", config.policy, **extra)

    @property
    def calls(self) -> int:
        return self.http.calls

    def close(self) -> None:
        self.http.close()

    def call(self, function: str, **params: Any) -> Any:
        """One web-service function; errors reported with a 200 are raised as such."""
        form = [
            ("wstoken", self.config.token or ""),
            ("wsfunction", function),
            ("moodlewsrestformat", "json"),
            *php_params(params),
        ]
        body, _response = self.http.request("POST", self.http.url("webservice/rest/server.php"), data=form)
        return _check(function, body)

    # --- webhooks ------------------------------------------------------------------------------------

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
        secret = self.config.webhook_secret
        if not secret:
            raise BadSignature("the platform has no webhook_secret configured")
        if self.config.webhook_auth == "hmac":
            self._verify_hmac(headers, body, secret)
        payload = read_json(body)
        if not isinstance(payload, dict):
            raise Malformed("expected one Moodle event as a JSON object")
        if self.config.webhook_auth != "hmac":
            token = payload.get("token")
            # JSON's \u escapes can make lone surrogates, which plain UTF-8 cannot encode: "surrogatepass"
            # encodes them as bytes no secret's UTF-8 has, so such a token is just a wrong one.
            given = token.encode("utf-8", "surrogatepass") if isinstance(token, str) else None
            if given is None or not hmac.compare_digest(given, secret.encode()):
                raise BadSignature("the token in the body does not match the platform's webhook_secret")
        return payload

    def _verify_hmac(self, headers: Mapping[str, str], body: bytes, secret: str) -> None:
        signature, stamp = headers.get(SIGNATURE_HEADER, ""), headers.get(TIMESTAMP_HEADER, "")
        try:
            sent_at = int(stamp)
        except ValueError:
            raise BadSignature(f"{TIMESTAMP_HEADER}: expected Unix seconds") from None
        # Compared as int with float, which is exact: a huge stamp cannot overflow (time.time() - it would).
        now, window = time.time(), self.config.replay_window_seconds
        if not now - window <= sent_at <= now + window:
            raise BadSignature(f"{TIMESTAMP_HEADER}: outside the replay window")
        expected = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
        # As bytes: compare_digest refuses str with non-ASCII characters, which a header may carry.
        given = signature.removeprefix("sha256=").encode("utf-8", "surrogatepass")
        if not hmac.compare_digest(given, expected.encode()):
            raise BadSignature(f"{SIGNATURE_HEADER}: does not match the body")

    def webhook_type(self, payload: Mapping[str, Any]) -> str:
        return str(payload.get("eventname", "unknown"))

    def parse_webhook(self, payload: Mapping[str, Any]) -> list[LearningEvent]:
        return parse_moodle_event(self.config.platform, payload)

    def needs_fetch(self, payload: Mapping[str, Any]) -> bool:
        return needs_fetch(payload)

    def fetch_for_webhook(self, payload: Mapping[str, Any]) -> list[LearningEvent]:
        """A quiz attempt's or a grading's grade, read from the learner's grade items.

        Grade items give the grade with its range and the item's type, and are what the nightly poll
        reads, so the event has the same key either way.
        """
        if not needs_fetch(payload):
            return []
        course = moodle_id(payload.get("courseid"))
        user = moodle_id(payload.get("relateduserid"))
        other = payload.get("other") if isinstance(payload.get("other"), Mapping) else {}
        answer = self.call("gradereport_user_get_grade_items", courseid=course, userid=user)
        events: list[LearningEvent] = []
        for usergrade in answer.get("usergrades") or []:
            for item in usergrade.get("gradeitems") or []:
                wanted = (
                    payload.get("eventname") == USER_GRADED
                    and str(item.get("id")) == str(other.get("itemid"))
                ) or (
                    payload.get("eventname") == QUIZ_SUBMITTED
                    and item.get("itemmodule") == "quiz"
                    and str(item.get("iteminstance")) == str(other.get("quizid"))
                )
                if wanted:
                    events.extend(grade_item_events(self.config.platform, course, user, item, "webhook"))
        return events

    # --- polling -------------------------------------------------------------------------------------

    def courses(self) -> list[str]:
        answer = self.call("core_course_get_courses_by_field")
        # The site itself is course 1 (SITEID) and has no learners to sync.
        return [str(c["id"]) for c in answer.get("courses", []) if str(c.get("id")) != "1"]

    def roster(self, course: str) -> list[Member]:
        users = self.call(
            "core_enrol_get_enrolled_users",
            courseid=course,
            options=[
                {"name": "onlyactive", "value": 1},
                {"name": "userfields", "value": "id,fullname,email,roles"},
            ],
        )
        members = []
        for user in users:
            roles = {role.get("shortname") for role in user.get("roles") or []}
            if roles and "student" not in roles:
                continue  # teachers and managers earn nothing here
            members.append(Member(moodle_id(user["id"]), name=user.get("fullname"), email=user.get("email")))
        return members

    def poll(
        self, course: str, cursors: Mapping[str, dict[str, Any]], options: PollOptions
    ) -> Iterator[PollPage]:
        cursors = {} if options.full else cursors
        roster = self.roster(course)
        learners = [member.learner for member in roster]
        yield self._enrolments(course, dict(cursors.get("users") or {}), roster)
        yield from self._grades(course, dict(cursors.get("grades") or {}))
        completion = _PerLearner(cursors.get("completion") or {}, learners)
        activities = _PerLearner(cursors.get("activities") or {}, learners)
        sources: list[tuple[str, Callable[[], Iterator[Page]]]] = []
        for batch in completion.batches():
            sources.append(
                ("completion", self._read_each(batch, "core_completion_get_course_completion_status", course))
            )
        for batch in activities.batches():
            sources.append(
                (
                    "activities",
                    self._read_each(batch, "core_completion_get_activities_completion_status", course),
                )
            )
        for stream, page in interleave(sources, self.config.policy.concurrency):
            state = completion if stream == "completion" else activities
            events, problems = [], []
            for user, answer in page.items:
                if isinstance(answer, WebServiceError):
                    # A course without completion criteria is one problem, not one per learner.
                    where = "" if answer.code == "nocriteriaset" else f", learner {user}"
                    if f"course {course}{where}: {answer}" not in problems:
                        problems.append(f"course {course}{where}: {answer}")
                elif stream == "completion":
                    events.extend(self._course_completion(course, user, answer, state.snapshot))
                else:
                    events.extend(self._activities(course, user, answer, state.snapshot))
                state.done(user)
            yield PollPage(stream, events, state.cursor(), problems)

    def _enrolments(self, course: str, cursor: dict[str, Any], roster: list[Member]) -> PollPage:
        known = set(cursor.get("snapshot") or [])
        events = [
            LearningEvent(
                self.config.platform,
                f"enrolled:{course}:{m.learner}",
                "enrolled",
                m.learner,
                utcnow(),
                course=course,
                data={"source": "poll"},
            )
            for m in roster
            if m.learner not in known
        ]
        return PollPage("users", events, {"snapshot": sorted(known | {m.learner for m in roster}, key=int)})

    def _grades(self, course: str, cursor: dict[str, Any]) -> Iterator[PollPage]:
        # One call for the whole course (userid 0): far fewer calls than one per learner.
        answer = self.call("gradereport_user_get_grade_items", courseid=course, userid=0)
        snapshot: dict[str, Any] = dict(cursor.get("snapshot") or {})
        events: list[LearningEvent] = []
        for usergrade in answer.get("usergrades") or []:
            user = moodle_id(usergrade["userid"])
            seen = snapshot.setdefault(user, {})
            for item in usergrade.get("gradeitems") or []:
                item_id, raw = str(item.get("id")), item.get("graderaw")
                # A hidden grade (gradeishidden) is not the learner's yet: not counted, and not recorded
                # as seen, so the poll after the teacher shows it counts it.
                if raw is not None and seen.get(item_id) != raw and not item.get("gradeishidden"):
                    events.extend(grade_item_events(self.config.platform, course, user, item, "poll"))
                    seen[item_id] = raw
        yield PollPage("grades", events, {"snapshot": snapshot})

    def _read_each(self, users: list[str], function: str, course: str) -> Callable[[], Iterator[Page]]:
        def pages() -> Iterator[Page]:
            answers: list[tuple[str, Any]] = []
            for user in users:
                try:
                    answers.append((user, self.call(function, courseid=course, userid=user)))
                except WebServiceError as error:
                    if error.code == "nocriteriaset":  # the course has no completion criteria at all
                        answers.extend((u, error) for u in users[len(answers) :])
                        break
                    answers.append((user, error))
            yield Page(answers, None)

        return pages

    def _course_completion(
        self, course: str, user: str, answer: Any, snapshot: dict[str, Any]
    ) -> list[LearningEvent]:
        status = answer.get("completionstatus") or {}
        if not status.get("completed") or snapshot.get(user):
            return []
        snapshot[user] = True
        times = [c.get("timecompleted") for c in status.get("completions") or [] if c.get("timecompleted")]
        return [course_completed_event(self.config.platform, course, user, max(times, default=None), "poll")]

    def _activities(
        self, course: str, user: str, answer: Any, snapshot: dict[str, Any]
    ) -> list[LearningEvent]:
        before: dict[str, Any] = snapshot.get(user) or {}
        after: dict[str, Any] = {}
        events: list[LearningEvent] = []
        for status in answer.get("statuses") or []:
            cmid, state = moodle_id(status["cmid"]), int(status.get("state") or 0)
            if state in COMPLETE_STATES:
                after[cmid] = status.get("timecompleted") or 0
                if cmid not in before:
                    events.append(
                        activity_completed_event(
                            self.config.platform,
                            course,
                            cmid,
                            user,
                            state,
                            status.get("timecompleted"),
                            "poll",
                        )
                    )
            elif cmid in before:
                occurrence = f"t{before[cmid]}"
                events.append(
                    activity_uncompleted_event(self.config.platform, course, cmid, user, occurrence, "poll")
                )
        snapshot[user] = after
        return events


class _PerLearner:
    """A per-learner stream: its snapshot, and while a pass is under way the learners still to read."""

    def __init__(self, cursor: Mapping[str, Any], learners: list[str]) -> None:
        self.snapshot: dict[str, Any] = json.loads(json.dumps(cursor.get("snapshot") or {}))
        pending = cursor.get("pending")
        self.pending: list[str] = list(pending) if pending is not None else list(learners)

    def batches(self) -> list[list[str]]:
        return [
            self.pending[i : i + LEARNERS_PER_PAGE] for i in range(0, len(self.pending), LEARNERS_PER_PAGE)
        ]

    def done(self, user: str) -> None:
        if user in self.pending:
            self.pending.remove(user)

    def cursor(self) -> dict[str, Any]:
        return {"snapshot": self.snapshot, "pending": list(self.pending) or None}
