"""What a login and a launch read and write, as named statements on the driver's cursor (bridge.db.driver).

A launch is on the path of every page a learner opens from the LMS. Through the ORM it cost four times a
plain pylti1p3 launch (benchmarks/lti_launch.py), nearly all of it SQLAlchemy's per-statement work, so
the launch path runs a few plain statements: the login state is read while the launch is checked, the
registration and the deployment's status come in one read, and a valid launch is recorded in one
transaction that also deletes its state. The state is deleted on every outcome, so it is used once: a
refused launch deletes it in a transaction of its own, and of two replays racing through the checks
only the one whose DELETE finds the row is recorded.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from bridge.clock import utcnow
from bridge.db.driver import Driver
from bridge.db.engine import Database

T = TypeVar("T")
_REGISTRATION = (
    "r.id, r.platform, r.issuer, r.client_id, r.auth_login_url, r.auth_token_url, r.auth_audience, "
    "r.key_set_url, r.status"
)


@dataclass(frozen=True, slots=True)
class RegistrationRow:
    id: int
    platform: str
    issuer: str
    client_id: str
    auth_login_url: str
    auth_token_url: str
    auth_audience: str | None
    key_set_url: str
    status: str


@dataclass(frozen=True, slots=True)
class IssuedState:
    nonce: str
    registration_id: int
    expires_at: datetime


class StateUsed(Exception):
    """The login state was deleted by another launch between the checks and the recording (a replay)."""


class Sql:
    """Statements on one DBAPI cursor, written with the dialect's marks (``driver.mark``)."""

    def __init__(self, cursor: Any, driver: Driver) -> None:
        self._cursor = cursor
        self.driver = driver

    def rows(self, statement: str, parameters: Sequence[Any] = ()) -> list[Any]:
        self._cursor.execute(statement, parameters)
        return list(self._cursor.fetchall())

    def run(self, statement: str, parameters: Sequence[Any] = ()) -> None:
        self._cursor.execute(statement, parameters)


