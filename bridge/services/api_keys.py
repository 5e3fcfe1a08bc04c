"""REST API keys: random tokens shown once, kept only as their SHA-256.

A key has a scope (``read``, ``write`` or ``admin``, each allowing what the ones before it allow), may be
bound to one platform (it then sees and changes only that platform's learners, events and awards) and
may expire. Its last use is recorded at most once a minute, so that busy keys cost no write per request.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from bridge.clock import utcnow
from bridge.db.engine import Database
from bridge.db.models import API_KEY_SCOPES, ApiKey

_PREFIX = "bb_"
LAST_USE_EVERY = timedelta(minutes=1)
log = logging.getLogger(__name__)


class ApiKeyExists(ValueError):
    pass


@dataclass(frozen=True)
class ApiKeyInfo:
    name: str
    scope: str
    platform: str | None
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class ApiCaller:
    """Who is calling: a valid key's id, name (the actor in the audit log), scope and platform."""

    id: int
    name: str
    scope: str
    platform: str | None

    def allows(self, scope: str) -> bool:
        return API_KEY_SCOPES.index(self.scope) >= API_KEY_SCOPES.index(scope)


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(
    database: Database,
    name: str,
    *,
    scope: str = "admin",
    platform: str | None = None,
    expires_at: datetime | None = None,
) -> str:
    """A new key, returned once. ``badge-bridge api-keys create`` always names the scope; code that
    does not (the demo, tests) gets what every key could do before scopes existed."""
    if scope not in API_KEY_SCOPES:
        raise ValueError(f"scope: expected one of {', '.join(API_KEY_SCOPES)}, got {scope!r}")
    key = _PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(
        name=name,
        key_hash=_digest(key),
        created_at=utcnow(),
        scope=scope,
        platform=platform,
        expires_at=expires_at,
    )
    try:
        with database.write() as session:
            session.add(row)
    except IntegrityError:
        raise ApiKeyExists(f"an API key named {name!r} exists already") from None
    return key


def list_keys(database: Database) -> list[ApiKeyInfo]:
    with database.read() as session:
        return [
            ApiKeyInfo(k.name, k.scope, k.platform, k.created_at, k.expires_at, k.last_used_at, k.revoked_at)
            for k in session.scalars(select(ApiKey).order_by(ApiKey.name))
        ]


def revoke_key(database: Database, name: str) -> bool:
    with database.write() as session:
        return (
            session.execute(
                update(ApiKey)
                .where(ApiKey.name == name, ApiKey.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            ).rowcount
            == 1
        )


@dataclass(frozen=True)
class Verdict:
    """A presented key: the caller, or why it is refused (``unknown`` or ``expired``)."""

    caller: ApiCaller | None
    refusal: str | None = None


class ApiKeyVerifier:
    """Checks bearer keys; a valid key is remembered for ``cache_seconds`` to keep the hot path lean.

    So a revoked key may still work for up to ``cache_seconds`` in a process that saw it recently (never
    past its expiry). The last use is written at most once per ``LAST_USE_EVERY`` per key and process,
    and only where the stored one is older, so several processes add little more.
    """

    def __init__(
        self, database: Database, cache_seconds: float = 10.0, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self._database = database
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._valid_until: dict[str, tuple[float, ApiCaller]] = {}
        self._last_use_written: dict[int, datetime] = {}
        self._lock = threading.Lock()

    def verify(self, key: str) -> Verdict:
        digest = _digest(key)
        until, caller = self._valid_until.get(digest, (0.0, None))
        if caller is None or until <= time.monotonic():
            verdict = self._look_up(digest)
            if verdict.caller is None:
                self._valid_until.pop(digest, None)
                return verdict
            caller = verdict.caller
        self._record_use(caller)
        return Verdict(caller)

    def _look_up(self, digest: str) -> Verdict:
        with self._database.read() as session:
            found = session.scalar(
                select(ApiKey).where(ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None))
            )
            if found is None:
                return Verdict(None, "unknown")
            now = self._clock()
            if found.expires_at is not None and found.expires_at <= now:
                return Verdict(None, "expired")
            caller = ApiCaller(found.id, found.name, found.scope, found.platform)
            seconds = self._cache_seconds
            if found.expires_at is not None:
                seconds = min(seconds, (found.expires_at - now).total_seconds())
        self._valid_until[digest] = (time.monotonic() + seconds, caller)
        return Verdict(caller)

    def _record_use(self, caller: ApiCaller) -> None:
        used = self._clock()
        with self._lock:
            written = self._last_use_written.get(caller.id)
            if written is not None and used - written < LAST_USE_EVERY:
                return
            self._last_use_written[caller.id] = used
        try:
            with self._database.write() as session:
                session.execute(
                    update(ApiKey)
                    .where(
                        ApiKey.id == caller.id,
                        or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at <= used - LAST_USE_EVERY),
                    )
                    .values(last_used_at=used)
                )
        except SQLAlchemyError as error:
            # A busy or unreachable database must not refuse a request over a bookkeeping write.
            log.warning(
                "api_key.last_use_not_recorded", extra={"key": caller.name, "error": type(error).__name__}
            )
