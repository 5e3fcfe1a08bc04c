"""The composition root: ``create_app(settings)`` wires settings, database, services and views."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from flask import Flask, Response, request
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
from bridge.web import access
from bridge.web.api import api
from bridge.web.badges_api import badges_api
from bridge.web.badges_public import badges_public
from bridge.web.context import Services
from bridge.web.errors import ApiError, register_error_handlers
from bridge.web.limits import install_rate_limits
from bridge.web.lti import lti
from bridge.web.lti_api import lti_api
from bridge.web.notifications_api import notifications_api
from bridge.web.openapi import api_docs
from bridge.web.ops import ops
from bridge.web.pages_admin import admin_pages
from bridge.web.pages_instructor import instructor_pages
from bridge.web.pages_learner import learner_pages
from bridge.web.proxies import TrustedProxies
from bridge.web.reports import reports
from bridge.web.rules_api import rules_api
from bridge.web.sync_api import sync_api
from bridge.web.unsubscribe import unsubscribe
from bridge.web.webhooks import webhooks

log = logging.getLogger("bridge.http")
_QUIET_PATHS = frozenset({"/healthz", "/metrics"})
_STARTED = "bridge.request_started"  # environ key: perf_counter() when the app began the request


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

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """Flask's, remembered per function: Flask asks ``inspect.iscoroutinefunction`` of every hook and
        view on every request (~1 µs each, a dozen a request)."""
        synced: dict[Any, Callable[..., Any]] = self.__dict__.setdefault("_bridge_synced", {})
        try:
            return synced[func]
        except KeyError:
            made = synced[func] = super().ensure_sync(func)
            return made
        except TypeError:  # an unhashable callable: not remembered
            return super().ensure_sync(func)


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
    # The API's access rules in one place: who calls, then the rate limits (counted per key), then refusals.
    app.before_request(access.identify)
    install_rate_limits(app, settings.rate_limits)
    app.before_request(access.enforce)
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
    app.register_blueprint(api_docs)
    app.register_blueprint(learner_pages)
    app.register_blueprint(unsubscribe)
    app.register_blueprint(instructor_pages)
    app.register_blueprint(admin_pages)
    access.check_declared(app)
    _observe_requests(app)
    app.wsgi_app = TrustedProxies(app.wsgi_app, settings.server.trusted_proxies)  # type: ignore[method-assign]
    return app


def _observe_requests(app: Flask) -> None:
    """Every answer: ``nosniff``, its time in the request histogram, one JSON log line (``bridge.http``).

    On the hot path of every request, so done in one ``after_request`` hook reading the request once: the
    labelled histogram child is kept per (method, route, status), and the log record is made directly
    (``Logger.info`` would walk the stack for a caller that the JSON line does not print)."""
    histograms: dict[tuple[str, str, int], Any] = {}

    @app.before_request
    def _start_timer() -> None:
        request.environ[_STARTED] = time.perf_counter()

    @app.after_request
    def _record(response: Response) -> Response:
        # Every answer is to be read as the type it is sent as: a browser must not guess HTML or script
        # into an SVG, a JSON document or a text file. Cheaper to set on all than to choose.
        response.headers["X-Content-Type-Options"] = "nosniff"
        current = request._get_current_object()  # type: ignore[attr-defined]  # one proxy lookup, not six
        environ = current.environ
        seconds = time.perf_counter() - environ.get(_STARTED, time.perf_counter())
        method, status = environ["REQUEST_METHOD"], response.status_code
        rule = current.url_rule
        endpoint = rule.rule if rule is not None else "unmatched"
        labels = (method, endpoint, status)
        histogram = histograms.get(labels)
        if histogram is None:
            histogram = histograms[labels] = metrics.REQUEST_SECONDS.labels(method, endpoint, str(status))
        histogram.observe(seconds)
        path = current.path
        if path not in _QUIET_PATHS and log.isEnabledFor(logging.INFO):
            fields = {"method": method, "path": path, "status": status, "ms": round(seconds * 1000, 2)}
            log.handle(log.makeRecord(log.name, logging.INFO, __file__, 0, "request", (), None, extra=fields))
        return response


class _Int64(IntegerConverter):
    def __init__(self, url_map: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", 2**63 - 1)
        super().__init__(url_map, *args, **kwargs)


def _refuse_nul() -> None:
    """No path or query value may hold NUL: PostgreSQL cannot compare text with it (see domain.text)."""
    current = request._get_current_object()  # type: ignore[attr-defined]
    query = current.environ.get("QUERY_STRING", "")
    if "\x00" in current.path or (
        # Only a query holding a NUL or "%00" can give a value holding one: most have neither, and are
        # not parsed here (this runs on every request).
        ("\x00" in query or "%00" in query) and any("\x00" in value for value in current.args.values())
    ):
        raise ApiError(400, "bad_request", "the address holds a NUL character")
