"""Canvas: signed Live Events in, REST polling of progress, submissions, enrollments and modules.

Quirks handled here, each with its source (details in ../shared/reference/lms-apis.md):
- Throttling is a 429, or (before October 2025) a 403 whose plain-text body says "Rate Limit Exceeded"
  (doc/api/throttling.md, app/middleware/request_throttle.rb; Canvas API change log 2025-10-06).
- An expired or revoked token is a 401 *with* ``WWW-Authenticate``; without it, a 401 is a permission
  problem for that resource (doc/api/oauth.md "Storing Tokens").
- ``graded_since`` must be exactly ``YYYY-MM-DDTHH:MM:SSZ`` and filters ``graded_at > ts``; with
  ``order=graded_at`` pagination is by bookmark, stable under concurrent writes
  (app/controllers/submissions_api_controller.rb#for_students).
- An explicit ``student_ids[]`` list longer than the page size (100) answers 400 "too many students".
- ``per_page`` is at most 100 (lib/api.rb ``MAX_PER_PAGE``); pages are linked by the ``Link`` header.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any

import requests

from bridge.clock import utcnow
from bridge.domain.events import LearningEvent
from connectors import (
    Connector,
    ConnectorConfig,
    Member,
    PollOptions,
    PollPage,
    parse_time,
)
from connectors.canvas_events import (
    ENROLLED_STATES,
    course_graded_event,
    enrolled_event,
    graded_event,
    local_id,
    parse_live_event,
    progress_events,
)
from connectors.canvas_jwt import JwksCache, verify_live_event
from connectors.http import HttpClient, ItemSkipped, Page, PlatformStopped, Retryable
from connectors.parallel import interleave

PER_PAGE = 100
STUDENTS_PER_REQUEST = 100  # an explicit student_ids[] list may not exceed the page size
# The JWKS Instructure documents for signed Live Events (beta and production), rotated monthly.
DEFAULT_JWKS_URL = "https://8axpcl50e4.execute-api.us-east-1.amazonaws.com/main/jwks"


def classify(response: requests.Response) -> None:
    status = response.status_code
    if status == 403 and "Rate Limit Exceeded" in response.text:
        raise Retryable("throttled (403 Rate Limit Exceeded)", _float(response.headers.get("Retry-After")))
    if status == 401 and "WWW-Authenticate" in response.headers:
        raise PlatformStopped(
            f"Canvas refused the access token (401: {_errors(response)}): give the platform a new token"
        )
    if status in (401, 403):
        raise ItemSkipped(f"not permitted ({status}: {_errors(response)})")


class CanvasConnector(Connector):
    kind = "canvas"

    def __init__(self, config: ConnectorConfig, sleep: Callable[[float], None] | None = None) -> None:
        super().__init__(config)
        extra = {"sleep": sleep} if sleep is not None else {}
        headers = {"Authorization": f"Bearer {config.token}"} if config.token else {}
        self.http = HttpClient(
            config.base_url or "http://canvas.invalid",
            config.policy,
            headers=headers,
            classify=classify,
            **extra,
        )
        self.jwks = JwksCache(config.jwks_url or DEFAULT_JWKS_URL, config.jwks_refetch_seconds)

    @property
    def calls(self) -> int:
        return self.http.calls

    def close(self) -> None:
        self.http.close()
        self.jwks.close()

    # --- webhooks ------------------------------------------------------------------------------------

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
        return verify_live_event(body, self.config, self.jwks)

    def webhook_type(self, payload: Mapping[str, Any]) -> str:
        metadata = payload.get("metadata")
        return str(metadata.get("event_name", "unknown")) if isinstance(metadata, Mapping) else "unknown"

    def parse_webhook(self, payload: Mapping[str, Any]) -> list[LearningEvent]:
        return parse_live_event(self.config.platform, payload)

    # --- polling -------------------------------------------------------------------------------------

    def courses(self) -> list[str]:
        courses: list[str] = []
        for page in self.http.paginate(self.http.url("api/v1/courses"), {"per_page": PER_PAGE}):
            courses.extend(str(course["id"]) for course in page.items if isinstance(course, Mapping))
        return courses

    def roster(self, course: str) -> list[Member]:
        members: dict[str, Member] = {}
        for page in self.http.paginate(self._enrollments_url(course), _enrollment_params()):
            for enrollment in page.items:
                user = str(enrollment["user_id"])
                name = (enrollment.get("user") or {}).get("name")
                members[user] = Member(user, name=name)
        return list(members.values())

    def poll(
        self, course: str, cursors: Mapping[str, dict[str, Any]], options: PollOptions
    ) -> Iterator[PollPage]:
        """Enrollments first (they give the roster), then progress, submissions and modules at once."""
        cursors = {} if options.full else cursors
        enrollments = dict(cursors.get("enrollments") or {})
        yield from self._enrollments(course, enrollments)
        roster = sorted(enrollments.get("snapshot", {}), key=int)
        progress = dict(cursors.get("progress") or {})
        submissions = _SubmissionsRun(
            cursors.get("submissions") or {},
            roster,
            self.config.submissions_overlap,
            self.config.policy.concurrency,
        )
        modules = dict(cursors.get("modules") or {})
        sources: list[tuple[tuple[str, str], Callable[[], Iterator[Page]]]] = [
            (("progress", ""), self._resume(progress, f"api/v1/courses/{course}/bulk_user_progress", {}))
        ]
        for index, chunk in submissions.open_chunks():
            sources.append((("submissions", str(index)), self._chunk_pages(course, chunk, submissions.since)))
        if options.items:
            modules.setdefault("snapshot", {})
            # Learners still to read in a pass a failure cut short; else everyone.
            pending = modules.get("pending") or roster
            modules["pending"] = list(pending)
            for user in pending:
                sources.append((("modules", user), self._student_modules(course, user)))
        for (stream, tag), page in interleave(sources, self.config.policy.concurrency):
            if stream == "progress":
                yield self._progress_page(course, progress, page)
            elif stream == "submissions":
                events = submissions.take(course, int(tag), page, self.config.platform)
                yield PollPage("submissions", events, submissions.cursor())
            else:
                events = self._modules_events(course, tag, modules["snapshot"], page.items)
                modules["pending"] = [user for user in modules["pending"] if user != tag] or None
                yield PollPage("modules", events, json.loads(json.dumps(modules)))
        if submissions.finish():
            yield PollPage("submissions", [], submissions.cursor())

    def _enrollments_url(self, course: str) -> str:
        return self.http.url(f"api/v1/courses/{course}/enrollments")

    def _enrollments(self, course: str, cursor: dict[str, Any]) -> Iterator[PollPage]:
        snapshot: dict[str, Any] = cursor.setdefault("snapshot", {})
        pages = (
            self.http.paginate(cursor["next"])
            if cursor.get("next")
            else self.http.paginate(self._enrollments_url(course), _enrollment_params())
        )
        now = utcnow()
        for page in pages:
            events: list[LearningEvent] = []
            for enrollment in page.items:
                if enrollment.get("enrollment_state") not in ENROLLED_STATES:
                    continue
                user = str(enrollment["user_id"])
                score = (enrollment.get("grades") or {}).get("current_score")
                if user not in snapshot:
                    at = parse_time(enrollment.get("created_at")) or now
                    events.append(enrolled_event(self.config.platform, course, user, at, "poll"))
                if score is not None and snapshot.get(user) != score:
                    at = parse_time(enrollment.get("updated_at")) or now
                    events.append(course_graded_event(self.config.platform, course, user, score, at, "poll"))
                snapshot[user] = score
            cursor["next"] = page.next_url
            yield PollPage("enrollments", events, json.loads(json.dumps(cursor)))

    def _resume(
        self, cursor: dict[str, Any], path: str, params: dict[str, Any]
    ) -> Callable[[], Iterator[Page]]:
        def pages() -> Iterator[Page]:
            if cursor.get("next"):
                return self.http.paginate(cursor["next"])
            return self.http.paginate(self.http.url(path), {"per_page": PER_PAGE, **params})

        return pages

    def _progress_page(self, course: str, cursor: dict[str, Any], page: Page) -> PollPage:
        snapshot: dict[str, Any] = cursor.setdefault("snapshot", {})
        events: list[LearningEvent] = []
        for row in page.items:
            user, progress = str(row["id"]), row.get("progress") or {}
            state = "done" if progress.get("completed_at") else progress.get("requirement_completed_count")
            if snapshot.get(user) != state:
                events.extend(progress_events(self.config.platform, course, user, progress, "poll"))
                snapshot[user] = state
        cursor["next"] = page.next_url
        return PollPage("progress", events, json.loads(json.dumps(cursor)))

    def _chunk_pages(
        self, course: str, chunk: dict[str, Any], since: str | None
    ) -> Callable[[], Iterator[Page]]:
        def pages() -> Iterator[Page]:
            if chunk.get("next"):
                return self.http.paginate(chunk["next"])
            params: dict[str, Any] = {
                "student_ids[]": chunk["students"],
                "order": "graded_at",
                "include[]": "assignment",
                "workflow_state": "graded",
                "per_page": PER_PAGE,
            }
            if since is not None:
                params["graded_since"] = since
            return self.http.paginate(self.http.url(f"api/v1/courses/{course}/students/submissions"), params)

        return pages

    def _student_modules(self, course: str, user: str) -> Callable[[], Iterator[Page]]:
        def pages() -> Iterator[Page]:
            url = self.http.url(f"api/v1/courses/{course}/modules")
            params = {"include[]": "items", "student_id": user, "per_page": PER_PAGE}
            modules: list[Any] = []
            for page in self.http.paginate(url, params):
                for module in page.items:
                    # Canvas leaves "items" out of big modules: read them from the module's items URL
                    # (developerdocs Modules, "include[]=items").
                    if "items" not in module and module.get("items_count") and module.get("items_url"):
                        module = {**module, "items": self._module_items(module["items_url"], user)}
                    modules.append(module)
            yield Page(modules, None)

        return pages

    def _module_items(self, url: str, user: str) -> list[Any]:
        items: list[Any] = []
        for page in self.http.paginate(url, {"student_id": user, "per_page": PER_PAGE}):
            items.extend(page.items)
        return items

    def _modules_events(
        self, course: str, user: str, snapshot: dict[str, str], modules: list[Any]
    ) -> list[LearningEvent]:
        platform, now = self.config.platform, utcnow()
        events: list[LearningEvent] = []
        for module in modules:
            module_id = str(module["id"])
            completed_at = parse_time(module.get("completed_at"))
            if module.get("state") == "completed":
                events.append(
                    LearningEvent(
                        platform,
                        f"module_completed:{course}:{module_id}:{user}",
                        "module_completed",
                        user,
                        completed_at or now,
                        course=course,
                        item=module_id,
                        data={"name": module.get("name"), "source": "poll"},
                    )
                )
            for item in module.get("items") or []:
                requirement = item.get("completion_requirement") or {}
                if requirement.get("completed") is True:
                    item_id = str(item["id"])
                    events.append(
                        LearningEvent(
                            platform,
                            f"activity_completed:{course}:{item_id}:{user}",
                            "activity_completed",
                            user,
                            completed_at or now,
                            course=course,
                            item=item_id,
                            data={"type": requirement.get("type"), "source": "poll"},
                        )
                    )
        digest = hashlib.sha256("|".join(sorted(e.event_key for e in events)).encode()).hexdigest()[:16]
        if snapshot.get(user) == digest:
            return []  # nothing changed for this learner since the last run
        snapshot[user] = digest
        return events


class _SubmissionsRun:
    """The ``graded_since`` watermark and, while a run is under way, each student chunk's next page.

    Cursor: ``{"watermark": iso, "run": {"since": iso|None, "high": iso|None, "unposted": iso|None,
    "chunks": [...]}}``; a failed run leaves ``run`` behind and the next one resumes every unfinished
    chunk from its next link.

    Canvas posting policies: a grade not posted yet (``posted_at`` null; ``muted`` in a Live Event) is
    hidden from the student and not counted. ``graded_at`` is when it was graded, not when it is posted,
    and ``graded_since`` filters on ``graded_at``: a watermark past it would never read it again once
    posted. So the watermark stops just before the oldest unposted grade a run saw; every run reads it
    again until it is posted, then counts it.
    """

    def __init__(
        self, cursor: Mapping[str, Any], roster: list[str], overlap: timedelta, concurrency: int
    ) -> None:
        self.watermark: str | None = cursor.get("watermark")
        run = cursor.get("run")
        if run is None:
            since = None
            if self.watermark is not None:
                since = _canvas_time(datetime.fromisoformat(self.watermark) - overlap)
            run = {"since": since, "high": None, "unposted": None, "chunks": []}
        else:
            run = json.loads(json.dumps(run))
        covered = {student for chunk in run["chunks"] for student in chunk["students"]}
        # Learners enrolled since an interrupted run began get chunks of their own, from the same point.
        new = [student for student in roster if student not in covered]
        # Chunks are read one page after another, so they are as many as the connections allowed (or a
        # multiple): equal shares keep every connection busy to the end, at the cost of at most one
        # part-filled page per chunk.
        chunks = -(-len(new) // STUDENTS_PER_REQUEST)
        chunks = -(-chunks // concurrency) * concurrency if chunks else 0
        size = -(-len(new) // chunks) if chunks else 1
        for start in range(0, len(new), size):
            run["chunks"].append({"students": new[start : start + size], "next": None, "done": False})
        self.run: dict[str, Any] = run

    @property
    def since(self) -> str | None:
        return self.run["since"]

    def open_chunks(self) -> list[tuple[int, dict[str, Any]]]:
        return [(index, chunk) for index, chunk in enumerate(self.run["chunks"]) if not chunk["done"]]

    def take(self, course: str, index: int, page: Page, platform: str) -> list[LearningEvent]:
        events: list[LearningEvent] = []
        for submission in page.items:
            graded_at = parse_time(submission.get("graded_at"))
            if graded_at is None:
                continue
            high = self.run["high"]
            if high is None or graded_at > datetime.fromisoformat(high):
                self.run["high"] = graded_at.isoformat()
            # Unposted grades are hidden from the student (see canvas_events._grade_change): not counted
            # now, and the watermark must not pass them (see the class docstring).
            if submission.get("posted_at") is None:
                unposted = self.run.get("unposted")
                if unposted is None or graded_at < datetime.fromisoformat(unposted):
                    self.run["unposted"] = graded_at.isoformat()
                continue
            if submission.get("score") is None:
                continue
            assignment = submission.get("assignment") or {}
            events.append(
                graded_event(
                    platform,
                    course,
                    local_id(submission["assignment_id"]),
                    local_id(submission["user_id"]),
                    submission["score"],
                    assignment.get("points_possible"),
                    graded_at,
                    "poll",
                )
            )
        chunk = self.run["chunks"][index]
        chunk["next"] = page.next_url
        chunk["done"] = page.next_url is None
        return events

    def finish(self) -> bool:
        """Close the run once every chunk is read: the watermark moves to the latest grade seen, or to
        just before the oldest grade seen unposted."""
        if any(not chunk["done"] for chunk in self.run["chunks"]):
            return False
        if self.run["high"] is not None:
            self.watermark = self.run["high"]
        if self.run.get("unposted") is not None:
            # A second before it: graded_since is strict, and the overlap may be configured as zero.
            hold = datetime.fromisoformat(self.run["unposted"]) - timedelta(seconds=1)
            if self.watermark is None or hold < datetime.fromisoformat(self.watermark):
                self.watermark = hold.isoformat()
        self.run = {}
        return True

    def cursor(self) -> dict[str, Any]:
        cursor: dict[str, Any] = {"watermark": self.watermark}
        if self.run:
            cursor["run"] = json.loads(json.dumps(self.run))
        return cursor


def _enrollment_params() -> dict[str, Any]:
    return {
        "type[]": "StudentEnrollment",
        "state[]": sorted(ENROLLED_STATES),
        "per_page": PER_PAGE,
    }


def _canvas_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _errors(response: requests.Response) -> str:
    """Canvas error bodies vary (an errors list, an errors object, an error string, plain text)."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:120].strip()
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        return str(errors[0].get("message", ""))
    if isinstance(body, dict) and "error" in body:
        return str(body["error"])
    return json.dumps(errors)[:120] if errors else response.text[:120].strip()
