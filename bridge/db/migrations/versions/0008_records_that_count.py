"""learner_states: when each state first changed; saturated records as their version alone

A document was ``{"records": {badge_id: [version, started, complete, tier, saturated]}, "states": {key:
state}}``. It gains ``"since": {key: the first event that changed the state, in microseconds since the
epoch}``, the start the evaluator gives a record it makes later (it keeps none for a badge on its way),
worked out here as the earliest start of the records of current criteria that read the state. A
saturated record becomes its criteria version alone: its start and tier are in its progress report.

Records on their way are kept: the evaluator reads them as before. Going back, saturated records get
their start and tier from their report, each badge of current criteria whose states the learner has
gets a record on its way again, and states retired by the evaluator (text such as ``"=5.0"``, kept
only when every badge reading them is saturated, which 0007 reads from no state) are dropped.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-22 21:00:00
"""

import importlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# What 0007 keys states by is what they are keyed by here: its reading of the badges is reused.
_shared = importlib.import_module("bridge.db.migrations.versions.0007_shared_requirement_states")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_progress = sa.table(
    "progress",
    sa.column("learner_id", sa.Integer),
    sa.column("badge_id", sa.String),
    sa.column("criteria_version", sa.Integer),
    sa.column("tier", sa.String),
    sa.column("started_at", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    connection = op.get_bind()
    keys_of = _state_keys_of_badges(connection)
    for learner_id, document in _shared._documents(connection):
        records: dict[str, Any] = {}
        since: dict[str, int] = dict(document.get("since", {}))
        for badge_id, record in document["records"].items():
            if isinstance(record, int):  # already so (a document written by this release's evaluator)
                records[badge_id] = record
                continue
            version, started, _complete, _tier, saturated = record
            records[badge_id] = version if saturated else record
            current_version, keys = keys_of.get(badge_id, (None, ()))
            if started is None or version != current_version:
                continue
            for key in keys:
                if key in document["states"] and (key not in since or started < since[key]):
                    since[key] = started
        _shared._write(
            connection, learner_id, {"records": records, "states": document["states"], "since": since}
        )


def downgrade() -> None:
    connection = op.get_bind()
    keys_of = _state_keys_of_badges(connection)
    for learner_id, document in _shared._documents(connection):
        reports = _reports(connection, learner_id)
        states = {key: state for key, state in document["states"].items() if not isinstance(state, str)}
        since = document.get("since", {})
        records: dict[str, list[Any]] = {}
        for badge_id, record in document["records"].items():
            if isinstance(record, int):
                started, tier = reports.get((badge_id, record), (None, ""))
                record = [record, started, True, tier, True]
            records[badge_id] = record
        for badge_id, (version, keys) in keys_of.items():
            kept = [key for key in keys if key in states]
            if badge_id in records or not kept:
                continue
            starts = [since[key] for key in kept if key in since]
            records[badge_id] = [version, min(starts) if starts else None, False, "", False]
        _shared._write(connection, learner_id, {"records": records, "states": states})


def _state_keys_of_badges(connection: sa.Connection) -> dict[str, tuple[int, tuple[str, ...]]]:
    """Each badge's current criteria version and the keys of the states its requirements read."""
    return {
        badge_id: (version, tuple(sorted({r.new_key for r in requirements})))
        for badge_id, (version, requirements) in _shared._requirements_of_badges(connection).items()
    }


def _reports(connection: sa.Connection, learner_id: int) -> dict[tuple[str, int], tuple[int | None, str]]:
    """(start in microseconds since the epoch, tier) of the learner's reports, by badge and version."""
    rows = connection.execute(
        sa.select(
            _progress.c.badge_id, _progress.c.criteria_version, _progress.c.started_at, _progress.c.tier
        ).where(_progress.c.learner_id == learner_id)
    )
    return {(badge_id, version): (_micros(started), tier or "") for badge_id, version, started, tier in rows}


def _micros(value: datetime | str | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, str):  # SQLite hands the stored text back through a bare table()
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // _MICROSECOND
