"""Shared by the Open Badges tests: the standards folder, the OB 3.0 schema, awards to publish."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import pytest
from jsonschema import Draft201909Validator

from bridge.db.engine import Database
from bridge.services.manual_awards import ManualAwards
from bridge.settings import Settings
from tests.conftest import SHARED

STANDARDS = SHARED / "standards"
requires_standards = pytest.mark.skipif(
    not (STANDARDS / "openbadges-v3" / "achievementcredential.schema.json").is_file(),
    reason=f"{STANDARDS} is absent: 1EdTech's OB 3.0 JSON Schema is needed to check credentials",
)


@cache
def achievement_credential_validator() -> Draft201909Validator:
    schema = json.loads((STANDARDS / "openbadges-v3" / "achievementcredential.schema.json").read_text())
    return Draft201909Validator(schema, format_checker=Draft201909Validator.FORMAT_CHECKER)


def schema_errors(credential: dict[str, Any]) -> list[str]:
    validator = achievement_credential_validator()
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(credential)]


def award(
    database: Database, settings: Settings, badge_id: str = "welcome", learner: str = "42", **kwargs: Any
) -> int:
    """A manual award (the same rows the rules write), returning its id."""
    made = ManualAwards(database, settings).award(
        platform=kwargs.get("platform", "demo"),
        learner=learner,
        badge_id=badge_id,
        tier=kwargs.get("tier", ""),
        actor="tests",
        reason="test award",
    )
    return made.award_id
