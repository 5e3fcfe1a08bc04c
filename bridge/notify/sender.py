"""Delivering the outbox after the commit: claim due rows with a lease, deliver each, record the outcome.

A row is claimed by setting its lease (``leased_until``) in a short transaction, delivered outside any
transaction (a slow SMTP server must not hold the database), then marked sent, due again after a backoff,
or parked after ``max_attempts`` (or at once for a permanent refusal). A sender that dies mid-delivery
leaves a lease that expires, and the row is delivered again: at least once, as the receivers' idempotency
keys (the webhook id, the xAPI statement id) expect. Every attempt is counted in ``/metrics``.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from prometheus_client import Counter
from sqlalchemy import or_, select

from bridge.clock import utcnow
from bridge.db.engine import Database
from bridge.db.models_notify import OutboxNotification
from bridge.notify.messages import Channel, DeliveryError, Notification
from bridge.settings import Settings

log = logging.getLogger(__name__)
NOTIFICATIONS = Counter(
    "bridge_notifications", "Notification delivery attempts, by channel and outcome", ["channel", "outcome"]
)

# Builds the notification a row stands for (its payload from the award, badge and learner as they are
# now); None when there is nobody to send it to (a learner with no email), and the row is skipped.
Renderer = Callable[[OutboxNotification], Notification | None]


class Sender:
    def __init__(
        self, database: Database, settings: Settings, channels: Mapping[str, Channel], render: Renderer
    ) -> None:
        self._database = database
        self._settings = settings.notifications
        self._channels = channels
        self._render = render
        self._skip_locked = not database.is_sqlite

    def run_once(self) -> int:
        """Claim and deliver one batch of due notifications; returns how many were claimed."""
        claimed = self._claim()
        for row in claimed:
            self._deliver(row)
        return len(claimed)

    def run(self, stop: threading.Event, *, drain: bool = False) -> None:
        log.info("notifications.sender_started")
        while not stop.is_set():
            try:
                claimed = self.run_once()
            except Exception:  # the database, most likely: try again, as the worker does
                log.exception("notifications.sender_error")
                stop.wait(5.0)
                continue
            if claimed == 0:
                if drain:
                    break
                stop.wait(self._settings.idle_sleep_seconds)

    def _claim(self) -> list[OutboxNotification]:
        now, lease = utcnow(), timedelta(seconds=self._settings.lease_seconds)
        query = (
            select(OutboxNotification)
            .where(
                OutboxNotification.status == "pending",
                OutboxNotification.next_attempt_at <= now,
                or_(OutboxNotification.leased_until.is_(None), OutboxNotification.leased_until < now),
            )
            .order_by(OutboxNotification.id)
            .limit(self._settings.batch_size)
        )
        if self._skip_locked:  # several senders on PostgreSQL take disjoint rows
            query = query.with_for_update(skip_locked=True)
        with self._database.write() as session:
            rows = list(session.scalars(query))
            for row in rows:
                row.leased_until = now + lease
            return rows

    def _deliver(self, row: OutboxNotification) -> None:
        channel = self._channels.get(row.channel)
        try:
            if channel is None:
                raise DeliveryError(f"the {row.channel} channel is not configured", permanent=True)
            notification = self._render(row)
            if notification is None:
                self._finish(
                    row, "skipped", "nobody to send it to (no address, or the learner wants no emails)"
                )
                return
            channel.deliver(notification)
        except DeliveryError as error:
            self._failed(row, error)
        except Exception as error:  # a bug in a channel: retried, and its traceback logged
            log.exception("notifications.channel_error", extra={"notification": row.id})
            self._failed(row, DeliveryError(f"{type(error).__name__}: {error}"[:500]))
        else:
            self._finish(row, "sent", None)

    def _failed(self, row: OutboxNotification, error: DeliveryError) -> None:
        attempts = row.attempts + 1
        if error.permanent or attempts >= self._settings.max_attempts:
            self._finish(row, "failed", str(error))
            return
        ceiling = min(
            self._settings.backoff_max_seconds, self._settings.backoff_base_seconds * 2 ** (attempts - 1)
        )
        delay = max(error.retry_after or 0.0, ceiling * random.uniform(0.5, 1.0))
        self._update(
            row.id,
            attempts=attempts,
            next_attempt_at=utcnow() + timedelta(seconds=delay),
            leased_until=None,
            last_error=str(error)[:2000],
        )
        NOTIFICATIONS.labels(row.channel, "retry").inc()
        log.warning(
            "notification.retry", extra={"notification": row.id, "attempts": attempts, "error": str(error)}
        )

    def _finish(self, row: OutboxNotification, status: str, error: str | None) -> None:
        now = utcnow()
        values: dict[str, Any] = {"status": status, "attempts": row.attempts + 1, "leased_until": None}
        values |= {"sent_at": now} if status == "sent" else {"last_error": (error or "")[:2000]}
        self._update(row.id, **values)
        NOTIFICATIONS.labels(row.channel, status).inc()
        if status != "sent":
            log.warning(f"notification.{status}", extra={"notification": row.id, "error": error})

    def _update(self, notification_id: int, **values: Any) -> None:
        with self._database.write() as session:
            row = session.get(OutboxNotification, notification_id)
            if row is not None:
                for name, value in values.items():
                    setattr(row, name, value)
