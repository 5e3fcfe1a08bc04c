"""Structured logs: one JSON object per line, secrets never written."""

from __future__ import annotations

import functools
import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
_SECRET_WORDS = ("token", "secret", "password", "authorization", "api_key", "private")
_encode = json.JSONEncoder(default=str).encode  # what json.dumps(entry, default=str) writes


class JsonFormatter(logging.Formatter):
    """One JSON object a line. Written for every request (``bridge.app``), so kept lean: one encoder made
    once (``json.dumps`` with ``default=`` builds a new one each call), the secret check cached per key."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        # The fields given with extra=...: whatever the record has beyond a plain LogRecord's.
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = "[redacted]" if _is_secret(key) else value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return _encode(entry)


@functools.cache
def _is_secret(key: str) -> bool:
    return any(word in key.lower() for word in _SECRET_WORDS)


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("apscheduler", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
