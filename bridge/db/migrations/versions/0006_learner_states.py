"""learner_states: one document of progress states per learner; progress becomes their report

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22 11:30:00
"""

from collections import defaultdict
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TIME = sa.DateTime(timezone=True)
# Written out here rather than imported, so that this migration keeps meaning what it meant.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_CHUNK = 1000

_states = sa.table(
    "learner_states",
    sa.column("learner_id", _ID),
    sa.column("states", _JSON),
    sa.column("updated_at", _TIME),
)
_progress = sa.table(
    "progress",
    sa.column("learner_id", _ID),
    sa.column("badge_id", sa.String),
    sa.column("criteria_version", sa.Integer),
    sa.column("state", _JSON),
    sa.column("value", sa.Float),
    sa.column("target", sa.Float),
    sa.column("complete", sa.Boolean),
    sa.column("saturated", sa.Boolean),
    sa.column("tier", sa.String),
    sa.column("started_at", _TIME),
    sa.column("updated_at", _TIME),
)


def upgrade() -> None:
    op.create_table(
        "learner_states",
        sa.Column("learner_id", _ID, nullable=False),
        sa.Column("states", _JSON, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["learner_id"], ["learners.id"], name=op.f("fk_learner_states_learner_id_learners")
        ),
        sa.PrimaryKeyConstraint("learner_id", name=op.f("pk_learner_states")),
    )
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(
            _progress.c.learner_id, _progress.c.badge_id, _progress.c.criteria_version,
            _progress.c.state, _progress.c.started_at, _progress.c.complete, _progress.c.tier,
            _progress.c.saturated, _progress.c.updated_at,
        ).order_by(_progress.c.learner_id)
    )  # fmt: skip
    documents: dict[int, dict[str, list[Any]]] = defaultdict(dict)
    updated: dict[int, datetime] = {}
    for learner_id, badge_id, version, state, started, complete, tier, saturated, updated_at in rows:
        documents[learner_id][badge_id] = [version, state, _micros(started), complete, tier, saturated]
        updated[learner_id] = max(updated.get(learner_id, updated_at), updated_at)
    for chunk in _chunks(sorted(documents)):
        connection.execute(
            _states.insert(),
            [{"learner_id": i, "states": documents[i], "updated_at": updated[i]} for i in chunk],
        )
    with op.batch_alter_table("progress", schema=None) as batch_op:
        batch_op.drop_column("state")
        batch_op.drop_column("value")
        batch_op.drop_column("target")
        batch_op.drop_column("saturated")


def downgrade() -> None:
    with op.batch_alter_table("progress", schema=None) as batch_op:
        batch_op.add_column(sa.Column("state", _JSON, server_default="{}", nullable=False))
        # The values are not kept: 0005's evaluator works them out from the state, except for a
        # saturated row, so none is marked saturated.
        batch_op.add_column(sa.Column("value", sa.Float(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("target", sa.Float(), server_default="0", nullable=False))
        batch_op.add_column(
            sa.Column("saturated", sa.Boolean(), server_default=sa.text("false"), nullable=False)
        )
    connection = op.get_bind()
    for learner_id, states in connection.execute(sa.select(_states.c.learner_id, _states.c.states)):
        for badge_id, record in states.items():
            connection.execute(
                _progress.update()
                .where(_progress.c.learner_id == learner_id, _progress.c.badge_id == badge_id)
                .values(state=record[1])
            )
    op.drop_table("learner_states")


def _micros(value: datetime | None) -> int | None:
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite keeps UTC without its zone
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // _MICROSECOND


def _chunks(ids: list[int]) -> Iterator[list[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]
