"""LMS connectors: one module per LMS behind one small interface, chosen by the platform's kind.

A connector knows its LMS's formats and quirks and nothing of Flask or the database: it verifies and
parses webhooks into :class:`LearningEvent`s, polls a course from a cursor (the caller persists the
cursor after storing each page's events), and lists a course's roster. Shared HTTP behaviour lives in
:mod:`connectors.http`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bridge.domain.events import LearningEvent
from connectors.http import HttpPolicy, ItemSkipped, LmsError, PlatformStopped, Retryable

__all__ = [
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


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 string (``Z`` or an offset) or Unix seconds, as an aware UTC datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC) if value > 0 else None
    if isinstance(value, str) and value.isdigit():  # Moodle ids and times may arrive as strings
        return parse_time(int(value))
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    return None


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
