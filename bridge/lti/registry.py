"""Who may launch the tool: registrations (a client id at an issuer) and their deployments.

Registrations are made by an administrator (CLI, REST API) or by LTI Dynamic Registration, which leaves
them pending until approved. A launch from a deployment not seen before is recorded as pending and
refused until an administrator approves it: Canvas makes a new deployment for every install, and a tool
that accepted any deployment of a known client id would accept installs nobody agreed to.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bridge.clock import utcnow
from bridge.db.engine import Database
from bridge.db.models_lti import LtiDeployment, LtiRegistration
from bridge.lti.dynamic_registration import RegisteredTool
from bridge.services.audit import record_audit
from bridge.services.errors import Conflict, Invalid, NotFound


@dataclass(frozen=True, slots=True)
class RegistrationInfo:
    id: int
    platform: str
    issuer: str
    client_id: str
    auth_login_url: str
    auth_token_url: str
    auth_audience: str | None
    key_set_url: str
    status: str
    source: str
    product: str | None
    created_at: datetime
    deployments: tuple[DeploymentInfo, ...] = ()


@dataclass(frozen=True, slots=True)
class DeploymentInfo:
    id: int
    deployment_id: str
    status: str
    created_at: datetime
    decided_by: str | None


@dataclass(frozen=True, slots=True)
class NewRegistration:
    platform: str
    issuer: str
    client_id: str
    auth_login_url: str
    auth_token_url: str
    key_set_url: str
    auth_audience: str | None = None
    deployment_ids: tuple[str, ...] = ()
    product: str | None = None


def _info(registration: LtiRegistration, deployments: list[LtiDeployment]) -> RegistrationInfo:
    return RegistrationInfo(
        registration.id,
        registration.platform,
        registration.issuer,
        registration.client_id,
        registration.auth_login_url,
        registration.auth_token_url,
        registration.auth_audience,
        registration.key_set_url,
        registration.status,
        registration.source,
        registration.product,
        registration.created_at,
        tuple(
            DeploymentInfo(d.id, d.deployment_id, d.status, d.created_at, d.decided_by)
            for d in sorted(deployments, key=lambda d: d.id)
        ),
    )


def _check_url(name: str, url: str) -> None:
    try:
        parts = urlsplit(url)
    except ValueError:  # what urlsplit cannot read ("https://[x"): as invalid as any other non-URL, not a 500
        raise Invalid(f"{name}: expected an https:// URL, got {url!r}", "invalid_registration") from None
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if not parts.hostname or (parts.scheme != "https" and not (parts.scheme == "http" and loopback)):
        raise Invalid(f"{name}: expected an https:// URL, got {url!r}", "invalid_registration")


def register(
    database: Database,
    new: NewRegistration,
    *,
    actor: str,
    known_platforms: set[str],
    status: str = "active",
    source: str = "manual",
) -> RegistrationInfo:
    """Store a registration (with its deployments, active unless the registration is pending)."""
    if new.platform not in known_platforms:
        raise Invalid(f"platform: {new.platform!r} is not configured", "unknown_platform")
    for name in ("auth_login_url", "auth_token_url", "key_set_url"):
        _check_url(name, getattr(new, name))
    now = utcnow()
    try:
        with database.write() as session:
            registration = LtiRegistration(
                platform=new.platform,
                issuer=new.issuer,
                client_id=new.client_id,
                auth_login_url=new.auth_login_url,
                auth_token_url=new.auth_token_url,
                auth_audience=new.auth_audience,
                key_set_url=new.key_set_url,
                status=status,
                source=source,
                product=new.product,
                created_at=now,
                updated_at=now,
            )
            session.add(registration)
            session.flush()
            deployments = [
                LtiDeployment(
                    registration_id=registration.id,
                    deployment_id=deployment_id,
                    status=status,
                    created_at=now,
                    decided_at=None if status == "pending" else now,
                    decided_by=None if status == "pending" else actor,
                )
                for deployment_id in dict.fromkeys(new.deployment_ids)
            ]
            session.add_all(deployments)
            session.flush()  # their ids, for the answer
            record_audit(
                session,
                actor,
                "lti.register",
                details={"registration": registration.id, "issuer": new.issuer, "client_id": new.client_id},
            )
            return _info(registration, deployments)
    except IntegrityError:
        raise Conflict(
            f"client id {new.client_id!r} of issuer {new.issuer!r} is registered already",
            "registration_exists",
        ) from None


def list_registrations(database: Database) -> list[RegistrationInfo]:
    with database.read() as session:
        deployments: dict[int, list[LtiDeployment]] = {}
        for deployment in session.scalars(select(LtiDeployment)):
            deployments.setdefault(deployment.registration_id, []).append(deployment)
        return [
            _info(r, deployments.get(r.id, []))
            for r in session.scalars(select(LtiRegistration).order_by(LtiRegistration.id))
        ]


def set_status(
    database: Database, registration_id: int, status: str, *, actor: str, deployment_id: str | None = None
) -> RegistrationInfo:
    """Approve (``active``) or disable a registration, or one of its deployments."""
    now = utcnow()
    with database.write() as session:
        registration = session.get(LtiRegistration, registration_id)
        if registration is None:
            raise NotFound(f"no LTI registration {registration_id}", "unknown_registration")
        if deployment_id is None:
            registration.status, registration.updated_at = status, now
            if status == "active":  # approving a registration approves what it came with
                for deployment in _deployments(session, registration_id):
                    if deployment.status == "pending":
                        _decide(deployment, status, actor, now)
        else:
            deployment = next(
                (d for d in _deployments(session, registration_id) if d.deployment_id == deployment_id), None
            )
            if deployment is None:
                raise NotFound(
                    f"registration {registration_id} has no deployment {deployment_id!r}",
                    "unknown_deployment",
                )
            _decide(deployment, status, actor, now)
        action = "lti.approve" if status == "active" else "lti.disable"
        record_audit(
            session, actor, action, details={"registration": registration_id, "deployment": deployment_id}
        )
        return _info(registration, _deployments(session, registration_id))


def _deployments(session: Session, registration_id: int) -> list[LtiDeployment]:
    return list(
        session.scalars(select(LtiDeployment).where(LtiDeployment.registration_id == registration_id))
    )


def _decide(deployment: LtiDeployment, status: str, actor: str, now: datetime) -> None:
    deployment.status, deployment.decided_at, deployment.decided_by = status, now, actor


def store_dynamic_registration(
    database: Database, registered: RegisteredTool, platform: str
) -> RegistrationInfo:
    """A registration made by LTI Dynamic Registration: pending, with its deployment, until approved."""
    new = NewRegistration(
        platform,
        registered.issuer,
        registered.client_id,
        registered.auth_login_url,
        registered.auth_token_url,
        registered.key_set_url,
        registered.auth_audience,
        (registered.deployment_id,) if registered.deployment_id else (),
        registered.product_family_code,
    )
    return register(
        database,
        new,
        actor=f"dynamic registration ({registered.product_family_code})",
        known_platforms={platform},
        status="pending",
        source="dynamic",
    )
