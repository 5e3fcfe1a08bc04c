"""Every error is JSON ``{"error": {"code", "message"}}`` with the status that names the problem."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from bridge.db.engine import outage_cause
from bridge.services.errors import ServiceError

log = logging.getLogger(__name__)
# What a client is asked to wait after a 503 for an unavailable database: long enough for a failover or
# a restart to show, short enough that a lock or a full disk freed is noticed soon.
RETRY_AFTER_SECONDS = 5


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details


def error_response(status: int, code: str, message: str, **details: Any) -> tuple[Response, int]:
    return jsonify(error={"code": code, "message": message, **details}), status


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
}


def database_unavailable(cause: str) -> tuple[Response, int]:
    """503 with ``Retry-After``: the request was fine, the database is not available just now."""
    response, status = error_response(503, "database_unavailable", f"database unavailable: {cause}")
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response, status


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(error: ApiError) -> tuple[Response, int]:
        response, status = error_response(error.status, error.code, error.message, **error.details)
        if status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="badge-bridge"'
        return response, status

    @app.errorhandler(ServiceError)
    def _service_error(error: ServiceError) -> tuple[Response, int]:
        return error_response(error.status, error.code, error.message)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> tuple[Response, int]:
        status = error.code or 500
        message = error.description or error.name
        if status == 413:
            limit = app.config.get("MAX_CONTENT_LENGTH")
            message = f"request body is larger than the limit of {limit} bytes"
        return error_response(status, _HTTP_CODES.get(status, "http_error"), message)

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> tuple[Response, int]:
        # The database down, full, locked or unreachable (from any route, through SQLAlchemy or the
        # inbox's own connection) is no fault of the request: 503, to be retried.
        cause = outage_cause(error)
        if cause is not None:
            message = f"{type(error).__name__}: {error}".splitlines()[0][:300]
            log.warning("request.database_unavailable", extra={"cause": cause, "error": message})
            return database_unavailable(cause)
        log.exception("request.unexpected_error")
        return error_response(500, "internal_error", "an unexpected error occurred; it has been logged")
