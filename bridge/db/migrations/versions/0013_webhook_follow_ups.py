"""webhook follow-ups: reads a webhook implies (a Moodle grade), kept until done, retried, parked

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-10 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_PENDING = sa.text("status = 'pending'")


def upgrade() -> None:
    op.create_table(
        "webhook_follow_ups",
        sa.Column("id", _ID, nullable=False),
        sa.Column("platform", sa.String(length=64), nullable=False),
        sa.Column("webhook_type", sa.String(length=255), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.CheckConstraint("status IN ('pending', 'failed')", name=op.f("ck_webhook_follow_ups_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_follow_ups")),
    )
    op.create_index(
        "ix_webhook_follow_ups_due",
        "webhook_follow_ups",
        ["next_attempt_at"],
        unique=False,
        sqlite_where=_PENDING,
        postgresql_where=_PENDING,
    )


def downgrade() -> None:
    op.drop_index("ix_webhook_follow_ups_due", table_name="webhook_follow_ups")
    op.drop_table("webhook_follow_ups")
