"""Operations: health for load balancers, metrics for Prometheus."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify
from sqlalchemy.exc import SQLAlchemyError

from bridge import __version__, metrics
from bridge.services.queue import queue_stats
from bridge.web.context import services
from bridge.web.errors import RETRY_AFTER_SECONDS

ops = Blueprint("ops", __name__)
log = logging.getLogger(__name__)


@ops.get("/")
def index() -> Response:
    return jsonify(
        service="lms-badge-bridge",
        version=__version__,
        links={
            "health": "/healthz",
            "metrics": "/metrics",
            "events": "/api/v1/events",
            "awards": "/api/v1/awards",
        },
    )


@ops.get("/healthz")
def healthz() -> tuple[Response, int]:
    limit = services().settings.health.max_worker_lag_seconds
    try:
        with services().database.read() as session:
            stats = queue_stats(session)
    except SQLAlchemyError as error:
        log.warning("health.database_unreachable", extra={"error": type(error).__name__})
        response = jsonify(status="unhealthy", database="unreachable")
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response, 503
    healthy = stats.lag_seconds <= limit
    body = {
        "status": "ok" if healthy else "unhealthy",
        "database": "ok",
        "queue": {
            "pending": stats.pending,
            "failed": stats.failed,
            "lag_seconds": round(stats.lag_seconds, 3),
            "max_lag_seconds": limit,
        },
        # Reads a webhook implied (a Moodle grade): pending ones are under way or backing off; failed
        # ones are parked until ``badge-bridge events retry`` (they do not make the service unhealthy).
        "webhook_follow_ups": {"pending": stats.follow_ups_pending, "failed": stats.follow_ups_failed},
    }
    return jsonify(body), 200 if healthy else 503


@ops.get("/metrics")
def prometheus_metrics() -> Response:
    return Response(metrics.exposition(services().queue_collector), mimetype=metrics.CONTENT_TYPE)
