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

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bridge.clock import utcnow
from bridge.db.driver import Driver
from bridge.db.engine import Database

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


class LaunchStore:
    def __init__(self, database: Database) -> None:
        self._database = database
        self.driver = driver = Driver(database.engine.dialect.name)
        m = driver.mark
        self._registration = (
            f"SELECT {_REGISTRATION} FROM lti_registrations r WHERE r.issuer = {m} AND r.client_id = {m}"
        )
        self._registrations_of = (
            f"SELECT {_REGISTRATION} FROM lti_registrations r WHERE r.issuer = {m} LIMIT 2"
        )
        self._with_deployment = (
            f"SELECT {_REGISTRATION}, d.status FROM lti_registrations r LEFT JOIN lti_deployments d "
            f"ON d.registration_id = r.id AND d.deployment_id = {m} "
            f"WHERE r.issuer = {m} AND r.client_id = {m}"
        )
        self._add_pending = (
            "INSERT INTO lti_deployments (registration_id, deployment_id, status, created_at) "
            f"VALUES ({m}, {m}, 'pending', {m})"
        )
        self._purge_states = f"DELETE FROM lti_login_states WHERE expires_at < {m}"
        self._add_state = (
            "INSERT INTO lti_login_states (state_hash, nonce, registration_id, expires_at) "
            f"VALUES ({driver.marks(4)})"
        )
        self._state = (
            f"SELECT nonce, registration_id, expires_at FROM lti_login_states WHERE state_hash = {m}"
        )
        self._delete_state = f"DELETE FROM lti_login_states WHERE state_hash = {m} RETURNING state_hash"

    def registration(self, issuer: str, client_id: str) -> RegistrationRow | None:
        """By issuer and client id together: Canvas gives every hosted tenant the same issuer."""
        with self._database.read() as session:
            rows = self.driver.fetch_all(session, self._registration, (issuer, client_id))
        return RegistrationRow(*rows[0]) if rows else None

    def registrations_of(self, issuer: str) -> list[RegistrationRow]:
        with self._database.read() as session:
            return [
                RegistrationRow(*row)
                for row in self.driver.fetch_all(session, self._registrations_of, (issuer,))
            ]

    def registration_with_deployment(
        self, issuer: str, client_id: str, deployment_id: str
    ) -> tuple[RegistrationRow, str | None] | None:
        """The registration and the status of one of its deployments (None: never seen), in one read."""
        with self._database.read() as session:
            rows = self.driver.fetch_all(session, self._with_deployment, (deployment_id, issuer, client_id))
        return (RegistrationRow(*rows[0][:-1]), rows[0][-1]) if rows else None

    def add_pending_deployment(self, registration_id: int, deployment_id: str) -> None:
        """Record a deployment first seen in a launch, for an administrator to approve."""
        try:
            with self._database.write() as session:
                row = (registration_id, deployment_id, self.driver.time(utcnow()))
                self.driver.execute_many(session, self._add_pending, [row])
        except IntegrityError:  # another launch recorded it at the same moment
            pass

    def issue_state(self, state_hash: str, nonce: str, registration_id: int, expires_at: datetime) -> None:
        driver = self.driver
        with self._database.write() as session:
            driver.execute_many(session, self._purge_states, [(driver.time(utcnow()),)])
            driver.execute_many(
                session, self._add_state, [(state_hash, nonce, registration_id, driver.time(expires_at))]
            )

    def state(self, state_hash: str) -> IssuedState | None:
        with self._database.read() as session:
            rows = self.driver.fetch_all(session, self._state, (state_hash,))
        if not rows:
            return None
        nonce, registration_id, expires_at = rows[0]
        return IssuedState(nonce, registration_id, self.driver.read_time(expires_at))  # type: ignore[arg-type]

    def discard_state(self, state_hash: str) -> None:
        with self._database.write() as session:
            self.driver.fetch_all(session, self._delete_state, (state_hash,))

    def record(self, state_hash: str, write: Callable[[Session, Driver], Any]) -> Any:
        """Delete the state and run ``write`` in one transaction; :class:`StateUsed` if it was gone."""
        with self._database.write() as session:
            if not self.driver.fetch_all(session, self._delete_state, (state_hash,)):
                raise StateUsed(state_hash)
            return write(session, self.driver)
