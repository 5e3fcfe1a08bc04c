"""events: index a learner's events by kind and time (history replays, award evidence)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 08:35:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The new index starts with the old one's columns, so it serves every query the old one did.
    op.create_index(
        "ix_events_learner_history", "events", ["platform", "learner", "kind", "occurred_at"], unique=False
    )
    op.drop_index("ix_events_platform_learner", table_name="events")


def downgrade() -> None:
    op.create_index("ix_events_platform_learner", "events", ["platform", "learner"], unique=False)
    op.drop_index("ix_events_learner_history", table_name="events")
