"""Tables of the LTI 1.3 tool: who may launch it (registrations, deployments), launches in flight, and
what a launch tells us about people and courses.

A registration is one client id at one issuer (Canvas uses one issuer for all its hosted tenants, so a
registration is never found by issuer alone) and belongs to one bridge platform, so the learners its
launches name are the ones the webhooks and the sync name.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from bridge.db.models import Base, JsonDocument, UTCDateTime

LTI_STATUSES = ("active", "pending", "disabled")


class LtiRegistration(Base):
    __tablename__ = "lti_registrations"
    __table_args__ = (
        UniqueConstraint("issuer", "client_id"),
        CheckConstraint(f"status IN {LTI_STATUSES}", name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    platform: Mapped[str] = mapped_column(String(64))  # the bridge platform (platforms[].id)
    issuer: Mapped[str] = mapped_column(String(255))
    client_id: Mapped[str] = mapped_column(String(255))
    auth_login_url: Mapped[str] = mapped_column(String(1024))  # the platform's OIDC authorization URL
    auth_token_url: Mapped[str] = mapped_column(String(1024))  # OAuth 2 token URL, for LTI Advantage
    auth_audience: Mapped[str | None] = mapped_column(String(1024))
    key_set_url: Mapped[str] = mapped_column(String(1024))  # the platform's JWKS
    status: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(16))  # "manual" (CLI, API) or "dynamic" (registration)
    product: Mapped[str | None] = mapped_column(String(64))  # "moodle", "canvas", as the platform says
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class LtiDeployment(Base):
    """A deployment of the tool in a platform (Canvas makes one per install). One first seen in a
    launch waits, ``pending``, for an administrator."""

    __tablename__ = "lti_deployments"
    __table_args__ = (
        UniqueConstraint("registration_id", "deployment_id"),
        CheckConstraint(f"status IN {LTI_STATUSES}", name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    registration_id: Mapped[int] = mapped_column(ForeignKey("lti_registrations.id"))
    deployment_id: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decided_by: Mapped[str | None] = mapped_column(String(255))


class LtiLoginState(Base):
    """An OIDC login in flight: its state (also in the browser's cookie) and nonce, used once."""

    __tablename__ = "lti_login_states"

    state_hash: Mapped[str] = mapped_column(String(64), primary_key=True)  # SHA-256 of the state
    nonce: Mapped[str] = mapped_column(String(128))
    registration_id: Mapped[int] = mapped_column(ForeignKey("lti_registrations.id"))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class LtiLaunch(Base):
    """A validated launch: what its pages may show and do, until it expires."""

    __tablename__ = "lti_launches"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    registration_id: Mapped[int] = mapped_column(ForeignKey("lti_registrations.id"))
    deployment_id: Mapped[str] = mapped_column(String(255))
    message_type: Mapped[str] = mapped_column(String(64))
    sub: Mapped[str | None] = mapped_column(String(255))
    learner_id: Mapped[int | None] = mapped_column(ForeignKey("learners.id"))
    context_id: Mapped[str | None] = mapped_column(String(255))
    course: Mapped[str | None] = mapped_column(String(255))  # the bridge's course id of the context
    roles: Mapped[list[str]] = mapped_column(JsonDocument)  # "learner", "instructor", "administrator"
    claims: Mapped[dict[str, Any]] = mapped_column(JsonDocument)  # the id_token's claims
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class LtiUser(Base):
    """Who an LTI ``sub`` is at one registration: the learner, and the name and email last launched with."""

    __tablename__ = "lti_users"

    registration_id: Mapped[int] = mapped_column(ForeignKey("lti_registrations.id"), primary_key=True)
    sub: Mapped[str] = mapped_column(String(255), primary_key=True)
    learner_id: Mapped[int] = mapped_column(ForeignKey("learners.id"), index=True)
    name: Mapped[str | None] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(320))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class LtiContext(Base):
    """A course as the platform launched it: its LTI Advantage endpoints, and whether grades go back."""

    __tablename__ = "lti_contexts"
    __table_args__ = (Index("ix_lti_contexts_course", "platform", "course"),)

    registration_id: Mapped[int] = mapped_column(ForeignKey("lti_registrations.id"), primary_key=True)
    context_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    deployment_id: Mapped[str] = mapped_column(String(255))
    platform: Mapped[str] = mapped_column(String(64))
    course: Mapped[str] = mapped_column(String(255))
    title: Mapped[str | None] = mapped_column(String(255))
    memberships_url: Mapped[str | None] = mapped_column(Text)  # NRPS
    lineitems_url: Mapped[str | None] = mapped_column(Text)  # AGS
    ags_scopes: Mapped[list[str]] = mapped_column(JsonDocument)
    grade_sync: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))  # off by default
    line_item_url: Mapped[str | None] = mapped_column(Text)  # the "Badge points" line item, once made
    roster_synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
