"""Leases: a row per scheduled job, so that one node at a time runs it."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, or_, update

from bridge.clock import utcnow
from bridge.db.engine import Database
from bridge.db.models import Lease
from bridge.db.upsert import insert_ignoring_conflicts


def acquire(database: Database, name: str, holder: str, ttl_seconds: float) -> bool:
    """Take (or extend) the lease ``name`` for ``ttl_seconds``; False while someone else holds it."""
    now = utcnow()
    expires = now + timedelta(seconds=ttl_seconds)
    with database.write() as session:
        session.execute(
            insert_ignoring_conflicts(database.engine.dialect.name, Lease.__table__),
            {"name": name, "holder": holder, "expires_at": now - timedelta(seconds=1)},
        )
        taken = session.execute(
            update(Lease)
            .where(Lease.name == name, or_(Lease.holder == holder, Lease.expires_at < now))
            .values(holder=holder, expires_at=expires)
        ).rowcount
    return taken == 1


def release(database: Database, name: str, holder: str) -> None:
    with database.write() as session:
        session.execute(delete(Lease).where(Lease.name == name, Lease.holder == holder))
