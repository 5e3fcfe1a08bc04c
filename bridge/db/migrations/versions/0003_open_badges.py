"""open badges: learner email (the recipient identity) and the opt-in public profile token

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 08:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("learners", schema=None) as batch_op:
        batch_op.add_column(sa.Column("email", sa.String(length=320), nullable=True))
        batch_op.add_column(sa.Column("profile_token", sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint(op.f("uq_learners_profile_token"), ["profile_token"])


def downgrade() -> None:
    with op.batch_alter_table("learners", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("uq_learners_profile_token"), type_="unique")
        batch_op.drop_column("profile_token")
        batch_op.drop_column("email")
