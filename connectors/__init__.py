"""LMS connectors: one module per LMS behind one small interface, chosen by the platform's kind.

A connector knows its LMS's formats and quirks and nothing of Flask or the database: it verifies and
parses webhooks into :class:`LearningEvent`s, polls a course from a cursor (the caller persists the
cursor after storing each page's events), and lists a course's roster. Shared HTTP behaviour lives in
:mod:`connectors.http`.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

from bridge.domain.events import LearningEvent
from connectors.http import HttpPolicy, ItemSkipped, LmsError, PlatformStopped, Retryable

__all__ = [
    "EARLIEST",
    "LATEST",
    "BadSignature",
    "Connector",
    "ConnectorConfig",
    "HttpPolicy",
    "ItemSkipped",
    "LmsError",
    "Malformed",
    "Member",
    "PlatformStopped",
    "PollOptions",
    "PollPage",
    "Retryable",
    "WebhookRejected",
    "connector_for",
]


class WebhookRejected(Exception):
    status = 400
    code = "malformed_webhook"


class BadSignature(WebhookRejected):
    status = 401
    code = "bad_signature"


class Malformed(WebhookRejected):
    status = 400
    code = "malformed_webhook"


@dataclass(frozen=True, slots=True)
class ConnectorConfig:
    platform: str
    kind: str
    base_url: str | None = None
    token: str | None = None
    webhook_secret: str | None = None
    # Canvas: "jwt" (signed Live Events) or "unsigned"; Moodle: "token" (in the body) or "hmac" (headers).
    webhook_auth: str = "jwt"
    jwks_url: str | None = None
    jwt_issuer: str | None = None
    replay_window_seconds: float = 300.0
    jwks_refetch_seconds: float = 60.0
    submissions_overlap: timedelta = timedelta(hours=1)
    policy: HttpPolicy = field(default_factory=HttpPolicy)


@dataclass(frozen=True, slots=True)
class PollOptions:
    full: bool = False  # ignore cursors and snapshots: read everything again
    items: bool = False  # module and activity completion is needed (costs one call per learner on Canvas)


@dataclass(frozen=True, slots=True)
class PollPage:
    """Events read from one stream, and that stream's cursor once they are stored."""

    stream: str
    events: list[LearningEvent]
    cursor: dict[str, Any]
    problems: list[str] = field(default_factory=list)  # items skipped, each with its reason


@dataclass(frozen=True, slots=True)
class Member:
    learner: str
    name: str | None = None
    email: str | None = None
    role: str = "student"


class Connector(ABC):
    kind: str

    def __init__(self, config: ConnectorConfig) -> None:
        self.config = config

    @abstractmethod
    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
        """The verified payload; :class:`BadSignature` or :class:`Malformed` otherwise."""

    @abstractmethod
    def webhook_type(self, payload: Mapping[str, Any]) -> str:
        """The LMS's name for the event (for counting)."""

    @abstractmethod
    def parse_webhook(self, payload: Mapping[str, Any]) -> list[LearningEvent]:
        """The learning events a verified payload states; [] for event types the bridge ignores."""

    def needs_fetch(self, payload: Mapping[str, Any]) -> bool:
        """Whether the payload implies events only the LMS can complete (see :meth:`fetch_for_webhook`)."""
        return False

    def fetch_for_webhook(self, payload: Mapping[str, Any]) -> list[LearningEvent]:
        """Events a webhook implies but does not carry, read from the LMS (call it off the request)."""
        return []

    @abstractmethod
    def poll(
        self, course: str, cursors: Mapping[str, dict[str, Any]], options: PollOptions
    ) -> Iterator[PollPage]:
        """Pages of events for ``course``, resuming each stream from ``cursors[stream]``."""

    @abstractmethod
    def roster(self, course: str) -> list[Member]:
        """The course's learners."""

    @abstractmethod
    def courses(self) -> list[str]:
        """The courses this platform's token can sync, when none are configured."""

    @property
    @abstractmethod
    def calls(self) -> int:
        """HTTP requests sent so far (retries included)."""

    def close(self) -> None:
        return None


def connector_for(config: ConnectorConfig) -> Connector:
    """The connector for the platform's kind."""
    if config.kind == "canvas":
        from connectors.canvas import CanvasConnector

        return CanvasConnector(config)
    if config.kind == "moodle":
        from connectors.moodle import MoodleConnector

        return MoodleConnector(config)
    raise ValueError(f"no connector for platform kind {config.kind!r}")


# The times an LMS may state, in UTC after converting any offset: from 1970-01-01 (Unix time 0; both LMSs
# keep Unix seconds, and Moodle's 0 means "never") to the end of 9998. A year of room is kept below
# datetime's limit (9999-12-31) so that adding a window or a week to a time, or converting it to another
# offset, cannot overflow. A time outside it is refused (the webhook is malformed), never stored.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 1, 1, tzinfo=UTC)  # the first moment refused
_RANGE = "1970-01-01 to 9998-12-31 (UTC)"
_LATEST_SECONDS = LATEST.timestamp()


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 string (``Z`` or an offset) or Unix seconds, as an aware UTC datetime.

    None for no time (None, "", 0 or below, text that is not a time); a ValueError naming the value for a
    time outside :data:`EARLIEST` .. :data:`LATEST`.
    """
    if value is None or value == "":
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not value > 0:  # Moodle's 0 is "never" (NaN is no time either)
            return None
        if value >= _LATEST_SECONDS:  # compared exactly, so a huge int or infinity cannot overflow
            raise ValueError(f"time {value!r:.40} is outside {_RANGE}")
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str) and value.isascii() and value.isdigit():  # ids and times may come as strings
        if len(value) > len(str(int(_LATEST_SECONDS))):  # before int(), which refuses 4,300 digits
            raise ValueError(f"time {value!r:.40} is outside {_RANGE}")
        return parse_time(int(value))
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        # Compared before converting: aware datetimes compare as instants, and converting
        # 9999-12-31T23:59:59-01:00 to UTC overflows.
        if not EARLIEST <= parsed < LATEST:
            raise ValueError(f"time {value!r:.40} is outside {_RANGE}")
        return parsed.astimezone(UTC)
    return None


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"the number {text[:40]} is too large")
    return value


_DECODER = json.JSONDecoder(parse_float=_finite, parse_constant=_no_constant)


def read_json(body: bytes | str) -> Any:
    """A webhook body as JSON (RFC 8259: no NaN or Infinity, no number too large for a float); ``Malformed``
    naming the problem otherwise, nesting too deep for the parser included."""
    try:
        text = body if isinstance(body, str) else body.decode(json.detect_encoding(body), "surrogatepass")
        return _DECODER.decode(text)
    except ValueError as error:  # UnicodeDecodeError included
        raise Malformed(f"the body is not JSON: {error}") from None
    except RecursionError:
        raise Malformed("the body is nested too deeply to be read") from None


def fraction(points: Any, possible: Any) -> float | None:
    """``points / possible`` clamped to 0..1 (extra credit exceeds 1); None when either is unknown."""
    try:
        got, out_of = float(points), float(possible)
    except (TypeError, ValueError):
        return None
    if out_of <= 0:
        return None
    return min(1.0, max(0.0, got / out_of))


def number_key(value: Any) -> str:
    """A score as it appears in an event key: ``5``, ``5.0`` and ``"5"`` are the same fact."""
    return repr(float(value))
