"""Request models of the REST API; their errors name the field."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StrictFloat

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
