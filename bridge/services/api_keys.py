"""REST API keys: random tokens shown once, kept only as their SHA-256."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from bridge.clock import utcnow
from bridge.db.engine import Database
from bridge.db.models import ApiKey

_PREFIX = "bb_"


class ApiKeyExists(ValueError):
    pass


@dataclass(frozen=True)
class ApiKeyInfo:
    name: str
    created_at: datetime
    revoked_at: datetime | None


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(database: Database, name: str) -> str:
    key = _PREFIX + secrets.token_urlsafe(32)
    try:
        with database.write() as session:
            session.add(ApiKey(name=name, key_hash=_digest(key), created_at=utcnow()))
    except IntegrityError:
        raise ApiKeyExists(f"an API key named {name!r} exists already") from None
    return key


def list_keys(database: Database) -> list[ApiKeyInfo]:
    with database.read() as session:
        return [
            ApiKeyInfo(k.name, k.created_at, k.revoked_at)
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


class ApiKeyVerifier:
    """Checks bearer keys; a valid key is remembered for ``cache_seconds`` to keep the hot path lean.

    So a revoked key may still work for up to ``cache_seconds`` in a process that saw it recently.
    """

    def __init__(self, database: Database, cache_seconds: float = 10.0) -> None:
        self._database = database
        self._cache_seconds = cache_seconds
        self._valid_until: dict[str, tuple[float, str]] = {}

    def is_valid(self, key: str) -> bool:
        return self.holder(key) is not None

    def holder(self, key: str) -> str | None:
        """The name of the valid key ``key``, or None: who is acting, for the audit log."""
        digest = _digest(key)
        until, name = self._valid_until.get(digest, (0.0, ""))
        if until > time.monotonic():
            return name
        with self._database.read() as session:
            found = session.scalar(
                select(ApiKey.name).where(ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None))
            )
        if found is None:
            self._valid_until.pop(digest, None)
            return None
        self._valid_until[digest] = (time.monotonic() + self._cache_seconds, found)
        return found
