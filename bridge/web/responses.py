"""Response models of the REST API, for its OpenAPI document (``bridge/web/openapi.py``).

The views answer with the services' dataclasses (``asdict``); these models wrap those same dataclasses,
so the document follows them when a field is added. Schemathesis checks every answer against them
(``tests/web/test_openapi.py``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from bridge.lti.grades import GradeSync
from bridge.lti.registry import RegistrationInfo
from bridge.notify.outbox import InAppNotification
from bridge.services.analytics import BadgeReport, TierFunnel
from bridge.services.audit import AuditView
from bridge.services.awards import AwardView, EventStatus
from bridge.services.badge_admin import BadgeView
from bridge.services.effects import AwardMade
from bridge.services.leaderboards import Leaderboard, LeaderboardPreference
from bridge.services.manual_awards import ApprovalView
from bridge.services.progress import BadgeProgressView
from bridge.services.sync import RunRecord

NextCursor = Field(description="Pass back as ?cursor= for the next page; null on the last page")


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")

    code: str = Field(description="A stable, machine-readable name of the problem")
    message: str = Field(description="What went wrong, naming the field or parameter")


class ErrorOut(BaseModel):
    """Every error of the API: ``{"error": {"code", "message"}}``, sometimes with more detail."""

    error: ErrorDetail


class EventStored(BaseModel):
    id: int
    status: Literal["accepted", "duplicate"]


class EventBatchStored(BaseModel):
    results: list[EventStored]
    accepted: int
    duplicates: int


class EventsStoredOut(RootModel[EventStored | EventBatchStored]):
    """One event's result, or a batch's: 202 when anything new was stored, 200 when all were duplicates."""


class EventsOut(BaseModel):
    events: list[EventStatus]
    next_cursor: str | None = NextCursor


class AwardOut(AwardView):
    assertion: str = Field(description="The URL of the award's Open Badges assertion")


class AwardsOut(BaseModel):
    awards: list[AwardOut]
    next_cursor: str | None = NextCursor


class BadgesOut(BaseModel):
    badges: list[BadgeView]


class RevokedOut(BaseModel):
    id: int
    revoked: bool
    reason: str


class ApprovalsOut(BaseModel):
    approvals: list[ApprovalView]
    next_cursor: str | None = NextCursor


class DecisionOut(BaseModel):
    id: int
    status: Literal["approved", "rejected"]
    award_id: int | None


class AuditOut(BaseModel):
    entries: list[AuditView]
    next_cursor: str | None = NextCursor


class ProgressOut(BaseModel):
    learner: str
    platform: str
    badges: list[BadgeProgressView]


class BadgeAnalyticsOut(BaseModel):
    platform: str | None
    course: str | None
    badges: list[BadgeReport]


class WeekOut(BaseModel):
    week_start: str = Field(description="The Monday starting the week (ISO date), in the settings' time zone")
    awards: int


class AwardsPerWeekOut(BaseModel):
    platform: str | None
    course: str | None
    badge: str | None
    timezone: str
    weeks: list[WeekOut]


class TierFunnelsOut(BaseModel):
    platform: str | None
    course: str | None
    badges: list[TierFunnel]


class BadgeProfileOut(BaseModel):
    public: bool
    url: str | None = Field(description="The public profile page, while the profile is public")
    email: str | None


class RunsOut(BaseModel):
    runs: list[RunRecord]
    next_cursor: str | None = NextCursor


class NotificationsOut(BaseModel):
    notifications: list[InAppNotification]
    next_cursor: str | None = NextCursor


class MarkedOut(BaseModel):
    marked: int = Field(description="How many notifications were marked seen")


class RegistrationsOut(BaseModel):
    registrations: list[RegistrationInfo]


__all__ = [
    "AwardMade",
    "BadgeView",
    "EventStatus",
    "GradeSync",
    "Leaderboard",
    "LeaderboardPreference",
    "RegistrationInfo",
]
