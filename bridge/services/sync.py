"""The sync with the LMSs: poll each course through its platform's connector, store what it finds in the
inbox, and persist each stream's cursor after every page, so a run that fails halfway resumes where it
stopped. Every run is recorded; a lease makes sure one node at a time syncs a given platform.

Webhooks are the fast path and the poll the source of truth: both produce the same event keys, so the
inbox keeps one row per fact whichever came first.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from bridge.clock import utcnow
from bridge.db.engine import Database
from bridge.db.models import Badge
from bridge.db.models_sync import SyncCursor, SyncRun
from bridge.db.upsert import upsert
from bridge.notify.outbox import add_notifications, routes
from bridge.services import leases
from bridge.services.errors import Conflict, Invalid, NotFound
from bridge.services.ingest import Inbox
from bridge.services.paging import Keyset, Page, page_of, paged
from bridge.settings import PlatformSettings, Settings
from connectors import (
    Connector,
    ConnectorConfig,
    HttpPolicy,
    LmsError,
    PlatformStopped,
    PollOptions,
    WebhookRejected,
    connector_for,
)

log = logging.getLogger(__name__)

SYNCED_KINDS = ("canvas", "moodle")
MAX_PROBLEMS = 100
# Kinds only Canvas's per-learner module reads produce: worth their cost only when a badge counts them.
ITEM_KINDS = frozenset({"module_completed", "activity_completed"})


def connector_config(platform: PlatformSettings, settings: Settings) -> ConnectorConfig:
    sync = settings.sync
    return ConnectorConfig(
        platform=platform.id,
        kind=platform.kind,
        base_url=str(platform.base_url) if platform.base_url else None,
        token=platform.token.get_secret_value() if platform.token else None,
        webhook_secret=platform.webhook_secret.get_secret_value() if platform.webhook_secret else None,
        webhook_auth=platform.effective_webhook_auth,
        jwks_url=str(platform.jwks_url) if platform.jwks_url else None,
        jwt_issuer=platform.jwt_issuer,
        replay_window_seconds=sync.replay_window_seconds,
        submissions_overlap=timedelta(minutes=sync.submissions_overlap_minutes),
        policy=HttpPolicy(
            timeout=sync.timeout_seconds,
            attempts=sync.attempts,
            backoff_base=sync.backoff_base_seconds,
            backoff_max=sync.backoff_max_seconds,
            pace_below=sync.pace_below,
            concurrency=sync.concurrency,
        ),
    )


class Connectors:
    """One connector per platform, made on first use and kept: its HTTP session and JWKS cache live on."""

    def __init__(self, settings: Settings, factory: Callable[[ConnectorConfig], Connector] = connector_for):
        self._settings = settings
        self._factory = factory
        self._made: dict[str, Connector] = {}
        self._lock = threading.Lock()

    def get(self, platform_id: str) -> Connector | None:
        """The platform's connector; None when it is not configured or is not an LMS (kind "custom")."""
        platform = self._settings.platform(platform_id)
        if platform is None or platform.kind not in SYNCED_KINDS:
            return None
        with self._lock:
            if platform_id not in self._made:
                self._made[platform_id] = self._factory(connector_config(platform, self._settings))
            return self._made[platform_id]

    def close(self) -> None:
        with self._lock:
            for connector in self._made.values():
                connector.close()
            self._made.clear()


@dataclass(frozen=True, slots=True)
class RunRecord:
    id: int
    platform: str
    course: str | None
    full: bool
    trigger: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    courses: int
    calls: int
    events: int
    duplicates: int
    errors: int
    problems: list[str]


class SyncBusy(Conflict):
    code = "sync_running"


class _Run:
    """The counters of the run under way, written to its row as it goes."""

    def __init__(self, run_id: int, calls_before: int) -> None:
        self.id, self.calls_before = run_id, calls_before
        self.courses = self.events = self.duplicates = self.errors = 0
        self.problems: list[str] = []

    def problem(self, message: str) -> None:
        self.errors += 1
        if len(self.problems) < MAX_PROBLEMS and message not in self.problems:
            self.problems.append(message)


