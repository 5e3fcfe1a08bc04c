"""Request models of the REST API; their errors name the field."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, RootModel, StrictFloat
from pydantic.json_schema import SkipJsonSchema

from bridge.domain.text import check_data, name_problem
from connectors import EARLIEST, LATEST


def _acceptable_name(value: str) -> str:
    """Refuses what the inbox cannot store and read back (see bridge.domain.text)."""
    problem = name_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def _acceptable_data(value: dict[str, Any]) -> dict[str, Any]:
    check_data(value, "")
    return value


Text = Annotated[str, Field(min_length=1, max_length=255), AfterValidator(_acceptable_name)]


class EventIn(BaseModel):
    """One learning event as posted to ``POST /api/v1/events`` (the module's ``trackEvent``)."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True, str_strip_whitespace=True)

    platform: Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_acceptable_name)]
    event_key: Text = Field(description="Unique per platform; posting the same key again stores nothing")
    kind: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
    learner: Text = Field(description="The learner's user id on the platform")
    course: Text | None = None
    item: Text | None = None
    score: Annotated[StrictFloat, Field(ge=0, le=1)] | None = Field(
        default=None, description="A fraction between 0 and 1; raw points belong in data"
    )
    # The range an LMS time may take (connectors.parse_time): a time beyond it overflowed in the worker.
    occurred_at: Annotated[AwareDatetime, Field(ge=EARLIEST, lt=LATEST)] | None = Field(
        default=None, description="Defaults to the time received; from 1970-01-01 to the end of 9998 (UTC)"
    )
    data: Annotated[dict[str, Any], AfterValidator(_acceptable_data)] = Field(default_factory=dict)


class EventBatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: Annotated[list[EventIn], Field(min_length=1, max_length=1000)]


class ManualAwardIn(BaseModel):
    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True, str_strip_whitespace=True)

    platform: Annotated[str, Field(min_length=1, max_length=64)]
    learner: Text
    badge: Annotated[str, Field(min_length=1, max_length=64)]
    tier: Annotated[str, Field(max_length=16)] = ""
    reason: Annotated[str, Field(min_length=1, max_length=2000)]


class ReasonIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    reason: Annotated[str, Field(min_length=1, max_length=2000)]


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    reason: Annotated[str, Field(max_length=2000)] | None = None


class EnabledIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool


# The shapes below describe requests for the OpenAPI document (bridge/web/openapi.py); what validates them
# is named beside each one.


class EventsBodyIn(
    RootModel[EventIn | EventBatchIn | Annotated[list[EventIn], Field(min_length=1, max_length=1000)]]
):
    """One event, ``{"events": [...]}`` or a bare list of events: each event is validated as ``EventIn``,
    a batch as ``EventBatchIn`` (``bridge.web.api``)."""


class BadgeDocumentIn(BaseModel):
    """A badge template as JSON (``badge_templates/README.md``). The domain parses it
    (``bridge.domain.templates.parse_template``, shared with the TOML files and the CLI), naming the key
    and the reason of any problem; this model names its keys for the document."""

    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")] | None = Field(
        default=None, description="Required to create; to replace, the id in the path (or the same id)"
    )
    name: Annotated[str, Field(min_length=1)]
    description: Annotated[str, Field(min_length=1)]
    image: str | None = Field(default=None, description="An SVG file among the badge templates")
    narrative: str | None = None
    tags: list[str] | None = None
    points: Annotated[int, Field(ge=0)] | None = None
    prerequisites: list[str] | None = Field(default=None, description="Badges the learner must hold first")
    requires_approval: bool | None = None
    expires_after_days: Annotated[int, Field(ge=1)] | None = None
    expires_on: date | None = None
    tiers: list[dict[str, Any]] | None = Field(
        default=None, description="name, target and points of each tier"
    )
    criteria: dict[str, Any] = Field(description="groups of requirements (badge_templates/README.md)")
    notification_type: list[Literal["in-app", "email", "webhook", "xapi"]] | None = None


# Query strings. bridge.web.paging.keyset and bridge.web.inputs.query_int / query_choice read them, with
# the same limits; tests/web/test_openapi.py checks that the two agree.

Order = Literal["newest", "oldest"]
_CURSOR = "The next_cursor of the previous page"
QueryText = Annotated[str, Field(max_length=255)] | SkipJsonSchema[None]


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def _absent(description: str | None = None) -> Any:
    """An optional query parameter: left out, not null (the document shows no default)."""
    return Field(default=None, description=description, json_schema_extra=_no_default)


class PageQuery(BaseModel):
    limit: Annotated[int, Field(ge=1, le=1000)] = 100
    order: Order = "newest"
    cursor: Annotated[str, Field(max_length=200)] | SkipJsonSchema[None] = _absent(_CURSOR)


class EventsQuery(PageQuery):
    status: Literal["all", "pending", "done", "failed"] = "all"
    platform: QueryText = _absent()
    learner: QueryText = _absent()


class AwardsQuery(PageQuery):
    platform: QueryText = _absent()
    learner: QueryText = _absent()


class AuditQuery(AwardsQuery):
    pass


class ApprovalsQuery(PageQuery):
    order: Order = "oldest"
    status: Literal["pending", "approved", "rejected", "all"] = "pending"
    platform: QueryText = _absent()


class SyncRunsQuery(PageQuery):
    limit: Annotated[int, Field(ge=1, le=500)] = 50
    platform: QueryText = _absent()


class NotificationsQuery(PageQuery):
    limit: Annotated[int, Field(ge=1, le=1000)] = 50
    unseen: Literal["true", "false"] = "false"


class LeaderboardQuery(BaseModel):
    platform: Annotated[str, Field(min_length=1, max_length=255)]
    course: QueryText = _absent()
    section: QueryText = _absent("Only with course")
    period: Literal["all", "week", "month"] = "all"
    metric: Literal["points", "badges"] = "points"
    limit: Annotated[int, Field(ge=1, le=100)] | SkipJsonSchema[None] = _absent(
        "Defaults to the leaderboard.size setting"
    )
    learner: QueryText = _absent("Also answer this learner's own standing")


class AnalyticsQuery(BaseModel):
    platform: QueryText = _absent()
    course: QueryText = _absent()


class AwardsPerWeekQuery(AnalyticsQuery):
    weeks: Annotated[int, Field(ge=1, le=260)] = 12
    badge: QueryText = _absent()
