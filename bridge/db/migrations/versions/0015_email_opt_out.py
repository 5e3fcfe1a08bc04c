"""learners' email opt-out: no award emails for a learner who said so

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 06:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("learners") as table:
        table.add_column(
            sa.Column("email_opt_out", sa.Boolean(), server_default=sa.text("(false)"), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("learners") as table:
        table.drop_column("email_opt_out")