class LaunchStore:
    """The LTI tables' statements on one DBAPI connection per thread (as the inbox does: see
    bridge.services.ingest), made by the engine so it has the engine's set-up, in autocommit mode."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._local = threading.local()
        self._begin = "BEGIN IMMEDIATE" if database.is_sqlite else "BEGIN"
        self.driver = driver = Driver(database.engine.dialect.name)
        m = driver.mark
        self._registration = (
            f"SELECT {_REGISTRATION} FROM lti_registrations r WHERE r.issuer = {m} AND r.client_id = {m}"
        )
        self._registrations_of = (
            f"SELECT {_REGISTRATION} FROM lti_registrations r WHERE r.issuer = {m} LIMIT 2"
        )
        self._add_pending = (
            "INSERT INTO lti_deployments (registration_id, deployment_id, status, created_at) "
            f"VALUES ({m}, {m}, 'pending', {m}) ON CONFLICT DO NOTHING"
        )
        self._deployment_status = (
            f"SELECT status FROM lti_deployments WHERE registration_id = {m} AND deployment_id = {m}"
        )
        self._purge_states = f"DELETE FROM lti_login_states WHERE expires_at < {m}"
        self._add_state = (
            "INSERT INTO lti_login_states (state_hash, nonce, registration_id, expires_at) "
            f"VALUES ({driver.marks(4)})"
        )
        # What a launch needs to know, in one read: its login state, and the registration and deployment
        # its (not yet verified) token names.
        self._launch_facts = (
            f"SELECT s.nonce, s.registration_id, s.expires_at, {_REGISTRATION}, d.status "
            f"FROM lti_login_states s LEFT JOIN lti_registrations r ON r.issuer = {m} AND r.client_id = {m} "
            f"LEFT JOIN lti_deployments d ON d.registration_id = r.id AND d.deployment_id = {m} "
            f"WHERE s.state_hash = {m}"
        )
        self._delete_state = f"DELETE FROM lti_login_states WHERE state_hash = {m} RETURNING state_hash"

    def read(self, statement: str, parameters: Sequence[Any] = ()) -> list[Any]:
        """One statement in its own (autocommitted) transaction."""
        connection = self._connection()
        try:
            cursor = connection.cursor()
            cursor.execute(statement, parameters)
            rows = list(cursor.fetchall())
            cursor.close()
            return rows
        except BaseException:
            self._discard(connection)
            raise

    @contextmanager
    def transaction(self) -> Iterator[Sql]:
        """A write transaction (SQLite's write lock taken at BEGIN), committed when the block ends."""
        connection = self._connection()
        try:
            # psycopg's pipeline mode sends the statements whose results nobody reads without waiting for
            # each (a launch's inserts and its COMMIT go in one round trip); a read still waits for its rows.
            with contextlib.nullcontext() if self._database.is_sqlite else connection.pipeline():
                cursor = connection.cursor()
                cursor.execute(self._begin)
                yield Sql(cursor, self.driver)
                cursor.execute("COMMIT")
            cursor.close()
        except BaseException:
            self._discard(connection)  # closing rolls back what the block began
            raise

    def registration(self, issuer: str, client_id: str) -> RegistrationRow | None:
        """By issuer and client id together: Canvas gives every hosted tenant the same issuer."""
        rows = self.read(self._registration, (issuer, client_id))
        return RegistrationRow(*rows[0]) if rows else None

    def registrations_of(self, issuer: str) -> list[RegistrationRow]:
        return [RegistrationRow(*row) for row in self.read(self._registrations_of, (issuer,))]

    def deployment_status(self, registration_id: int, deployment_id: str) -> str | None:
        """``pending``, ``active`` or ``disabled``; None for a deployment never seen."""
        rows = self.read(self._deployment_status, (registration_id, deployment_id))
        return str(rows[0][0]) if rows else None

    def add_pending_deployment(self, registration_id: int, deployment_id: str) -> None:
        """Record a deployment first seen in a launch, for an administrator to approve."""
        with self.transaction() as sql:
            sql.run(self._add_pending, (registration_id, deployment_id, self.driver.time(utcnow())))

    def issue_state(self, state_hash: str, nonce: str, registration_id: int, expires_at: datetime) -> None:
        time = self.driver.time
        with self.transaction() as sql:
            sql.run(self._purge_states, (time(utcnow()),))
            sql.run(self._add_state, (state_hash, nonce, registration_id, time(expires_at)))

    def launch_facts(
        self, state_hash: str, issuer: str, client_id: str, deployment_id: str
    ) -> tuple[IssuedState, RegistrationRow | None, str | None] | None:
        """The login state (None: unknown or used), the registration of ``issuer`` and ``client_id``
        (None: unknown) and the status of its deployment ``deployment_id`` (None: never seen)."""
        rows = self.read(self._launch_facts, (issuer, client_id, deployment_id, state_hash))
        if not rows:
            return None
        row = rows[0]
        issued = IssuedState(row[0], row[1], self.driver.read_time(row[2]))  # type: ignore[arg-type]
        registration = RegistrationRow(*row[3:-1]) if row[3] is not None else None
        return issued, registration, row[-1]

    def discard_state(self, state_hash: str) -> None:
        self.read(self._delete_state, (state_hash,))

    def record(self, state_hash: str, write: Callable[[Sql], T]) -> T:
        """Delete the state and run ``write`` in one transaction; :class:`StateUsed` if it was gone."""
        with self.transaction() as sql:
            if not sql.rows(self._delete_state, (state_hash,)):
                raise StateUsed(state_hash)
            return write(sql)

    def _connection(self) -> Any:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            pooled = self._database.engine.raw_connection()
            connection = pooled.driver_connection  # the driver's own: the engine's set-up applies to it
            pooled.detach()  # this thread's for good: not counted against the pool
            if not self._database.is_sqlite:  # SQLite's is in autocommit mode already (see db.engine)
                connection.autocommit = True
            self._local.connection = connection
        return connection

    def _discard(self, connection: Any) -> None:
        """After a failure the connection may be mid-transaction or broken: start afresh next time."""
        self._local.connection = None
        with contextlib.suppress(Exception):  # if it is broken already, closing was a courtesy
            connection.close()
