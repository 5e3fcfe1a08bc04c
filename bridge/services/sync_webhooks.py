"""What a webhook implies but does not carry (a Moodle grade's range), read after the answer, durably.

A webhook whose connector ``needs_fetch`` gets a follow-up row (``webhook_follow_ups``) before it is
answered 202; the read then runs on a small thread pool, and its events go to the inbox like any others.

- Done: the row is deleted.
- Failed: the row is charged an attempt and comes due again after the worker's backoff
  (``worker.backoff_*``), or, out of attempts (``worker.max_attempts``) or refused for good (a payload
  the connector cannot read), it is parked as failed. /healthz counts follow-ups, ``badge-bridge events
  failed`` lists the parked ones (with negative ids) and ``events retry`` queues them again.
- Due rows are read by the scheduler's ``webhook-follow-ups`` job, every minute under its lease.
- A read under way holds its row by pushing its due time past the longest a read may take
  (:func:`claim_seconds`): a process that stops mid-read, or a database that fails before the outcome is
  written, leaves the row due again afterwards, with no attempt charged.

The nightly sync reads the same grades under the same event keys, so a read done twice stores nothing
twice; follow-ups make the grade timely, and a failure visible instead of only logged.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, update

from bridge import metrics
from bridge.clock import utcnow
from bridge.db.engine import Database, outage_cause
from bridge.db.models_webhooks import WebhookFollowUp
from bridge.services.ingest import Inbox
from bridge.services.sync import Connectors
from bridge.settings import Settings
from connectors import WebhookRejected

if TYPE_CHECKING:
    from bridge.scheduler import Scheduler

log = logging.getLogger(__name__)

FOLLOW_UP_JOB = "webhook-follow-ups"
FOLLOW_UP_CRON = "* * * * *"
# A job run claims no new follow-up after this long, so that one run does not overlap the next minute's.
JOB_BUDGET_SECONDS = 50.0
# A webhook's shared secret, where the LMS puts one in the body (Moodle's local_webhooks: "token"), is
# checked at the door and never stored.
_SECRETS = ("token",)
# Errors that say the payload itself cannot be read: retrying cannot help, so the follow-up is parked.
_PERMANENT = (WebhookRejected, KeyError, TypeError, ValueError)


def claim_seconds(settings: Settings) -> float:
    """The longest a read may take: every HTTP attempt timing out after its longest backoff, plus a minute."""
    sync = settings.sync
    return sync.attempts * (sync.timeout_seconds + sync.backoff_max_seconds) + 60.0


@dataclass(frozen=True, slots=True)
class FollowUp:
    id: int
    platform: str
    payload: dict[str, Any]
    attempts: int  # charged so far


def record(
    database: Database, platform: str, webhook_type: str, payload: Mapping[str, Any], claimed_for: float
) -> FollowUp:
    """Store a follow-up, claimed for ``claimed_for`` seconds by the caller, who reads it at once."""
    kept = {key: value for key, value in payload.items() if key not in _SECRETS}
    now = utcnow()
    row = WebhookFollowUp(
        platform=platform,
        webhook_type=webhook_type[:255],
        payload=json.dumps(kept, ensure_ascii=True),
        status="pending",
        attempts=0,
        next_attempt_at=now + timedelta(seconds=claimed_for),
        received_at=now,
    )
    with database.write() as session:
        session.add(row)
        session.flush()
        return FollowUp(row.id, platform, kept, 0)


def read_follow_up(
    database: Database, inbox: Inbox, connectors: Connectors, settings: Settings, follow_up: FollowUp
) -> int:
    """Read one claimed follow-up and store its events; returns how many were new. Never raises."""
    connector = connectors.get(follow_up.platform)
    try:
        if connector is None:
            raise LookupError(f"platform {follow_up.platform!r} is no longer configured")
        events = connector.fetch_for_webhook(follow_up.payload)
        stored = inbox.store(events) if events else []
    except Exception as error:
        if outage_cause(error) is not None:
            # Our database, not the read, failed: the row stays claimed and comes due again.
            log.warning("webhook.follow_up_deferred", extra={"id": follow_up.id, "error": _describe(error)})
            return 0
        permanent = connector is None or isinstance(error, _PERMANENT)
        _charge(database, settings, follow_up, error, permanent=permanent)
        return 0
    for result in stored:
        metrics.EVENTS_RECEIVED.labels(
            follow_up.platform, "accepted" if result.created else "duplicate"
        ).inc()
    try:
        with database.write() as session:
            session.execute(delete(WebhookFollowUp).where(WebhookFollowUp.id == follow_up.id))
    except Exception as error:  # stored already; read again once due, the events are duplicates
        log.warning("webhook.follow_up_not_closed", extra={"id": follow_up.id, "error": _describe(error)})
    return sum(result.created for result in stored)


def _charge(
    database: Database, settings: Settings, follow_up: FollowUp, error: Exception, *, permanent: bool
) -> None:
    from bridge.worker import retry_delay  # the events' backoff (imported late: the worker is heavy)

    attempts = follow_up.attempts + 1
    parked = permanent or attempts >= settings.worker.max_attempts
    message = _describe(error)[:2000]
    log.warning(
        "webhook.follow_up_failed",
        extra={
            "id": follow_up.id,
            "platform": follow_up.platform,
            "attempts": attempts,
            "parked": parked,
            "error": message,
        },
    )
    due = utcnow() + timedelta(seconds=0 if parked else retry_delay(attempts, settings.worker))
    try:
        with database.write() as session:
            session.execute(
                update(WebhookFollowUp)
                .where(WebhookFollowUp.id == follow_up.id)
                .values(
                    status="failed" if parked else "pending",
                    attempts=attempts,
                    last_error=message,
                    next_attempt_at=due,
                )
            )
    except Exception as failure:  # the row stays claimed, due again later, this attempt not charged
        log.warning("webhook.follow_up_not_charged", extra={"id": follow_up.id, "error": _describe(failure)})


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}".splitlines()[0]


def claim_due(
    database: Database, settings: Settings, limit: int = 100, *, due_by: datetime | None = None
) -> list[FollowUp]:
    """Claim up to ``limit`` follow-ups due by ``due_by`` (now by default), oldest first (a conditional
    update each: one claimer wins)."""
    now = utcnow()
    due_by = now if due_by is None else min(due_by, now)
    with database.read() as session:
        rows = session.execute(
            select(
                WebhookFollowUp.id,
                WebhookFollowUp.platform,
                WebhookFollowUp.payload,
                WebhookFollowUp.attempts,
            )
            .where(WebhookFollowUp.status == "pending", WebhookFollowUp.next_attempt_at <= due_by)
            .order_by(WebhookFollowUp.id)
            .limit(limit)
        ).all()
    claimed: list[FollowUp] = []
    until = now + timedelta(seconds=claim_seconds(settings))
    for id_, platform, payload, attempts in rows:
        with database.write() as session:
            taken = session.execute(
                update(WebhookFollowUp)
                .where(
                    WebhookFollowUp.id == id_,
                    WebhookFollowUp.status == "pending",
                    WebhookFollowUp.next_attempt_at <= due_by,  # still due: nobody claimed it meanwhile
                )
                .values(next_attempt_at=until)
            ).rowcount
        if taken == 1:
            claimed.append(FollowUp(id_, platform, _payload(payload), attempts))
    return claimed


def _payload(text: str) -> dict[str, Any]:
    value = json.loads(text)
    return value if isinstance(value, dict) else {}


def retry_due(
    database: Database,
    inbox: Inbox,
    connectors: Connectors,
    settings: Settings,
    budget_seconds: float = JOB_BUDGET_SECONDS,
) -> int:
    """Read the follow-ups that are due, one at a time, until none is left or the budget is spent.

    Returns how many were read (successfully or not). Each is read at most once a pass: one that fails
    again is due again after its backoff, and a short backoff must not make one pass read it twice.
    """
    started, pass_began = time.monotonic(), utcnow()
    read = 0
    while time.monotonic() - started < budget_seconds:
        batch = claim_due(database, settings, limit=1, due_by=pass_began)
        if not batch:
            break
        read_follow_up(database, inbox, connectors, settings, batch[0])
        read += 1
    return read


def schedule_follow_ups(scheduler: Scheduler, database: Database, settings: Settings) -> None:
    """Add the job ``webhook-follow-ups``: due follow-ups read every minute, on one node at a time."""
    inbox, connectors = Inbox(database), Connectors(settings)
    scheduler.add_job(
        FOLLOW_UP_JOB,
        FOLLOW_UP_CRON,
        lambda: retry_due(database, inbox, connectors, settings),
        JOB_BUDGET_SECONDS + claim_seconds(settings),
    )


class WebhookFetches:
    """The web process's side: record each follow-up, then read it at once on a small thread pool."""

    def __init__(
        self,
        connectors: Connectors,
        inbox: Inbox,
        workers: int = 2,
        *,
        database: Database | None = None,
        settings: Settings | None = None,
    ) -> None:
        self._connectors = connectors
        self._inbox = inbox
        # Until the composition root passes them, the inbox's database and the connectors' settings.
        self._database: Database = database or inbox._database
        self._settings: Settings = settings or connectors._settings
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="webhook-fetch")
        self._pending: list[Future[int]] = []

    def submit(self, platform_id: str, payload: Mapping[str, Any]) -> Future[int]:
        """Record the follow-up (before the webhook is answered), then read it off the request."""
        connector = self._connectors.get(platform_id)
        if connector is None:
            done: Future[int] = Future()
            done.set_result(0)
            return done
        claim = claim_seconds(self._settings)
        follow_up = record(self._database, platform_id, connector.webhook_type(payload), payload, claim)
        try:
            future = self._pool.submit(self._read, follow_up)
        except RuntimeError:  # shutting down: the row is due once its claim ends
            done = Future()
            done.set_result(0)
            return done
        self._pending = [f for f in self._pending if not f.done()] + [future]
        return future

    def _read(self, follow_up: FollowUp) -> int:
        return read_follow_up(self._database, self._inbox, self._connectors, self._settings, follow_up)

    def wait(self, timeout: float = 30.0) -> None:
        """Until every read submitted so far has finished (tests, and a clean shutdown)."""
        for future in list(self._pending):
            future.exception(timeout=timeout)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
