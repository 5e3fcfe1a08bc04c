"""Prometheus metrics. Under gunicorn they are shared across processes through
``PROMETHEUS_MULTIPROC_DIR``, which must be set before this module is first imported (``serve`` does)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from bridge.services.queue import QueueStats


class _Counter(Counter):
    """A Counter whose labelled children are found in a dictionary first: prometheus_client checks and
    converts the values on every ``labels()`` call (~4 µs; ingest calls it once per event)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._children: dict[tuple[Any, ...], Any] = {}

    def labels(self, *values: Any, **named: Any) -> Any:
        if named:
            return super().labels(*values, **named)
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = super().labels(*values)
        return child


EVENTS_RECEIVED = _Counter(
    "bridge_events_received", "Learning events received, by platform and outcome", ["platform", "outcome"]
)
EVENTS_PROCESSED = Counter("bridge_events_processed", "Events processed by the worker")
EVENTS_RETRIED = Counter("bridge_events_retried", "Event processing attempts that failed and will retry")
EVENTS_FAILED = Counter("bridge_events_failed", "Events parked as failed after their last attempt")
AWARDS = _Counter("bridge_awards", "Badges awarded", ["badge"])
LTI_LAUNCHES = _Counter(
    "bridge_lti_launches", "LTI launches accepted, by platform and message type", ["platform", "message_type"]
)
# Reasons are a small fixed set (bridge.lti.launch): an attacker cannot grow the label set.
LTI_REFUSALS = _Counter("bridge_lti_refusals", "LTI logins and launches refused, by reason", ["reason"])
BATCH_SECONDS = Histogram("bridge_worker_batch_seconds", "Time to process one claimed batch")
REQUEST_SECONDS = Histogram(
    "bridge_http_request_seconds",
    "HTTP request latency",
    ["method", "endpoint", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)

CONTENT_TYPE = CONTENT_TYPE_LATEST


def record_batch(outcomes: dict[str, int], awarded_badges: Sequence[str], seconds: float) -> None:
    EVENTS_PROCESSED.inc(outcomes["done"])
    EVENTS_RETRIED.inc(outcomes["retry"])
    EVENTS_FAILED.inc(outcomes["failed"])
    for badge in awarded_badges:
        AWARDS.labels(badge=badge).inc()
    BATCH_SECONDS.observe(seconds)


class QueueCollector(Collector):
    """Queue depth and lag, read from the database at scrape time (so every node reports the truth)."""

    def __init__(self, read_stats: Callable[[], QueueStats | None]) -> None:
        self._read_stats = read_stats

    def collect(self) -> Iterator[GaugeMetricFamily]:
        stats = self._read_stats()
        if stats is None:
            return
        yield GaugeMetricFamily("bridge_queue_pending", "Events waiting to be processed", value=stats.pending)
        yield GaugeMetricFamily("bridge_queue_failed", "Events parked as failed", value=stats.failed)
        yield GaugeMetricFamily(
            "bridge_queue_lag_seconds", "Age of the oldest event that is due", value=stats.lag_seconds
        )


def exposition(queue: QueueCollector) -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        process_registry = CollectorRegistry()
        MultiProcessCollector(process_registry)
    else:
        process_registry = REGISTRY
    queue_registry = CollectorRegistry(auto_describe=False)
    queue_registry.register(queue)
    return generate_latest(process_registry) + generate_latest(queue_registry)
