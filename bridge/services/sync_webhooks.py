"""What a webhook implies but does not carry (a Moodle grade's range), fetched off the request.

The webhook is answered as soon as its own events are stored; the fetch runs on a small thread pool
afterwards. If it fails (or the process stops first), the nightly sync reads the same grade, under the
same event key, so nothing is lost and nothing is stored twice.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from bridge import metrics
from bridge.services.ingest import Inbox
from bridge.services.sync import Connectors
from connectors import LmsError, WebhookRejected

log = logging.getLogger(__name__)


class WebhookFetches:
    def __init__(self, connectors: Connectors, inbox: Inbox, workers: int = 2) -> None:
        self._connectors = connectors
        self._inbox = inbox
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="webhook-fetch")
        self._pending: list[Future[int]] = []

    def submit(self, platform_id: str, payload: Mapping[str, Any]) -> Future[int]:
        future = self._pool.submit(self._fetch, platform_id, payload)
        self._pending = [f for f in self._pending if not f.done()] + [future]
        return future

    def wait(self, timeout: float = 30.0) -> None:
        """Until every fetch submitted so far has finished (tests, and a clean shutdown)."""
        for future in list(self._pending):
            future.exception(timeout=timeout)

    def _fetch(self, platform_id: str, payload: Mapping[str, Any]) -> int:
        connector = self._connectors.get(platform_id)
        if connector is None:
            return 0
        try:
            events = connector.fetch_for_webhook(payload)
        except (LmsError, WebhookRejected, KeyError, TypeError, ValueError) as error:
            log.warning("webhook.fetch_failed", extra={"platform": platform_id, "error": str(error)})
            return 0
        if not events:
            return 0
        stored = self._inbox.store(events)
        for result in stored:
            metrics.EVENTS_RECEIVED.labels(platform_id, "accepted" if result.created else "duplicate").inc()
        return sum(result.created for result in stored)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
