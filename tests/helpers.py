"""Small builders shared by tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bridge.db.engine import Database
from bridge.db.models import Award, Badge, Event, Learner, LearnerState
from bridge.domain.events import LearningEvent
from bridge.domain.rules import RuleBook
from bridge.services.badges import active_badge
from bridge.services.ingest import Inbox
from bridge.services.ledgers import to_record

START = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def learning_event(
    key: str, kind: str = "login", learner: str = "42", platform: str = "demo", minutes: int = 0
) -> LearningEvent:
    return LearningEvent(
        platform=platform,
        event_key=key,
        kind=kind,
        learner=learner,
        occurred_at=START + timedelta(minutes=minutes),
    )


def store(database: Database, *events: LearningEvent) -> list[int]:
    return [stored.id for stored in Inbox(database).store(list(events))]


def count_badge_template(directory: Path, badge_id: str, kind: str, target: int, points: int = 0) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{badge_id}.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    (directory / f"{badge_id}.toml").write_text(
        f'id = "{badge_id}"\nname = "{badge_id.title()}"\ndescription = "Test badge"\n'
        f'image = "{badge_id}.svg"\n'
        f"points = {points}\n[[criteria.groups]]\n[[criteria.groups.requirements]]\n"
        f'kinds = ["{kind}"]\naggregate = "count"\ntarget = {target}\n'
    )


def statuses(database: Database) -> dict[str, int]:
    with database.read() as session:
        return dict(session.execute(select(Event.status, func.count()).group_by(Event.status)).all())


def awards_of(database: Database) -> list[tuple[str, str]]:
    """(learner, badge) of every award, in award order."""
    with database.read() as session:
        rows = session.execute(select(Learner.lms_user_id, Award.badge_id).join(Learner).order_by(Award.id))
        return [tuple(row) for row in rows]  # type: ignore[misc]


def progress_values(database: Database, badge_id: str) -> dict[str, float]:
    """Each learner's progress value on the badge, from their stored state (learners with a record)."""
    with database.read() as session:
        rules = rulebook_of(session)
        rows = session.execute(select(Learner.lms_user_id, Learner.points, LearnerState.states).join(Learner))
        values = {}
        for learner, points, document in rows:
            if badge_id in document["records"]:
                record = to_record(document["records"][badge_id])
                progress = record.progress(rules.by_id[badge_id], document["states"], points)
                values[learner] = progress.value
        return values


def rulebook_of(session: Session) -> RuleBook:
    """The enabled badges, whatever event kinds the test's settings track."""
    badges = session.scalars(select(Badge).where(Badge.enabled).order_by(Badge.id))
    return RuleBook([active_badge(badge, _kinds_named(badge.criteria)) for badge in badges])


def _kinds_named(document: Any) -> set[str]:
    """Every event kind a criteria document names, so that it parses whatever kinds the test tracks."""
    if isinstance(document, dict):
        named = set(document.get("kinds", []))
        return named.union(*(_kinds_named(value) for value in document.values()))
    if isinstance(document, list):
        return set().union(*(_kinds_named(value) for value in document))
    return set()
