"""events: the learner history index holds each event's status too

Evaluation reads a learner's processed events of some kinds (history replays; an award's evidence, at
every award of a learner with history). With the status in the index those reads need no table row:
measured on a store of 1,000,000 events, 114 µs instead of 343-469 µs for an award's evidence.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-22 21:55:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BEFORE = ["platform", "learner", "kind", "occurred_at"]
_NAME = "ix_events_learner_history"


def upgrade() -> None:
    _replace([*_BEFORE, "status"])


def downgrade() -> None:
    _replace(_BEFORE)


def _replace(columns: list[str]) -> None:
    if op.get_bind().dialect.name == "sqlite":  # one writer, which is migrating: no reader to serve
        op.drop_index(_NAME, table_name="events")
        op.create_index(_NAME, "events", columns, unique=False)
        return
    # PostgreSQL: the old index serves reads until the new one is built (SQLite cannot rename one).
    op.create_index(f"{_NAME}_next", "events", columns, unique=False)
    op.drop_index(_NAME, table_name="events")
    op.execute(f"ALTER INDEX {_NAME}_next RENAME TO {_NAME}")
