"""A fake Canvas on 127.0.0.1: a real threaded HTTP server with latency and injected faults.

It serves the three endpoints the nightly sync reads (enrollments, bulk progress, bulk submissions) for
one generated course, paginated with ``Link`` headers as Canvas does (page numbers for lists, a bookmark
for submissions in ``graded_at`` order), and can be told to fail in each of the ways Canvas and the
network do.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

FAULTS = ("429", "403", "500", "timeout", "invalid_json")
GRADED_FROM = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


@dataclass
class FakeCanvas:
    course: str = "101"
    students: int = 20
    assignments: int = 5
    latency: float = 0.0  # seconds added to every answer
    timeout_sleep: float = 1.0  # how long a "timeout" fault keeps the client waiting
    # Faults to answer the next requests of a route with ("enrollments", "progress", "submissions").
    faults: dict[str, list[str]] = field(default_factory=dict)
    # While true, every submissions page after the first answers 500: a failure mid-pagination.
    break_later_pages: bool = False
    requests: int = 0
    pages: int = 0  # requests answered with data

    def __post_init__(self) -> None:
        self.student_ids = [str(2000 + i) for i in range(self.students)]
        self.assignment_ids = [str(700 + j) for j in range(self.assignments)]
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        # Built once, in graded_at order: the fake must not be what a benchmark of the sync measures.
        self._submissions = sorted(self.submissions(), key=lambda row: (row["graded_at"], row["id"]))
        self._encoded = {id(row): json.dumps(row) for row in self._submissions}

    # --- the course's data, and the events a sync of it must store ------------------------------------

    def score(self, student: int, assignment: int) -> float:
        return float((student * 7 + assignment * 3) % 11)

    def submissions(self) -> list[dict[str, Any]]:
        rows = []
        for j, assignment in enumerate(self.assignment_ids):
            for i, student in enumerate(self.student_ids):
                graded_at = GRADED_FROM + timedelta(minutes=j * self.students + i)
                rows.append(
                    {
                        "id": 90000 + j * self.students + i,
                        "assignment_id": int(assignment),
                        "user_id": int(student),
                        "score": self.score(i, j),
                        "workflow_state": "graded",
                        "graded_at": _iso(graded_at),
                        "posted_at": _iso(graded_at),
                        "submitted_at": _iso(graded_at - timedelta(days=1)),
                        "assignment": {"id": int(assignment), "points_possible": 10},
                    }
                )
        return rows

    def progress(self, i: int) -> dict[str, Any]:
        done = i % 4  # of 3 requirements: 0, 1, 2 or complete
        completed = _iso(GRADED_FROM + timedelta(hours=i)) if done == 3 else None
        return {
            "requirement_count": 3,
            "requirement_completed_count": done,
            "completed_at": completed,
            "next_requirement_url": None,
        }

    def expected_keys(self) -> set[str]:
        course, keys = self.course, set()
        for i, student in enumerate(self.student_ids):
            keys.add(f"enrolled:{course}:{student}")
            keys.add(f"course_graded:{course}:{student}:{float(50 + i % 50)!r}")
            done = i % 4
            if done == 3:
                keys.add(f"course_completed:{course}:{student}")
            elif done:
                keys.add(f"course_progress:{course}:{student}:{done}")
            for j, assignment in enumerate(self.assignment_ids):
                keys.add(f"assignment_graded:{assignment}:{student}:{self.score(i, j)!r}")
        return keys

    def minimum_calls(self, per_page: int = 100) -> int:
        """The fewest requests that read everything: each list in full pages."""
        pages = -(-self.students // per_page)
        return 2 * pages + -(-(self.students * self.assignments) // per_page)

    # --- serving --------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def running(self) -> Iterator[str]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: without this, Nagle's algorithm and the client's
            # delayed ACK add 40 ms to every answer, which a benchmark would blame on the sync.
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    fake._answer(self)

            def log_message(self, format: str, *args: Any) -> None:
                return None  # quiet: the test reads counters, not logs

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{self._server.server_address[1]}"
        finally:
            self._server.shutdown()
            self._server.server_close()

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        url = urlsplit(handler.path)
        query = parse_qs(url.query)
        prefix = f"/api/v1/courses/{self.course}/"
        route = url.path.removeprefix(prefix).replace("students/submissions", "submissions")
        with self._lock:
            self.requests += 1
            queued = self.faults.get(route) or []
            fault = queued.pop(0) if queued else None
        if self.latency:
            time.sleep(self.latency)
        if fault is not None:
            self._fault(handler, fault)
            return
        per_page = min(int(query.get("per_page", ["10"])[0]), 100)
        if route == "enrollments":
            rows = [self._enrollment(i, s) for i, s in enumerate(self.student_ids)]
        elif route == "bulk_user_progress":
            rows = [
                {"id": int(s), "display_name": f"Student {s}", "progress": self.progress(i)}
                for i, s in enumerate(self.student_ids)
            ]
        elif route == "submissions":
            rows = self._filtered_submissions(query)
        else:
            self._send(handler, 404, json.dumps({"errors": [{"message": "not found"}]}))
            return
        offset = int(query.get("bookmark", query.get("page", ["0"]))[0])
        if route != "submissions":
            offset = max(0, offset - 1) * per_page  # page numbers start at 1
        if route == "submissions" and offset and self.break_later_pages:
            self._fault(handler, "500")
            return
        page = rows[offset : offset + per_page]
        headers = {}
        if offset + per_page < len(rows):
            following = dict(query)
            following["per_page"] = [str(per_page)]
            if route == "submissions":
                following["bookmark"] = [str(offset + per_page)]
            else:
                following["page"] = [str(offset // per_page + 2)]
            base = f"http://{handler.headers['Host']}{url.path}"
            headers["Link"] = f'<{base}?{urlencode(following, doseq=True)}>; rel="next"'
        with self._lock:
            self.pages += 1
        body = "[" + ",".join(self._encoded.get(id(row)) or json.dumps(row) for row in page) + "]"
        self._send(handler, 200, body, headers)

    def _enrollment(self, i: int, student: str) -> dict[str, Any]:
        return {
            "id": 50000 + i,
            "user_id": int(student),
            "course_id": int(self.course),
            "type": "StudentEnrollment",
            "enrollment_state": "active",
            "created_at": _iso(GRADED_FROM - timedelta(days=30)),
            "updated_at": _iso(GRADED_FROM),
            "grades": {"current_score": float(50 + i % 50)},
            "user": {"id": int(student), "name": f"Student {student}"},
        }

    def _filtered_submissions(self, query: dict[str, list[str]]) -> list[dict[str, Any]]:
        wanted = {int(student) for student in query.get("student_ids[]", []) if student != "all"}
        every = "all" in query.get("student_ids[]", [])
        since = query.get("graded_since", [None])[0]
        return [
            row
            for row in self._submissions
            if (every or row["user_id"] in wanted) and (since is None or row["graded_at"] > since)
        ]  # graded_at > ts, as Canvas filters

    def _fault(self, handler: BaseHTTPRequestHandler, fault: str) -> None:
        if fault == "429":
            self._send(handler, 429, "Too Many Requests", {"Retry-After": "0"}, "text/plain")
        elif fault == "403":
            self._send(
                handler,
                403,
                "403 Forbidden (Rate Limit Exceeded)\n",
                {"X-Rate-Limit-Remaining": "0.0"},
                "text/plain",
            )
        elif fault == "500":
            self._send(handler, 500, json.dumps({"errors": [{"message": "Internal error"}]}))
        elif fault == "timeout":
            time.sleep(self.timeout_sleep)
            self._send(handler, 200, "[]")
        elif fault == "invalid_json":
            self._send(handler, 200, "<html><body>Canvas is down for maintenance</body>")
        else:
            raise ValueError(f"unknown fault {fault!r}; expected one of {FAULTS}")

    def _send(
        self,
        handler: BaseHTTPRequestHandler,
        status: int,
        body: str,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> None:
        data = body.encode()
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