class SyncService:
    def __init__(
        self,
        database: Database,
        settings: Settings,
        connectors: Connectors | None = None,
        holder: str | None = None,
    ) -> None:
        self._database = database
        self._settings = settings
        self._connectors = connectors or Connectors(settings)
        self._inbox = Inbox(database)
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"

    def platforms(self) -> list[str]:
        return [p.id for p in self._settings.platforms if p.kind in SYNCED_KINDS]

    def run(
        self, platform_id: str, course: str | None = None, *, full: bool = False, trigger: str = "cli"
    ) -> RunRecord:
        """Sync one platform (every course, or ``course``); the run's record, however it ended."""
        platform = self._settings.platform(platform_id)
        if platform is None:
            raise NotFound(f"platform {platform_id!r} is not configured", code="unknown_platform")
        connector = self._connectors.get(platform_id)
        if connector is None or platform.base_url is None:
            raise Invalid(f"platform {platform_id!r} is not an LMS with a base_url: nothing to sync")
        lease, ttl = f"sync:{platform_id}", self._settings.sync.lease_seconds
        if not leases.acquire(self._database, lease, self.holder, ttl):
            raise SyncBusy(f"a sync of {platform_id!r} is already running on another node")
        try:
            return self._run(platform, connector, course, full, trigger, lease)
        finally:
            leases.release(self._database, lease, self.holder)

    def _run(
        self,
        platform: PlatformSettings,
        connector: Connector,
        only: str | None,
        full: bool,
        trigger: str,
        lease: str,
    ) -> RunRecord:
        run = _Run(self._start(platform.id, only, full, trigger), connector.calls)
        status = "succeeded"
        renewed = time.monotonic()
        options = PollOptions(full=full, items=bool(ITEM_KINDS & self._criteria_kinds()))
        try:
            courses = [only] if only else (list(platform.courses) or connector.courses())
            for course in courses:
                run.courses += 1
                try:
                    for page in connector.poll(course, self._cursors(platform.id, course), options):
                        self._store(platform.id, course, page.stream, page.events, page.cursor, run)
                        for problem in page.problems:
                            run.problem(problem)
                        if time.monotonic() - renewed > self._settings.sync.lease_seconds / 3:
                            leases.acquire(
                                self._database, lease, self.holder, self._settings.sync.lease_seconds
                            )
                            renewed = time.monotonic()
                        self._save(run, connector, "running")
                except PlatformStopped:
                    raise
                except (LmsError, WebhookRejected, KeyError, TypeError, ValueError) as error:
                    # This course failed (its cursors keep what was stored); the others may still sync.
                    run.problem(f"course {course}: {_describe(error)}")
                    status = "partial"
                    log.warning(
                        "sync.course_failed",
                        extra={"platform": platform.id, "course": course, "error": _describe(error)},
                    )
        except PlatformStopped as error:
            run.problem(str(error))
            status = "failed"
            log.error("sync.platform_stopped", extra={"platform": platform.id, "error": str(error)})
        except LmsError as error:  # listing the courses failed
            run.problem(_describe(error))
            status = "failed"
        except BaseException as error:
            # A bug or the database: the run must not stay "running" forever in the record.
            run.problem(f"the sync stopped: {type(error).__name__}: {error}")
            self._save(run, connector, "failed", finished=True)
            raise
        if status == "succeeded" and run.errors:
            status = "partial"  # items were skipped (recorded in problems)
        record = self._save(run, connector, status, finished=True)
        log.info(
            "sync.finished",
            extra={
                "platform": platform.id,
                "run": run.id,
                "status": status,
                "calls": record.calls,
                "events": record.events,
            },
        )
        return record

    def _store(
        self, platform: str, course: str, stream: str, events: list[Any], cursor: dict[str, Any], run: _Run
    ) -> None:
        # Events first, then the cursor: a crash in between re-reads a page whose events are already
        # stored, and the inbox keeps one row per key.
        if events:
            stored = self._inbox.store(events)
            created = sum(s.created for s in stored)
            run.events += created
            run.duplicates += len(stored) - created
        row = {
            "platform": platform,
            "course": course,
            "stream": stream,
            "state": cursor,
            "updated_at": utcnow(),
        }
        with self._database.write() as session:
            statement = upsert(
                self._database.engine.dialect.name,
                SyncCursor.__table__,
                ["platform", "course", "stream"],
                exclude={"platform", "course", "stream"},
            )
            session.execute(statement, row)

    def _cursors(self, platform: str, course: str) -> dict[str, dict[str, Any]]:
        with self._database.read() as session:
            rows = session.execute(
                select(SyncCursor.stream, SyncCursor.state).where(
                    SyncCursor.platform == platform, SyncCursor.course == course
                )
            )
            return {stream: dict(state) for stream, state in rows}

    def _criteria_kinds(self) -> set[str]:
        with self._database.read() as session:
            documents = session.scalars(select(Badge.criteria).where(Badge.enabled.is_(True))).all()
        kinds: set[str] = set()
        for document in documents:
            kinds.update(_kinds_in(document))
        return kinds

    def _start(self, platform: str, course: str | None, full: bool, trigger: str) -> int:
        with self._database.write() as session:
            row = SyncRun(
                platform=platform,
                course=course,
                full=full,
                trigger=trigger,
                holder=self.holder,
                status="running",
                started_at=utcnow(),
                problems=[],
            )
            session.add(row)
            session.flush()
            return row.id

    def _save(self, run: _Run, connector: Connector, status: str, *, finished: bool = False) -> RunRecord:
        values = {
            "status": status,
            "courses": run.courses,
            "calls": connector.calls - run.calls_before,
            "events": run.events,
            "duplicates": run.duplicates,
            "errors": run.errors,
            "problems": list(run.problems),
        }
        if finished:
            values["finished_at"] = utcnow()
        with self._database.write() as session:
            session.execute(update(SyncRun).where(SyncRun.id == run.id).values(**values))
            row = session.get(SyncRun, run.id)
            assert row is not None
            session.refresh(row)
            if finished and status == "failed":  # the alert is written with the run's record, or not at all
                error = run.problems[-1] if run.problems else "the sync failed"
                payload = {"platform": row.platform, "run_id": row.id, "course": row.course, "error": error}
                add_notifications(
                    session, "sync.failed", routes(self._settings, "sync.failed"), payload=payload
                )
            return _record(row)

    def runs(self, platform: str | None = None, limit: int = 50) -> list[RunRecord]:
        """The latest runs first."""
        return self.runs_page(platform, Keyset(limit)).rows

    def runs_page(self, platform: str | None, keyset: Keyset) -> Page[RunRecord]:
        """A page of the recorded runs, the latest first unless ``keyset`` says otherwise."""
        query = select(SyncRun)
        if platform is not None:
            query = query.where(SyncRun.platform == platform)
        with self._database.read() as session:
            rows = [_record(row) for row in session.scalars(paged(query, SyncRun.id, keyset))]
        return page_of(rows, keyset, lambda run: run.id)


def _record(row: SyncRun) -> RunRecord:
    return RunRecord(
        id=row.id,
        platform=row.platform,
        course=row.course,
        full=row.full,
        trigger=row.trigger,
        status=row.status,
        started_at=row.started_at,
        finished_at=row.finished_at,
        courses=row.courses,
        calls=row.calls,
        events=row.events,
        duplicates=row.duplicates,
        errors=row.errors,
        problems=list(row.problems or []),
    )


def _kinds_in(document: Any) -> Iterator[str]:
    """Every event kind a criteria document names, wherever its requirements nest them."""
    if isinstance(document, dict):
        for key, value in document.items():
            if key == "kinds" and isinstance(value, list):
                yield from (kind for kind in value if isinstance(kind, str))
            else:
                yield from _kinds_in(value)
    elif isinstance(document, list):
        for value in document:
            yield from _kinds_in(value)


def _describe(error: BaseException) -> str:
    if isinstance(error, LmsError | WebhookRejected):
        return str(error)
    return f"unexpected answer ({type(error).__name__}: {error})"
