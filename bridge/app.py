"""The composition root: ``create_app(settings)`` wires settings, database, services and views."""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

from flask import Flask, Response, g, request
from flask.json.provider import DefaultJSONProvider
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.routing import IntegerConverter

from bridge import metrics
from bridge.bootstrap import open_database
from bridge.db.engine import Database
from bridge.issuing.keys import KeyRing
from bridge.issuing.publisher import Publisher
from bridge.lti.tool import LtiTool
from bridge.services.api_keys import ApiKeyVerifier
from bridge.services.badge_admin import BadgeAdmin
from bridge.services.badges import shipped_templates_dir
from bridge.services.ingest import Inbox
from bridge.services.manual_awards import ManualAwards
from bridge.services.queue import QueueStats, queue_stats
from bridge.services.sync import Connectors
from bridge.services.sync_webhooks import WebhookFetches
from bridge.settings import Settings
from bridge.web.api import api
from bridge.web.badges_api import badges_api
from bridge.web.badges_public import badges_public
from bridge.web.context import Services
from bridge.web.errors import ApiError, register_error_handlers
from bridge.web.lti import lti
from bridge.web.lti_api import lti_api
from bridge.web.notifications_api import notifications_api
from bridge.web.ops import ops
from bridge.web.pages_admin import admin_pages
from bridge.web.pages_instructor import instructor_pages
from bridge.web.pages_learner import learner_pages
from bridge.web.proxies import TrustedProxies
from bridge.web.reports import reports
from bridge.web.rules_api import rules_api
from bridge.web.sync_api import sync_api
from bridge.web.webhooks import webhooks

log = logging.getLogger("bridge.http")
_QUIET_PATHS = frozenset({"/healthz", "/metrics"})


class _JSONProvider(DefaultJSONProvider):
    """ISO 8601 datetimes (Flask's default is the HTTP-date format), keys in the order written."""

    sort_keys = False

    @staticmethod
    def default(value: Any) -> Any:
        if isinstance(value, datetime):
            return value.isoformat()
        return DefaultJSONProvider.default(value)


class _BridgeFlask(Flask):
    json_provider_class = _JSONProvider


def create_app(settings: Settings, database: Database | None = None) -> Flask:
    database = database or open_database(settings)

    def read_queue_stats() -> QueueStats | None:
        try:
            with database.read() as session:
                return queue_stats(session)
        except SQLAlchemyError:
            return None  # /healthz reports the database; metrics go on without the queue gauges

    app = _BridgeFlask("bridge")
    app.config["MAX_CONTENT_LENGTH"] = settings.server.max_request_bytes
    inbox = Inbox(database)
    connectors = Connectors(settings)
    app.extensions["bridge"] = Services(
        settings=settings,
        database=database,
        inbox=inbox,
        api_keys=ApiKeyVerifier(database),
        queue_collector=metrics.QueueCollector(read_queue_stats),
        badge_admin=BadgeAdmin(database, settings),
        manual_awards=ManualAwards(database, settings),
        # Keys are made here, on first start, so the first badge served is already signable.
        publisher=Publisher(
            database,
            settings,
            KeyRing.open(settings.data_dir),
            settings.badge_templates_dir or shipped_templates_dir(),
        ),
        connectors=connectors,
        webhook_fetches=WebhookFetches(connectors, inbox, database=database, settings=settings),
        lti=LtiTool(database, settings),
    )
    register_error_handlers(app)
    # Ids in paths are 64-bit in both databases: a larger number is no row of ours (404), not an overflow.
    app.url_map.converters["int"] = _Int64
    app.before_request(_refuse_nul)
    app.register_blueprint(ops)
    app.register_blueprint(api)
    app.register_blueprint(reports)
    app.register_blueprint(rules_api)
    app.register_blueprint(badges_public)
    app.register_blueprint(badges_api)
    app.register_blueprint(webhooks)
    app.register_blueprint(sync_api)
    app.register_blueprint(lti)
    app.register_blueprint(lti_api)
    app.register_blueprint(notifications_api)
    app.register_blueprint(learner_pages)
    app.register_blueprint(instructor_pages)
    app.register_blueprint(admin_pages)
    _observe_requests(app)
    app.wsgi_app = TrustedProxies(app.wsgi_app, settings.server.trusted_proxies)  # type: ignore[method-assign]
    return app


def _observe_requests(app: Flask) -> None:
    app.after_request(_no_sniffing)

    @app.before_request
    def _start_timer() -> None:
        g.request_started = time.perf_counter()

    @app.after_request
    def _record(response: Response) -> Response:
        seconds = time.perf_counter() - g.get("request_started", time.perf_counter())
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        metrics.REQUEST_SECONDS.labels(request.method, endpoint, str(response.status_code)).observe(seconds)
        if request.path not in _QUIET_PATHS:
            log.info(
                "request",
                extra={
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "ms": round(seconds * 1000, 2),
                },
            )
        return response


class _Int64(IntegerConverter):
    def __init__(self, url_map: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", 2**63 - 1)
        super().__init__(url_map, *args, **kwargs)


def _refuse_nul() -> None:
    """No path or query value may hold NUL: PostgreSQL cannot compare text with it (see domain.text)."""
    if "\x00" in request.path or any("\x00" in value for value in request.args.values()):
        raise ApiError(400, "bad_request", "the address holds a NUL character")


def _no_sniffing(response: Response) -> Response:
    """Every answer is to be read as the type it is sent as: a browser must not guess HTML or script into
    an SVG, a JSON document or a text file (X-Content-Type-Options). Cheaper to set on all than to choose."""
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
