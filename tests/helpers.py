"""Small builders shared by tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

from bridge.db.engine import Database
from bridge.db.models import Award, Event, Learner, Progress
from bridge.domain.events import LearningEvent
from bridge.services.ingest import Inbox

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
    with database.read() as session:
        rows = session.execute(
            select(Learner.lms_user_id, Progress.value).join(Learner).where(Progress.badge_id == badge_id)
        )
        return {learner: value for learner, value in rows}
